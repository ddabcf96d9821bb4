"""``tenantkit migrate``, ``tenantkit plan`` and ``tenantkit drift``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import click

from ..errors import MigrationError, RegistryNotInstalled
from ._context import make_console, print_rows, require_dsn
from ._errors import CliError, ExitCode
from ._options import migrations_option, shared_schema_option

__all__ = ["drift", "migrate", "plan"]

_F = TypeVar("_F", bound=Callable[..., Any])
_migrations_option = migrations_option(required=False, purpose="")
_shared_option = shared_schema_option
_alembic_option = click.option(
    "--alembic",
    "alembic_ini",
    envvar=["TENANTKIT_ALEMBIC", "PGTENANTS_ALEMBIC"],
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="An Alembic configuration (alembic.ini) whose revisions are the migrations, instead "
    "of --migrations [env: TENANTKIT_ALEMBIC or PGTENANTS_ALEMBIC].",
)


def _source(ctx: click.Context, migrations_dir: str | None, alembic_ini: str | None) -> Any:
    """The migrations a command runs: a checked directory, or an ``AlembicSource``."""
    if alembic_ini is not None and migrations_dir is not None:
        from click.core import ParameterSource

        if ctx.get_parameter_source("migrations_dir") is ParameterSource.ENVIRONMENT:
            migrations_dir = None  # an explicit --alembic wins over the environment's directory
        else:
            raise click.UsageError("give either --migrations or --alembic, not both")
    if alembic_ini is not None:
        from ..alembic import AlembicSource

        try:
            source = AlembicSource(alembic_ini)
            found = source.load()
        except MigrationError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from exc
        if not found.shared and not found.tenant:
            raise CliError(f"no Alembic revisions in {alembic_ini!r}", ExitCode.USAGE)
        return source
    if migrations_dir is None:
        raise click.UsageError(
            "no migrations: give --migrations DIR (or TENANTKIT_MIGRATIONS) or --alembic "
            "alembic.ini (or TENANTKIT_ALEMBIC)"
        )
    _require_migrations(migrations_dir)
    return migrations_dir


def _require_migrations(migrations_dir: str) -> None:
    """Refuse a directory holding no migration: running it would silently do nothing."""
    from ..migrations import load_migrations

    try:
        found = load_migrations(migrations_dir)
    except MigrationError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from exc
    if not found.shared and not found.tenant:
        raise CliError(
            f"no migrations in {migrations_dir!r} (expected shared/ and tenant/ folders of "
            "*.sql or *.py files): check --migrations / PGTENANTS_MIGRATIONS",
            ExitCode.USAGE,
        )


def _unknown(ctx: click.Context, migrations_dir: Any, shared_schema: str, plan: Any) -> Any:
    """Schema -> applied migrations the directory does not hold, for the planned schemas."""
    import psycopg

    from ._migration_state import unknown_migrations

    schemas = [e.schema for e in plan.entries]
    with psycopg.connect(require_dsn(ctx), autocommit=True) as conn:
        return unknown_migrations(conn, shared_schema, migrations_dir, schemas)


def _tenancy(ctx: click.Context, migrations_dir: Any, shared_schema: str) -> Any:
    # The engine needs only these three attributes; no pool is opened for a CLI run.
    return SimpleNamespace(
        conninfo=require_dsn(ctx), shared_schema=shared_schema, migrations_dir=migrations_dir
    )


def _scope_options(function: _F) -> _F:
    """``--shared``, ``--tenant`` and ``--schema NAME``: which schemas a command covers."""
    for option in reversed(
        (
            click.option("--shared", "shared_only", is_flag=True, help="Shared migrations only."),
            click.option("--tenant", "tenant_only", is_flag=True, help="Tenant migrations only."),
            click.option(
                "--schema",
                "schemas",
                multiple=True,
                metavar="NAME",
                help="Only this tenant (repeatable).",
            ),
        )
    ):
        function = option(function)
    return function


def _scope(shared_only: bool, tenant_only: bool, schemas: tuple[str, ...]) -> dict[str, Any]:
    """The engine's ``shared``, ``tenants`` and ``schemas`` arguments for the scope options."""
    if shared_only and tenant_only:
        raise click.UsageError("--shared and --tenant exclude each other; give neither for both")
    return {
        "shared": not tenant_only and not schemas,
        "tenants": not shared_only,
        "schemas": list(schemas) or None,
    }


@click.command()
@_migrations_option
@_alembic_option
@_shared_option
@click.option("--plan", "plan_only", is_flag=True, help="Only list what is pending where.")
@_scope_options
@click.option(
    "--jobs", "-j", type=click.IntRange(1), default=1, show_default=True, help="Parallel workers."
)
@click.option(
    "--executor",
    type=click.Choice(["sequential", "threads", "processes"]),
    default=None,
    help="How workers run [threads when --jobs > 1].",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1),
    default=None,
    help="Schemas handed to a worker at a time [auto].",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first failing schema.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or report as JSON.")
@click.pass_context
def migrate(
    ctx: click.Context,
    migrations_dir: str | None,
    alembic_ini: str | None,
    shared_schema: str,
    plan_only: bool,
    shared_only: bool,
    tenant_only: bool,
    schemas: tuple[str, ...],
    jobs: int,
    executor: str | None,
    chunk_size: int | None,
    fail_fast: bool,
    as_json: bool,
) -> None:
    """Apply pending migrations: the shared schema first, then every tenant.

    Exits with status 1 when any schema failed (the others are applied). Ctrl-C or SIGTERM
    stops gracefully: the schemas in progress roll back, the journal says what was done, the
    exit status is 130, and the next run resumes.
    """
    from .. import migrations as m

    scope = _scope(shared_only, tenant_only, schemas)
    source = _source(ctx, migrations_dir, alembic_ini)
    tenancy = _tenancy(ctx, source, shared_schema)
    try:
        if plan_only:
            found = m.plan(tenancy, **scope)
            _print_plan(found, _unknown(ctx, source, shared_schema, found), as_json)
            return
        chosen = executor or ("threads" if jobs > 1 else "sequential")
        report = _run(m, tenancy, scope, jobs, chosen, chunk_size, fail_fast, as_json)
    except m.MigrationInterrupted as stop:
        _show_report(stop.report, as_json)
        counts = stop.report.counts()
        raise CliError(
            f"interrupted: run {stop.report.run_id} stopped after migrating "
            f"{counts['applied']} schemas; the schemas in progress were rolled back. "
            "Run `tenantkit migrate` again to resume",
            ExitCode.INTERRUPTED,
        ) from None
    except (MigrationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    # RegistryNotInstalled goes through: the CLI's handler exits 3 with the `init` hint.
    _show_report(report, as_json)
    ctx.exit(0 if report.ok else 1)


@click.command()
@_migrations_option
@_alembic_option
@_shared_option
@_scope_options
@click.option("--check", is_flag=True, help="Exit with status 1 when anything is pending (CI).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def plan(
    ctx: click.Context,
    migrations_dir: str | None,
    alembic_ini: str | None,
    shared_schema: str,
    shared_only: bool,
    tenant_only: bool,
    schemas: tuple[str, ...],
    check: bool,
    as_json: bool,
) -> None:
    """List the migrations pending in each schema, without running any (one query).

    Also lists migrations applied to a schema that the directory does not hold (the code is
    older than the database); ``--check`` exits 1 for those too.
    """
    from .. import migrations as m

    scope = _scope(shared_only, tenant_only, schemas)
    source = _source(ctx, migrations_dir, alembic_ini)
    found = m.plan(_tenancy(ctx, source, shared_schema), **scope)
    unknown = _unknown(ctx, source, shared_schema, found)
    _print_plan(found, unknown, as_json)
    ctx.exit(1 if check and (found.pending or unknown) else 0)


def _run(
    m: Any,
    tenancy: Any,
    scope: dict[str, Any],
    jobs: int,
    executor: str,
    chunk_size: int | None,
    fail_fast: bool,
    as_json: bool,
) -> Any:
    kw = dict(scope, jobs=jobs, executor=executor, chunk_size=chunk_size, fail_fast=fail_fast)
    if as_json or not sys.stdout.isatty():
        return m.migrate(tenancy, **kw)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("migrating", total=None)

        def on_progress(event: Any) -> None:
            bar.update(
                task,
                total=event.total,
                completed=event.done,
                description=f"migrating {event.result.schema}",
            )

        return m.migrate(tenancy, progress=on_progress, **kw)


def _print_plan(plan: Any, unknown: dict[str, list[str]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**plan.as_dict(), "unknown": unknown}, indent=2))
        return
    pending = plan.pending
    if pending:
        rows = [(e.schema, e.kind, ", ".join(e.pending)) for e in pending]
        print_rows(make_console(), ["schema", "kind", "pending"], rows, wrap=["pending"])
    if unknown:
        click.echo(
            f"{len(unknown)} schema(s) have migrations applied that the migrations directory "
            "does not hold (the code is older than the database):"
        )
        ahead = [(schema, ", ".join(ids)) for schema, ids in sorted(unknown.items())]
        print_rows(make_console(), ["schema", "applied, not on disk"], ahead)
    elif not pending:
        click.echo(f"Nothing to migrate ({len(plan.entries)} schemas at the head).")
    click.echo(f"{len(pending)} of {len(plan.entries)} schemas have pending migrations.")


def _show_report(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)


def _print_report(report: Any) -> None:
    counts = report.counts()
    console = make_console()
    names = ("applied", "current", "failed", "skipped")
    summary = [*(str(counts[k]) for k in names), f"{report.duration:.2f} s"]
    print_rows(console, [*names, "time"], [summary], right=[*names, "time"])
    if report.resumed_from is not None:
        console.print(f"Resumed after interrupted run #{report.resumed_from}.")
    if report.failed:
        failures = [(r.schema, r.migration or "", r.error or "") for r in report.failed]
        print_rows(console, ["schema", "migration", "error"], failures, wrap=["error"])


@click.command(
    short_help="List tenants whose structure differs from the migrations or a reference."
)
@migrations_option(required=False, purpose=": compare with what they produce")
@_shared_option
@click.option(
    "--reference",
    default=None,
    metavar="TENANT",
    help="Compare with this tenant instead of the migrations' template.",
)
@click.option(
    "--schema", "schemas", multiple=True, metavar="NAME", help="Only this tenant (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def drift(
    ctx: click.Context,
    migrations_dir: str | None,
    shared_schema: str,
    reference: str | None,
    schemas: tuple[str, ...],
    as_json: bool,
) -> None:
    """List tenants whose structure differs from the template (what --migrations produce) or
    from a --reference tenant, with the differences.

    Exits with status 1 when any tenant drifted.
    """
    from ..core.names import validate_schema_name
    from ..introspection.catalog import drift as run_drift

    if migrations_dir is None and reference is None:
        raise click.UsageError(
            "give --migrations DIR (compare with what they produce) or --reference TENANT"
        )
    if reference is not None:
        validate_schema_name(reference, shared_schema=shared_schema)
    tenancy = _tenancy(ctx, migrations_dir, shared_schema)
    try:
        chosen = list(schemas) or None
        report = run_drift(tenancy, schemas=chosen, reference=reference)
    except (MigrationError, RegistryNotInstalled) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        click.echo(
            f"No drift: {report.checked} schemas match {report.reference} ({report.fingerprint})."
        )
    else:
        rows = [
            (
                d.schema,
                x.object,
                x.change,
                (x.actual if x.change != "missing" else x.expected) or "",
            )
            for d in report.drifted
            for x in d.differences
        ]
        print_rows(make_console(), ["schema", "object", "change", "detail"], rows, wrap=["detail"])
        click.echo(
            f"{len(report.drifted)} of {report.checked} schemas differ from {report.reference}."
        )
    ctx.exit(0 if report.ok else 1)
