"""Tenant lifecycle commands: ``init``, ``create``, ``list``, ``show``, ``rename``, ``drop``,
``domains add|remove|primary|list`` and ``clone``.

A tenant is named by its schema name or by one of its hosts (anything with a dot).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click
import psycopg
from psycopg import sql

from ..models import TenantState
from ._context import (
    complete_tenant,
    echo_json,
    find_tenant,
    make_console,
    open_tenancy,
    print_rows,
)
from ._errors import CliError
from ._options import migrations_option, shared_schema_option

if TYPE_CHECKING:
    from ..models import Domain, Tenant
    from ..tenancy import Tenancy

__all__ = ["clone", "create", "domains", "drop", "init", "list_tenants", "rename", "show"]

_F = TypeVar("_F", bound=Callable[..., Any])
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


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


def _migration_heads(
    conn: psycopg.Connection[Any], shared_schema: str, schemas: Sequence[str]
) -> dict[str, tuple[int, str | None]]:
    """Schema -> (migrations applied, last one) from the shared summary, in one query; empty
    when migrations never ran on this database."""
    row = conn.execute(
        "select to_regclass(format('%%I.tenantkit_migration_state', %s::text))", (shared_schema,)
    ).fetchone()
    if row is None or row[0] is None:
        return {}
    rows = conn.execute(
        sql.SQL(
            "select schema, coalesce(cardinality(applied), 0), applied[cardinality(applied)] "
            "from {} where schema = any(%s)"
        ).format(sql.Identifier(shared_schema, "tenantkit_migration_state")),
        (list(schemas),),
    ).fetchall()
    return {r[0]: (int(r[1]), r[2]) for r in rows}


def _overview(tenancy: Tenancy, tenants: list[Tenant]) -> list[dict[str, Any]]:
    """JSON-ready facts on ``tenants``: registry row, domains, migration head, size."""
    from ..catalog import schema_sizes

    # One tenant: its own domains only (not every host of a registry of thousands).
    found = tenancy.domains(tenants[0].schema) if len(tenants) == 1 else tenancy.domains()
    hosts: dict[int, list[str]] = {}
    primary: dict[int, str] = {}
    for d in sorted(found, key=lambda d: (not d.is_primary, d.host)):
        hosts.setdefault(d.tenant_id, []).append(d.host)
        if d.is_primary:
            primary[d.tenant_id] = d.host
    schemas = [t.schema for t in tenants]
    with tenancy.admin_connection() as conn:
        heads = _migration_heads(conn, tenancy.shared_schema, schemas)
        sizes = schema_sizes(conn, schemas)
    return [
        {
            "id": t.id,
            "schema": t.schema,
            "name": t.name,
            "state": _state(t),
            "domains": hosts.get(t.id, []),
            "primary_domain": primary.get(t.id),
            "migrations": heads.get(t.schema, (0, None))[0],
            "head": heads.get(t.schema, (0, None))[1],
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


@click.command(
    short_help="Create a tenant: schema, migrations, registry row and domains, atomically."
)
@click.argument("schema", required=False)
@click.option("--name", default=None, help="Display name [the schema name].")
@click.option("--domain", "hosts", multiple=True, help="Host routed to it (repeatable).")
@click.option("--meta", "metadata", multiple=True, metavar="KEY=VALUE", help="Metadata.")
@_tenancy_options(": new tenants get the tenant migrations")
@_json_option
@click.pass_context
def create(
    ctx: click.Context,
    schema: str | None,
    name: str | None,
    hosts: tuple[str, ...],
    metadata: tuple[str, ...],
    migrations_dir: str | None,
    shared_schema: str,
    as_json: bool,
) -> None:
    """Create tenant SCHEMA: schema, migrations, registry row and domains in one transaction.

    Without SCHEMA one is derived from --name. The first --domain is the primary one.
    """
    if schema is None and name is None:
        raise click.UsageError("give a SCHEMA or a --name to derive one from")
    meta = _parse_meta(metadata)
    with open_tenancy(ctx, migrations_dir=migrations_dir, shared_schema=shared_schema) as t:
        tenant = t.create_tenant(schema, name=name, domains=list(hosts), metadata=meta)
        how = getattr(t.provisioner, "last_path", None)
        if as_json:
            echo_json(_overview(t, [tenant])[0])
            return
    via = f" by {how}" if how else ""
    on = f" on {', '.join(hosts)}" if hosts else ""
    click.echo(f"created tenant {tenant.schema}{via}{on}")


@click.command("list")
@click.option(
    "--state",
    type=click.Choice([state.value for state in TenantState]),
    default=None,
    help="Only tenants in this state.",
)
@shared_schema_option
@_json_option
@click.pass_context
def list_tenants(ctx: click.Context, state: str | None, shared_schema: str, as_json: bool) -> None:
    """List tenants: state, domains (primary first), migration head and size."""
    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        rows = _overview(tenancy, tenancy.tenants(state=state))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No tenants yet: `tenantkit create NAME` makes one.")
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
    click.echo(f"{len(rows)} tenant{'s' if len(rows) != 1 else ''}")


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
    """Show one tenant (schema name or host): registry row, domains, migrations, tables."""
    with open_tenancy(ctx, migrations_dir=migrations_dir, shared_schema=shared_schema) as t:
        found = find_tenant(t, tenant)
        info = _overview(t, [found])[0]
        info["domains"] = [
            {"host": h, "primary": h == info["primary_domain"]} for h in info["domains"]
        ]
        with t.admin_connection() as conn:
            row = conn.execute(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = %s and c.relkind in ('r', 'p') "
                "and c.relname <> 'tenantkit_migrations'",  # tenantkit's own bookkeeping
                (found.schema,),
            ).fetchone()
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
    """Drop a tenant: its schema with all its data, its domains and its registry row."""
    from ..catalog import schema_sizes

    with open_tenancy(ctx, shared_schema=shared_schema) as tenancy:
        found = find_tenant(tenancy, tenant)
        if not yes:
            with tenancy.admin_connection() as conn:
                size = schema_sizes(conn, [found.schema]).get(found.schema)
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
