"""``tenantkit tenants``: list, create, rename and drop tenants and manage their domains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..errors import TenantkitError
from . import require_dsn
from ._options import migrations_option, shared_schema_option

__all__ = ["tenants"]


@contextmanager
def _tenancy(ctx: click.Context) -> Iterator[Any]:
    from ..tenancy import Tenancy

    options = ctx.find_object(dict) or {}
    with Tenancy(
        require_dsn(ctx),
        shared_schema=options.get("shared_schema", "public"),
        migrations=options.get("migrations_dir"),
        min_size=1,
        max_size=2,
    ) as tenancy:
        try:
            yield tenancy
        except TenantkitError as exc:
            # Our errors say what was wrong and what to do: show them without a traceback.
            raise click.ClickException(str(exc)) from exc


def _tenant_dict(tenant: Any, hosts: list[str]) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "schema": tenant.schema,
        "name": tenant.name,
        "state": str(getattr(tenant.state, "value", tenant.state)),
        "created_at": tenant.created_at.isoformat(),
        "domains": hosts,
        "metadata": dict(tenant.metadata),
    }


@click.group()
@migrations_option(required=False, purpose=": new tenants get the tenant migrations")
@shared_schema_option
@click.pass_context
def tenants(ctx: click.Context, migrations_dir: str | None, shared_schema: str) -> None:
    """Manage tenants and their domains."""
    ctx.ensure_object(dict)
    ctx.obj["migrations_dir"] = migrations_dir
    ctx.obj["shared_schema"] = shared_schema


@tenants.command("install")
@click.pass_context
def install_cmd(ctx: click.Context) -> None:
    """Create the tenant registry in the shared schema (safe to repeat)."""
    with _tenancy(ctx) as tenancy:
        tenancy.install()
    click.echo("registry installed")


@tenants.command("list")
@click.option("--state", default=None, help="Only tenants in this state (e.g. active).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_cmd(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """List tenants with their domains (the primary one first)."""
    with _tenancy(ctx) as tenancy:
        hosts: dict[int, list[str]] = {}
        for d in sorted(tenancy.domains(), key=lambda d: (not d.is_primary, d.host)):
            hosts.setdefault(d.tenant_id, []).append(d.host)
        rows = [_tenant_dict(t, hosts.get(t.id, [])) for t in tenancy.tenants(state=state)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("schema", "name", "state", "domains", "created")
    for row in rows:
        table.add_row(
            row["schema"], row["name"], row["state"], ", ".join(row["domains"]), row["created_at"]
        )
    Console(highlight=False).print(table)


@tenants.command("create")
@click.argument("schema", required=False)
@click.option("--name", default=None, help="Display name [the schema name].")
@click.option("--domain", "domains", multiple=True, help="Host routed to it (repeatable).")
@click.option("--meta", "metadata", multiple=True, metavar="KEY=VALUE", help="Metadata.")
@click.pass_context
def create_cmd(
    ctx: click.Context,
    schema: str | None,
    name: str | None,
    domains: tuple[str, ...],
    metadata: tuple[str, ...],
) -> None:
    """Create a tenant (schema, migrations and registry rows in one transaction).

    Without SCHEMA, one is derived from --name.
    """
    if schema is None and name is None:
        raise click.UsageError("give a SCHEMA or a --name to derive one from")
    meta: dict[str, str] = {}
    for pair in metadata:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--meta")
        meta[key] = value
    with _tenancy(ctx) as tenancy:
        tenant = tenancy.create_tenant(schema, name=name, domains=list(domains), metadata=meta)
    click.echo(f"created tenant {tenant.schema} (id {tenant.id})")


@tenants.command("rename")
@click.argument("schema")
@click.argument("new_schema")
@click.pass_context
def rename_cmd(ctx: click.Context, schema: str, new_schema: str) -> None:
    """Rename a tenant's schema (its data, domains and history move with it)."""
    with _tenancy(ctx) as tenancy:
        tenancy.rename_tenant(schema, new_schema)
    click.echo(f"renamed {schema} to {new_schema}")


@tenants.command("drop")
@click.argument("schema")
@click.option("--cascade", is_flag=True, help="Also when the schema holds tables.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def drop_cmd(ctx: click.Context, schema: str, cascade: bool, yes: bool) -> None:
    """Drop a tenant: its schema, its domains and its registry row."""
    if not yes:
        click.confirm(f"Drop tenant {schema} and all its data?", abort=True)
    with _tenancy(ctx) as tenancy:
        tenancy.drop_tenant(schema, cascade=cascade)
    click.echo(f"dropped tenant {schema}")


@tenants.command("add-domain")
@click.argument("schema")
@click.argument("host")
@click.option("--primary", is_flag=True, help="Make it the tenant's primary domain.")
@click.pass_context
def add_domain_cmd(ctx: click.Context, schema: str, host: str, primary: bool) -> None:
    """Route HOST to the tenant."""
    with _tenancy(ctx) as tenancy:
        domain = tenancy.add_domain(schema, host, primary=primary)
    click.echo(f"{domain.host} -> {domain.schema}{' (primary)' if domain.is_primary else ''}")


@tenants.command("remove-domain")
@click.argument("host")
@click.pass_context
def remove_domain_cmd(ctx: click.Context, host: str) -> None:
    """Stop routing HOST."""
    with _tenancy(ctx) as tenancy:
        tenancy.remove_domain(host)
    click.echo(f"removed {host}")
