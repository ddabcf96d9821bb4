"""What every ``tenantkit`` command needs: the database, a tenancy on it, and output helpers.

The database comes from the global ``--dsn`` (or ``PGTENANTS_DSN``, or ``DATABASE_URL``), or with
``--embedded`` from a throw-away server started on first use and removed when the command ends.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from ._errors import CliError, ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from ..core.models import Tenant
    from ..core.tenancy import Tenancy

__all__ = [
    "complete_tenant",
    "dsn_option_value",
    "echo_json",
    "find_tenant",
    "make_console",
    "open_tenancy",
    "print_rows",
    "require_dsn",
]

#: Seconds to wait for the server before saying it cannot be reached.
CONNECT_TIMEOUT = 5


def _root_obj(ctx: click.Context) -> dict[str, Any]:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, dict) else {}


def dsn_option_value(ctx: click.Context) -> str | None:
    """The global ``--dsn`` (or ``PGTENANTS_DSN`` / ``DATABASE_URL``), or None when none was
    given. With ``--embedded`` the throw-away server is started here, on first use."""
    obj = _root_obj(ctx)
    value = obj.get("dsn")
    if isinstance(value, str) and value:
        return value
    if obj.get("embedded"):
        from ..server.embedded import EmbeddedServer

        root = ctx.find_root()
        server = root.with_resource(EmbeddedServer())
        click.echo(
            f"embedded PostgreSQL {server.version} at {server.conninfo} "
            "(removed when the command ends)",
            err=True,
        )
        obj["dsn"] = server.conninfo
        return server.conninfo
    return None


def require_dsn(ctx: click.Context) -> str:
    """The database to work on; a one-line usage error saying how to give one when missing."""
    dsn = dsn_option_value(ctx)
    if dsn is None:
        raise CliError(
            "no database given: pass --dsn 'host=... dbname=...', set PGTENANTS_DSN or "
            "DATABASE_URL, or use --embedded for a throw-away server",
            ExitCode.USAGE,
        )
    return dsn


def check_reachable(dsn: str) -> None:
    """Connect once, so an unreachable server or a refused login fails fast and says why
    (a pool would retry in the background and time out without the reason)."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT, autocommit=True):
            pass
    except psycopg.ProgrammingError as exc:  # a malformed conninfo string
        raise CliError(f"invalid DSN: {exc}", ExitCode.USAGE) from exc


@contextmanager
def open_tenancy(
    ctx: click.Context,
    *,
    migrations_dir: str | None = None,
    shared_schema: str = "public",
    max_size: int = 2,
) -> Iterator[Tenancy]:
    """A :class:`~tenantkit.Tenancy` on the command's database, closed afterwards."""
    from ..core.tenancy import Tenancy

    dsn = require_dsn(ctx)
    check_reachable(dsn)
    with Tenancy(
        dsn,
        shared_schema=shared_schema,
        migrations=migrations_dir,
        min_size=1,
        max_size=max_size,
    ) as tenancy:
        yield tenancy


def find_tenant(
    tenancy: Tenancy, name: str, *, hint: str = "`tenantkit list` shows the tenants"
) -> Tenant:
    """The tenant whose schema name (as PostgreSQL folds an unquoted name) or host is ``name``;
    the shared schema's name gives the public tenant. ``TenantNotFound`` ending in ``hint``."""
    from ..errors import InvalidHostname, InvalidSchemaName, TenantNotFound

    name = name.strip()
    try:
        return tenancy.get_tenant(name.lower())
    except (TenantNotFound, InvalidSchemaName):
        pass
    try:
        return tenancy.get_tenant(host=name)
    except (TenantNotFound, InvalidHostname):
        pass
    raise TenantNotFound(f"no tenant has the schema name or host {name!r}; {hint}")


def make_console(*, stderr: bool = False) -> Console:
    """A rich console: tables and colour on a terminal, plain text when piped (``NO_COLOR``
    and ``FORCE_COLOR`` are honoured by rich)."""
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is read by programs and wide logs: don't squeeze tables into 80 columns.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(highlight=False, stderr=stderr, width=width)


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (dates and other objects as strings)."""
    click.echo(json.dumps(value, indent=2, default=str))


def print_rows(
    console: Console,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    right: Sequence[str] = (),
    wrap: Sequence[str] = (),
) -> None:
    """Print rows as a table; ``right`` names the columns to right-align (numbers), ``wrap``
    the ones that may wrap on a narrow terminal (the others keep their values on one line)."""
    from rich import box
    from rich.table import Table

    # psql-like: a rule under the header, no cell borders, so wide rows still fit.
    table = Table(
        title=title,
        title_justify="left",
        highlight=False,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in right else "left",
            no_wrap=column not in wrap,
            overflow="fold",
        )
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def complete_tenant(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of tenant schema names (``tenantkit show ac<TAB>``).

    Reads the registry of the database the command line names (``--dsn``, ``PGTENANTS_DSN`` or
    ``DATABASE_URL``); completes nothing, silently, when there is none or it cannot be read.
    """
    import psycopg
    from psycopg import sql

    from ..core.storage import TENANTS_TABLE

    root = ctx.find_root()
    dsn = root.params.get("dsn")
    if not dsn or root.params.get("embedded"):
        return []
    shared = ctx.params.get("shared_schema") or "public"
    try:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            rows = conn.execute(
                sql.SQL("select schema from {} where starts_with(schema, %s) order by 1").format(
                    sql.Identifier(shared, TENANTS_TABLE)
                ),
                (incomplete,),
            ).fetchall()
    except psycopg.Error:
        return []
    return [r[0] for r in rows if r[0] != shared]
