"""``tenantkit run``: run SQL or a script in one tenant or in every tenant.

Each tenant runs in a transaction of its own on a connection bound to it (its schema first on
the ``search_path``, exactly as the application sees it): a failure rolls back that tenant
only, and the others go on unless ``--fail-fast``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
import psycopg

from ._context import echo_json, find_tenant, make_console, open_tenancy, print_rows
from ._errors import CliError, ExitCode, sql_error_text
from ._options import shared_schema_option

if TYPE_CHECKING:
    from ..core.tenancy import Tenancy

__all__ = ["TenantResult", "run", "run_in_tenants"]


@dataclass
class TenantResult:
    """What one tenant's run produced: the last result set (or status), or the error."""

    schema: str
    ok: bool
    status: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "tenant": self.schema,
            "ok": self.ok,
            "status": self.status,
            "columns": self.columns,
            "rows": [list(r) for r in self.rows],
            "error": self.error,
            "seconds": round(self.seconds, 6),
        }


def run_once(tenancy: Tenancy, schema: str, script: bytes) -> TenantResult:
    """Run ``script`` as tenant ``schema`` in one transaction."""
    started = time.perf_counter()
    result = TenantResult(schema, ok=True)
    try:
        with tenancy.connection(schema) as conn:
            cur = conn.execute(script)
            while True:  # a script gives one result per statement: keep the last
                result.status = cur.statusmessage or ""
                if cur.description is not None:
                    result.columns = [c.name for c in cur.description]
                    result.rows = cur.fetchall()
                else:
                    result.columns, result.rows = [], []
                if not cur.nextset():
                    break
    except psycopg.Error as exc:
        result = TenantResult(schema, ok=False, error=sql_error_text(exc))
    result.seconds = time.perf_counter() - started
    return result


def run_in_tenants(
    tenancy: Tenancy,
    schemas: Sequence[str],
    script: bytes,
    *,
    jobs: int = 1,
    fail_fast: bool = False,
    progress: Callable[[TenantResult], None] | None = None,
) -> list[TenantResult]:
    """Run ``script`` in each tenant (``jobs`` at a time); results in ``schemas`` order.

    With ``fail_fast`` no tenant starts after the first failure (running ones finish).
    """
    results: dict[str, TenantResult] = {}
    failed = False

    def one(schema: str) -> None:
        nonlocal failed
        if fail_fast and failed:
            return
        result = run_once(tenancy, schema, script)
        failed = failed or not result.ok
        results[schema] = result
        if progress is not None:
            progress(result)

    if jobs <= 1:
        for schema in schemas:
            one(schema)
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="tenantkit-run") as pool:
            list(pool.map(one, schemas))
    return [results[s] for s in schemas if s in results]


def _script(words: Sequence[str], file: Any) -> bytes:
    if file is not None and words:
        raise click.UsageError("give the SQL after -- or with --file, not both")
    if file is not None:
        text: str = file.read()
    elif words:
        text = " ".join(words)
    else:
        raise click.UsageError(
            "no SQL given: tenantkit run TENANT -- 'select ...', or --file script.sql"
        )
    if not text.strip():
        raise click.UsageError("the SQL is empty")
    return text.encode()


def _print_results(results: list[TenantResult], total: int) -> None:
    console = make_console()
    shapes = {tuple(r.columns) for r in results if r.ok}
    if len(shapes) == 1 and (columns := next(iter(shapes))):
        # Every tenant returned rows of one shape: one table, the tenant first on each row.
        rows: list[tuple[Any, ...]] = []
        for r in results:
            rows += (
                [(r.schema, *row) for row in r.rows] if r.ok else [(r.schema, f"ERROR: {r.error}")]
            )
        print_rows(console, ["tenant", *columns], rows)
    else:
        print_rows(
            console,
            ["tenant", "result", "time"],
            [
                (
                    r.schema,
                    (r.status or "OK") if r.ok else f"ERROR: {r.error}",
                    f"{r.seconds * 1000:.1f} ms",
                )
                for r in results
            ],
            right=["time"],
        )
    failed = sum(not r.ok for r in results)
    skipped = total - len(results)
    tail = f", {skipped} not run (--fail-fast)" if skipped else ""
    click.echo(f"{len(results) - failed} ok, {failed} failed{tail}")


class _RunCommand(click.Command):
    """Remembers the words given after ``--``: click drops the ``--`` itself, and without it
    ``run -- "select 1"`` would read the SQL as a tenant name."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["tenantkit.run.sql_words"] = (
            len(args) - args.index("--") - 1 if "--" in args else None
        )
        return super().parse_args(ctx, args)


@click.command(cls=_RunCommand, context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1, metavar="[TENANT] -- SQL...")
@click.option("--all", "all_tenants", is_flag=True, help="Run in every active tenant.")
@click.option(
    "--file",
    "-f",
    type=click.File("r"),
    default=None,
    help="Read the SQL script from this file ('-' for standard input).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Tenants at once.",
)
@click.option("--fail-fast", is_flag=True, help="Start no tenant after the first failure.")
@shared_schema_option
@click.option("--json", "as_json", is_flag=True, help="Print the per-tenant results as JSON.")
@click.pass_context
def run(
    ctx: click.Context,
    words: tuple[str, ...],
    all_tenants: bool,
    file: Any,
    jobs: int,
    fail_fast: bool,
    shared_schema: str,
    as_json: bool,
) -> None:
    """Run SQL in tenant TENANT (schema or host), or in every tenant with --all.

    \b
      tenantkit run acme -- "select count(*) from notes"
      tenantkit run --all -- "update notes set body = upper(body)"
      tenantkit run --all --jobs 4 --file fix.sql

    Each tenant runs in its own transaction: one failing rolls back only itself. The last
    result of each tenant is shown in one table. Exits 1 when any tenant failed.
    """
    args = list(words)
    after_dashes = ctx.meta.get("tenantkit.run.sql_words")
    # The words before ``--`` name the tenant; those after it are the SQL.
    before = args if after_dashes is None else args[: len(args) - after_dashes]
    if not all_tenants:
        if not before:
            raise click.UsageError(
                "no TENANT given: name one before the SQL (tenantkit run acme -- 'select ...'), "
                "or pass --all to run in every tenant"
            )
        tenant_name = args.pop(0)
    elif after_dashes is not None and before:
        raise click.UsageError(
            f"--all runs in every tenant: drop the tenant name {before[0]!r}, or drop --all"
        )
    script = _script(args, file)
    with open_tenancy(ctx, shared_schema=shared_schema, max_size=jobs + 1) as tenancy:
        if all_tenants:
            schemas = [t.schema for t in tenancy.tenants(state="active")]
        else:
            schemas = [find_tenant(tenancy, tenant_name).schema]
        if not schemas:
            raise CliError("no active tenants to run in", ExitCode.NOT_FOUND)
        results = _run_with_progress(tenancy, schemas, script, jobs, fail_fast, as_json)
    if as_json:
        echo_json([r.as_dict() for r in results])
    else:
        _print_results(results, len(schemas))
    ctx.exit(0 if all(r.ok for r in results) else int(ExitCode.FAILED))


def _run_with_progress(
    tenancy: Tenancy,
    schemas: list[str],
    script: bytes,
    jobs: int,
    fail_fast: bool,
    as_json: bool,
) -> list[TenantResult]:
    if len(schemas) < 2 or as_json or not sys.stderr.isatty():
        return run_in_tenants(tenancy, schemas, script, jobs=jobs, fail_fast=fail_fast)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=make_console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("running", total=len(schemas))

        def advance(result: TenantResult) -> None:
            bar.update(task, advance=1, description=f"running in {result.schema}")

        return run_in_tenants(
            tenancy, schemas, script, jobs=jobs, fail_fast=fail_fast, progress=advance
        )
