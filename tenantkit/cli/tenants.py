"""Tenant lifecycle commands: ``init``, ``create``, ``list``, ``show``, ``rename``, ``drop``,
``domains add|remove|primary|list`` and ``clone``.

A tenant is named by its schema name or by one of its hosts (anything with a dot).
``list`` reads the registry a page at a time (filtered and paged on the server), so a registry
of 10,000 tenants costs what the page shown costs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click
import psycopg

from ..core.models import TenantState
from ._context import (
    complete_tenant,
    echo_json,
    find_tenant,
    make_console,
    open_tenancy,
    print_rows,
)
from ._errors import CliError, ExitCode
from ._migration_state import applied_migrations, unknown_migrations
from ._options import migrations_option, shared_schema_option

if TYPE_CHECKING:
    from ..core.models import Domain, Tenant
    from ..core.tenancy import Tenancy

__all__ = ["clone", "create", "domains", "drop", "init", "list_tenants", "rename", "show"]

_F = TypeVar("_F", bound=Callable[..., Any])
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
#: Tenants read and printed at a time by ``list``. Each page costs four queries, one of them
#: (sizes) a scan of pg_class, so pages are large: 10,000 tenants are two pages.
PAGE_SIZE = 5000


def _state(tenant: Tenant) -> str:
    return str(getattr(tenant.state, "value", tenant.state))


def human_size(size: int | None) -> str:
    """Bytes as ``12 kB`` / ``3.4 MB`` (PostgreSQL's units)."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover (the loop always returns)


def _overview(
    conn: psycopg.Connection[Any],
    tenancy: Tenancy,
    tenants: Sequence[Tenant],
    *,
    exact_size: bool = False,
) -> list[dict[str, Any]]:
    """JSON-ready facts on ``tenants``: registry row, domains, migration head, size; four
    queries whatever the number of tenants."""
    from ..core.storage import domains_of
    from ..introspection.catalog import schema_sizes

    if not tenants:
        return []
    hosts: dict[int, list[str]] = {}
    primary: dict[int, str] = {}
    for d in domains_of(conn, tenancy.registry, [t.id for t in tenants]):
        hosts.setdefault(d.tenant_id, []).append(d.host)  # primary first, then by host
        if d.is_primary:
            primary[d.tenant_id] = d.host
    schemas = [t.schema for t in tenants]
    applied = applied_migrations(conn, tenancy.shared_schema, schemas)
    sizes = schema_sizes(conn, schemas, exact=exact_size)
    return [
        {
            "id": t.id,
            "schema": t.schema,
            "name": t.name,
            "state": _state(t),
            "domains": hosts.get(t.id, []),
            "primary_domain": primary.get(t.id),
            "migrations": len(applied.get(t.schema, ())),
            "head": applied[t.schema][-1] if applied.get(t.schema) else None,
            "size": sizes.get(t.schema),
            "created_at": t.created_at.isoformat(),
            "metadata": dict(t.metadata),
        }
        for t in tenants
    ]


def _tenancy_options(purpose: str) -> Callable[[_F], _F]:
    def decorate(function: _F) -> _F:
        return migrations_option(required=False, purpose=purpose)(shared_schema_option(function))

    return decorate


@click.command()
@shared_schema_option
@click.pass_context
def init(ctx: click.Context, shared_schema: str) -> None:
    """Install the tenant registry in the shared schema (safe to repeat)."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        tenancy.install()
    click.echo(f"registry installed in schema {shared_schema}")


def _parse_meta(pairs: Sequence[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--meta")
        meta[key.strip()] = value
    return meta


def _read_tenant_file(
    stream: IO[str], name: str, shared_schema: str
) -> list[tuple[str, list[str]]]:
    """``SCHEMA [HOST...]`` per line (``#`` starts a comment), every name and host checked
    before anything is created; a bad line is a usage error naming its line."""
    from ..core.names import normalize_host, validate_schema_name
    from ..errors import InvalidHostname, InvalidSchemaName

    found: list[tuple[str, list[str]]] = []
    seen: dict[str, int] = {}
    hosts_seen: dict[str, int] = {}
    for number, line in enumerate(stream, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{name}, line {number}"
        try:
            schema = validate_schema_name(words[0], shared_schema=shared_schema)
            hosts = [normalize_host(h) for h in words[1:]]
        except (InvalidSchemaName, InvalidHostname) as exc:
            raise click.UsageError(f"{where}: {exc}") from None
        if schema in seen:
            raise click.UsageError(
                f"{where}: tenant {schema} is listed twice (first on line {seen[schema]})"
            )
        for host in hosts:
            if host in hosts_seen:
                raise click.UsageError(
                    f"{where}: host {host} is listed twice (first on line {hosts_seen[host]})"
                )
            hosts_seen[host] = number
        seen[schema] = number
        found.append((schema, hosts))
    if not found:
        raise click.UsageError(f"{name} names no tenant: write one per line, SCHEMA [HOST...]")
    return found


def _say_created_before_error(created: Sequence[Tenant]) -> None:
    if created:
        plural = "" if len(created) == 1 else "s"
        click.echo(
            f"{len(created)} tenant{plural} created before the error below (each in its own "
            "transaction); --skip-existing leaves existing ones alone on a re-run",
            err=True,
        )


def _require_tenant_migrations(migrations_dir: str | None, empty: bool) -> None:
    """Refuse to create tenants without tables by accident: no migrations configured, or a
    directory without tenant migrations, needs ``--empty``."""
    if empty:
        return
    if migrations_dir is None:
        raise CliError(
            "no migrations given, so the tenant would be an empty schema: pass --migrations "
            "DIR (or set TENANTKIT_MIGRATIONS) to build its tables, or --empty to create an "
            "empty schema on purpose",
            ExitCode.USAGE,
        )
    from ..migrations import load_migrations

    if not load_migrations(migrations_dir).tenant:
        raise CliError(
            f"{migrations_dir} holds no tenant migrations (in {migrations_dir}/tenant), so the "
            "tenant would be an empty schema: add them, or pass --empty to create an empty "
            "schema on purpose",
            ExitCode.USAGE,
        )


@click.command(
    short_help="Create tenants: schema, migrations, registry row and domains, atomically."
)
@click.argument("schemas", nargs=-1, metavar="[SCHEMA]...")
@click.option("--name", default=None, help="Display name [the schema name].")
@click.option("--domain", "hosts", multiple=True, help="Host routed to it (repeatable).")
@click.option("--meta", "metadata", multiple=True, metavar="KEY=VALUE", help="Metadata.")
@click.option(
    "--from-file",
    "from_file",
    type=click.File("r"),
    default=None,
    help="Create the tenants listed in this file, one per line: SCHEMA [HOST...] "
    "('-' for standard input).",
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Leave tenants that exist already as they are, instead of stopping there.",
)
@click.option(
    "--empty",
    is_flag=True,
    help="Create empty schemas without migrations (refused otherwise, so a missing "
    "--migrations never yields tenants without tables).",
)
@_tenancy_options(": new tenants get the tenant migrations")
@_json_option
@click.pass_context
def create(
    ctx: click.Context,
    schemas: tuple[str, ...],
    name: str | None,
    hosts: tuple[str, ...],
    metadata: tuple[str, ...],
    from_file: IO[str] | None,
    skip_existing: bool,
    empty: bool,
    migrations_dir: str | None,
    shared_schema: str,
    as_json: bool,
) -> None:
    """Create tenant SCHEMA: schema, migrations, registry row and domains in one transaction.

    Without SCHEMA one is derived from --name. The first --domain is the primary one. Several
    SCHEMAs, or --from-file, create many tenants in one run (each in its own transaction):

    \b
      tenantkit create acme globex initech --migrations migrations
      tenantkit create --from-file tenants.txt --migrations migrations

    Stops at the first tenant that cannot be created (those before it stay), unless
    --skip-existing and it exists already.
    """
    from ..core.names import normalize_host, validate_schema_name
    from ..errors import TenantExists

    many = len(schemas) > 1 or from_file is not None
    if from_file is not None and schemas:
        raise click.UsageError("give SCHEMA names or --from-file, not both")
    if many and (name is not None or hosts):
        raise click.UsageError(
            "--name and --domain describe one tenant: with several, give the hosts in "
            "--from-file (SCHEMA HOST... per line) or add them with `tenantkit domains add`"
        )
    if not schemas and from_file is None and name is None:
        raise click.UsageError(
            "give a SCHEMA, several, --from-file FILE, or a --name to derive one"
        )
    meta = _parse_meta(metadata)
    # Every name and host is checked before any SQL, and before asking for migrations.
    wanted: list[tuple[str | None, list[str]]]
    if from_file is not None:
        source = getattr(from_file, "name", "the file")
        wanted = [*_read_tenant_file(from_file, source, shared_schema)]
    elif many:
        if len(set(schemas)) != len(schemas):
            raise click.UsageError("a SCHEMA is given twice; name each tenant once")
        wanted = [(validate_schema_name(s, shared_schema=shared_schema), []) for s in schemas]
    else:  # one tenant, with --name, --domain; its schema may be derived from --name
        schema = schemas[0] if schemas else None
        if schema is not None:
            validate_schema_name(schema, shared_schema=shared_schema)
        wanted = [(schema, [normalize_host(h) for h in hosts])]
    _require_tenant_migrations(migrations_dir, empty)
    started = time.perf_counter()
    created: list[Tenant] = []
    skipped: list[str] = []
    with open_tenancy(ctx, migrations_dir=migrations_dir, shared_schema=shared_schema) as t:
        for schema, domains_ in wanted:
            try:
                tenant = t.create_tenant(schema, name=name, domains=domains_, metadata=meta)
            except TenantExists:
                if not skip_existing:
                    _say_created_before_error(created)
                    raise
                skipped.append(str(schema))
                if not as_json:
                    click.echo(f"exists already, skipped: {schema}")
                continue
            except BaseException:
                _say_created_before_error(created)
                raise
            created.append(tenant)
            if not as_json:
                how = getattr(t.provisioner, "last_path", None)
                via = f" by {how}" if how and not empty else ""
                on = f" on {', '.join(domains_)}" if domains_ else ""
                click.echo(f"created tenant {tenant.schema}{via}{on}")
        if as_json:
            # A single tenant that existed already (--skip-existing) is shown as it is.
            shown = created if many or created else [find_tenant(t, str(wanted[0][0]))]
            with t.admin_connection() as conn:
                facts = _overview(conn, t, shown)
            echo_json(facts if many else facts[0])
            return
    if many:
        seconds = time.perf_counter() - started
        more = f", {len(skipped)} existed already" if skipped else ""
        plural = "" if len(created) == 1 else "s"
        click.echo(f"{len(created)} tenant{plural} created in {seconds:.2f} s{more}")


def _pages(
    conn: psycopg.Connection[Any],
    tenancy: Tenancy,
    *,
    state: str | None,
    pattern: str | None,
    after: int | None,
    limit: int | None,
) -> Iterator[list[dict[str, Any]]]:
    """The overview of the matching tenants, a page (of at most PAGE_SIZE) at a time."""
    from ..core.storage import tenant_page

    left = limit
    while left is None or left > 0:
        size = PAGE_SIZE if left is None else min(PAGE_SIZE, left)
        found = tenant_page(
            conn, tenancy.registry, state=state, pattern=pattern, after=after, limit=size
        )
        if not found:
            return
        yield _overview(conn, tenancy, found)
        if len(found) < size:
            return
        after = found[-1].id
        left = None if left is None else left - len(found)


def _stream_json(pages: Iterator[list[dict[str, Any]]]) -> None:
    """Print the items of ``pages`` as one JSON array, a tenant per line, page by page (the
    compact encoder is many times faster than an indenting one over 10,000 tenants)."""
    first = True
    out = sys.stdout
    for page in pages:
        for item in page:
            out.write("[\n  " if first else ",\n  ")
            out.write(json.dumps(item, default=str))
            first = False
        out.flush()
    out.write("[]\n" if first else "\n]\n")


@click.command("list")
@click.option(
    "--state",
    type=click.Choice([state.value for state in TenantState]),
    default=None,
    help="Only tenants in this state.",
)
@click.option(
    "--filter",
    "pattern",
    metavar="TEXT",
    default=None,
    help="Only tenants whose schema, name or a host contains TEXT (any case); with * or ? "
    "it is a pattern over the whole value (acme*, *.example.com).",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N tenants (a page).")
@click.option(
    "--after",
    metavar="TENANT",
    default=None,
    help="Start after this tenant: the next page after the last one shown.",
)
@shared_schema_option
@_json_option
@click.pass_context
def list_tenants(
    ctx: click.Context,
    state: str | None,
    pattern: str | None,
    limit: int | None,
    after: str | None,
    shared_schema: str,
    as_json: bool,
) -> None:
    """List tenants: state, domains (primary first), migration head and size.

    Tenants come in creation order, read a page at a time: --filter and --state select on
    the server, --limit N shows a page and --after TENANT the next one. Sizes come from the
    catalog's page counts (one query; `tenantkit show` measures one tenant exactly).
    """
    from ..core.storage import count_tenants

    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        after_id = None if after is None else find_tenant(tenancy, after).id
        with tenancy.admin_connection() as conn:
            pages = _pages(conn, tenancy, state=state, pattern=pattern, after=after_id, limit=limit)
            if as_json:
                _stream_json(pages)
                return
            rows = [row for page in pages for row in page]
            total = (
                len(rows)
                if limit is None or len(rows) < limit
                else count_tenants(
                    conn, tenancy.registry, state=state, pattern=pattern, after=after_id
                )
            )
    if not rows:
        if pattern or state or after:
            click.echo("No tenants match.")
        else:
            click.echo("No tenants yet: `tenantkit create NAME --migrations DIR` makes one.")
        return
    print_rows(
        make_console(),
        ["schema", "name", "state", "domains", "migration", "size"],
        [
            (
                r["schema"],
                r["name"],
                r["state"],
                "\n".join(r["domains"]),
                r["head"] or "",
                human_size(r["size"]),
            )
            for r in rows
        ],
        right=["size"],
        wrap=["name", "domains"],
    )
    plural = "s" if total != 1 else ""
    where = f" after {after}" if after else ""
    if total > len(rows):
        click.echo(
            f"{len(rows)} of {total} tenant{plural}{where}; next page: "
            f"--limit {limit} --after {rows[-1]['schema']}"
        )
    else:
        click.echo(f"{len(rows)} tenant{plural}{where}")


@click.command()
@click.argument("tenant", shell_complete=complete_tenant)
@_tenancy_options(", to show pending migrations")
@_json_option
@click.pass_context
def show(
    ctx: click.Context,
    tenant: str,
    migrations_dir: str | None,
    shared_schema: str,
    as_json: bool,
) -> None:
    """Show one tenant (schema name or host): registry row, domains, migrations, tables.

    With --migrations it lists the pending migrations, and the applied ones missing from the
    directory (the code is older than the database).
    """
    from ..core.storage import HISTORY_TABLE

    with open_tenancy(ctx, migrations_dir=migrations_dir, shared_schema=shared_schema) as t:
        found = find_tenant(t, tenant)
        with t.admin_connection() as conn:
            info = _overview(conn, t, [found], exact_size=True)[0]
            if migrations_dir is not None:
                unknown = unknown_migrations(conn, t.shared_schema, migrations_dir, [found.schema])
                info["unknown"] = unknown.get(found.schema, [])
            row = conn.execute(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = %s and c.relkind in ('r', 'p') "
                "and c.relname <> %s",  # tenantkit's own bookkeeping
                (found.schema, HISTORY_TABLE),
            ).fetchone()
        info["domains"] = [
            {"host": h, "primary": h == info["primary_domain"]} for h in info["domains"]
        ]
        info["tables"] = int(row[0]) if row else 0
        if migrations_dir is not None:
            plan = t.plan(schemas=[found.schema], shared=False)
            info["pending"] = [m for entry in plan.entries for m in entry.pending]
    if as_json:
        echo_json(info)
        return
    hosts = ", ".join(d["host"] + (" (primary)" if d["primary"] else "") for d in info["domains"])
    lines = [
        ("schema", info["schema"]),
        ("name", info["name"]),
        ("id", str(info["id"])),
        ("state", info["state"]),
        ("created", info["created_at"]),
        ("domains", hosts or "none"),
        ("tables", str(info["tables"])),
        ("size", human_size(info["size"])),
        ("migrations", f"{info['migrations']} applied, head {info['head'] or 'none'}"),
    ]
    if "pending" in info:
        lines.append(("pending", ", ".join(info["pending"]) or "none"))
    if info.get("unknown"):
        lines.append(
            (
                "unknown",
                f"{', '.join(info['unknown'])}: applied here but not in {migrations_dir}/tenant "
                "(the code is older than the database)",
            )
        )
    lines += [(f"meta {k}", str(v)) for k, v in sorted(info["metadata"].items())]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key.ljust(width)}  {value}")


@click.command()
@click.argument("tenant", shell_complete=complete_tenant)
@click.argument("new_schema")
@shared_schema_option
@click.pass_context
def rename(ctx: click.Context, tenant: str, new_schema: str, shared_schema: str) -> None:
    """Rename a tenant's schema; its data, domains and migration history move with it."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        old = find_tenant(tenancy, tenant).schema
        tenancy.rename_tenant(old, new_schema)
    click.echo(f"renamed tenant {old} to {new_schema}")


@click.command()
@click.argument("tenant", shell_complete=complete_tenant)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@shared_schema_option
@click.pass_context
def drop(ctx: click.Context, tenant: str, yes: bool, shared_schema: str) -> None:
    """Drop a tenant: its schema with all its data, its domains and its registry row.

    Asks first on a terminal; without one (a script, a pipe) it needs --yes.
    """
    from ..introspection.catalog import schema_sizes

    if not yes and not sys.stdin.isatty():
        # A piped "y" is not a person confirming: scripts say --yes explicitly.
        raise CliError(
            f"not dropping tenant {tenant} without confirmation: standard input is not a "
            "terminal to ask on, so pass --yes (-y) to drop it",
            ExitCode.USAGE,
        )
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        found = find_tenant(tenancy, tenant)
        if not yes:
            with tenancy.admin_connection() as conn:
                size = schema_sizes(conn, [found.schema], exact=True).get(found.schema)
            question = f"Drop tenant {found.schema} and all its data ({human_size(size)})?"
            try:
                confirmed = click.confirm(question, default=False, err=True)
            except click.Abort:  # end of input: nobody said yes
                click.echo(err=True)
                confirmed = False
            if not confirmed:
                raise CliError(f"tenant {found.schema} not dropped (pass --yes to skip asking)")
        tenancy.drop_tenant(found.schema, cascade=True)
    click.echo(f"dropped tenant {found.schema}")


@click.command(
    short_help="Create a tenant as a copy of another (structure, history; rows with --data)."
)
@click.argument("source", shell_complete=complete_tenant)
@click.argument("schema")
@click.option("--data", is_flag=True, help="Copy the rows too (default: structure only).")
@click.option("--name", default=None, help="Display name [the schema name].")
@click.option("--domain", "hosts", multiple=True, help="Host routed to it (repeatable).")
@shared_schema_option
@click.pass_context
def clone(
    ctx: click.Context,
    source: str,
    schema: str,
    data: bool,
    name: str | None,
    hosts: tuple[str, ...],
    shared_schema: str,
) -> None:
    """Create tenant SCHEMA as a copy of tenant SOURCE (structure and migration history; rows
    with --data). Domains and metadata are not copied."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        origin = find_tenant(tenancy, source)
        tenant = tenancy.clone_tenant(
            origin.schema, schema, data=data, name=name, domains=list(hosts)
        )
    what = "structure and rows" if data else "structure"
    click.echo(f"created tenant {tenant.schema} from {origin.schema} ({what})")


@click.group()
def domains() -> None:
    """List, add and remove the hosts routed to tenants."""


def _domain_rows(found: list[Domain]) -> list[tuple[str, str, str]]:
    return [(d.host, d.schema, "yes" if d.is_primary else "") for d in found]


@domains.command("list")
@click.argument("tenant", required=False, shell_complete=complete_tenant)
@shared_schema_option
@_json_option
@click.pass_context
def domains_list(ctx: click.Context, tenant: str | None, shared_schema: str, as_json: bool) -> None:
    """List hosts (of TENANT, or of every tenant)."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        schema = None if tenant is None else find_tenant(tenancy, tenant).schema
        found = sorted(tenancy.domains(schema), key=lambda d: (d.schema, not d.is_primary))
    if as_json:
        echo_json([{"host": d.host, "schema": d.schema, "primary": d.is_primary} for d in found])
        return
    print_rows(make_console(), ["host", "tenant", "primary"], _domain_rows(found))


@domains.command("add")
@click.argument("tenant", shell_complete=complete_tenant)
@click.argument("host")
@click.option("--primary", is_flag=True, help="Make it the tenant's primary domain.")
@shared_schema_option
@click.pass_context
def domains_add(
    ctx: click.Context, tenant: str, host: str, primary: bool, shared_schema: str
) -> None:
    """Route HOST to TENANT (the host is normalised: lower case, no port, no trailing dot)."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        domain = tenancy.add_domain(find_tenant(tenancy, tenant).schema, host, primary=primary)
    click.echo(f"{domain.host} -> {domain.schema}{' (primary)' if domain.is_primary else ''}")


@domains.command("remove")
@click.argument("host")
@shared_schema_option
@click.pass_context
def domains_remove(ctx: click.Context, host: str, shared_schema: str) -> None:
    """Stop routing HOST."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        tenancy.remove_domain(host)
    click.echo(f"removed {host}")


@domains.command("primary")
@click.argument("host")
@shared_schema_option
@click.pass_context
def domains_primary(ctx: click.Context, host: str, shared_schema: str) -> None:
    """Make HOST its tenant's primary domain."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        domain = tenancy.set_primary_domain(host)
    click.echo(f"{domain.host} is now the primary domain of {domain.schema}")
