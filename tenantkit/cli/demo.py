"""``tenantkit demo``: the whole product, end to end, on a throw-away PostgreSQL, in seconds.

Without a DSN it starts an embedded server; with one (global ``--dsn``, ``PGTENANTS_DSN`` or
``DATABASE_URL``) it works in a database of its own that it drops afterwards. It installs the
registry, migrates the packaged example project (:mod:`tenantkit._demo`), creates tenants the three
ways tenantkit can (replaying migrations, cloning the template, claiming a warm spare), routes
requests by Host through :class:`~tenantkit.web.wsgi.WSGITenantMiddleware`, checks isolation with
:mod:`tenantkit.introspection.isolation`, prints a summary and cleans up. ``--keep`` leaves it all
running instead and prints how to explore it and the one command that removes it.
"""

from __future__ import annotations

import io
import logging
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ..server.embedded import EmbeddedServer, with_dbname
from ._context import check_reachable, make_console
from ._errors import CliError, ExitCode
from .server import stop_command

if TYPE_CHECKING:
    from rich.console import Console

    from ..core.tenancy import Tenancy

__all__ = ["demo"]

#: (schema, display name); each is created by a different provisioning path, in this order.
_TENANTS = (("acme", "Acme Corp"), ("globex", "Globex"), ("initech", "Initech"))
_PATHS = {
    "migrations": "migrations replayed",
    "template": "template clone",
    "spare": "spare claimed",
    "empty": "empty schema",
}
#: Databases made by the demo on a user's server start with this (and only those are dropped).
_DB_PREFIX = "tenantkit_demo_"
_BASE_DOMAIN = "localhost"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Teardown after an interrupt makes the pool and the listener complain about connections
    # cut short; the user asked for the stop, so only "error: interrupted" is shown.
    for name in ("psycopg", "tenantkit"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    raise KeyboardInterrupt


class _Signals:
    """How the demo takes Ctrl-C and SIGTERM.

    While it works they unwind it (:meth:`unwind`), so its database or server is removed
    (SIGTERM's default action would kill the process and leave them). Once it is finishing
    (:meth:`hold`) they are only recorded, so that what is kept or removed is also printed;
    the command then exits as interrupted.
    """

    def __init__(self) -> None:
        self.held: list[int] = []
        self._previous: dict[int, Any] = {}

    def _install(self, handler: Callable[[int, FrameType | None], None]) -> None:
        for sig in _INTERRUPTS:
            self._previous.setdefault(sig, signal.signal(sig, handler))

    def unwind(self) -> None:
        """From now on an interrupt raises ``KeyboardInterrupt``."""
        self._install(_interrupt)

    def hold(self) -> None:
        """From now on an interrupt is recorded in :attr:`held`."""
        self._install(self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.held.append(signum)

    def restore(self) -> None:
        """Put back the handlers found before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# --- where the demo runs -------------------------------------------------------------------


@dataclass
class _Place:
    """The demo's database and how to describe, keep or remove it."""

    conninfo: str
    where: str
    server: EmbeddedServer | None = None
    server_conninfo: str | None = None  # the user's DSN, when the demo made a database there
    dbname: str | None = None
    kept: bool = False


def _describe(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}"


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Let cleanup finish: Ctrl-C or SIGTERM arriving meanwhile is acted on afterwards
    (interrupting ``DROP DATABASE`` would cancel it and leave the database behind)."""
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in _INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt


@contextmanager
def _embedded(console: Console, keep: bool) -> Iterator[_Place]:
    server = EmbeddedServer()
    try:
        with console.status("Starting an embedded PostgreSQL..."):
            server.start()  # stops what it started itself when interrupted
        # start() installed the server's own handlers, which stop the server at once and then
        # let the previous one run; put ours back on top so cleanup runs in order.
        for sig in _INTERRUPTS:
            signal.signal(sig, _interrupt)
        place = _Place(
            conninfo=server.conninfo,
            where=(
                f"embedded PostgreSQL {server.version} at {server.host}:{server.port}, "
                f"started in {server.startup_seconds or 0:.2f} s"
            ),
            server=server,
        )
        yield place
    except BaseException:
        with _uninterrupted():
            server.stop()  # a failed or interrupted demo leaves nothing, even with --keep
        raise
    # Finishing: the demo holds interrupts from here until it has said what it kept.
    if keep:
        server.detach()
        place.kept = True
    else:
        server.stop()


@contextmanager
def _own_database(dsn: str, keep: bool) -> Iterator[_Place]:
    check_reachable(dsn)
    dbname = f"{_DB_PREFIX}{uuid.uuid4().hex[:10]}"
    created = False
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.info.parameter_status("server_version") or "?"
            try:
                with _uninterrupted():
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                    created = True
            except psycopg.errors.InsufficientPrivilege as exc:
                raise CliError(
                    "the demo creates a database of its own and this login may not "
                    "(CREATEDB privilege needed); run `tenantkit demo` without a DSN to use an "
                    "embedded server instead",
                    ExitCode.FAILED,
                ) from exc
        place = _Place(
            conninfo=with_dbname(dsn, dbname),
            where=(
                f"PostgreSQL {version.split()[0]} at {_describe(dsn)}, in a new database {dbname}"
            ),
            server_conninfo=dsn,
            dbname=dbname,
        )
        yield place
    except BaseException:
        if created:
            with _uninterrupted():
                _drop_database(dsn, dbname)
        raise
    if keep:
        place.kept = True
    else:
        _drop_database(dsn, dbname)


def _drop_database(dsn: str, dbname: str) -> bool:
    """Drop ``dbname`` (connections and all); False when it did not exist."""
    if conninfo_to_dict(dsn).get("dbname") == dbname:
        dsn = with_dbname(dsn, "postgres")  # cannot drop the database we are connected to
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if row is None:
            return False
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
    return True


# --- the sample application --------------------------------------------------------------


def _tenant_app(tenancy: Tenancy) -> WSGIApp:
    """A one-query WSGI app: the current tenant's notes and the schema they came from."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with tenancy.connection() as conn:
            rows = conn.execute("select current_schema(), body from notes order by id").fetchall()
        schema = rows[0][0] if rows else "?"
        body = f"{schema}|" + "; ".join(str(r[1]) for r in rows)
        start_response("200 OK", [("content-type", "text/plain; charset=utf-8")])
        return [body.encode()]

    return app


def _public_app(tenancy: Tenancy) -> WSGIApp:
    """The public site: shared data (the plans), from the shared schema."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with tenancy.admin_connection() as conn:
            rows = conn.execute("select current_schema(), name from plans order by id").fetchall()
        schema = rows[0][0] if rows else "?"
        body = f"{schema}|plans: " + ", ".join(str(r[1]) for r in rows)
        start_response("200 OK", [("content-type", "text/plain; charset=utf-8")])
        return [body.encode()]

    return app


def _get(app: WSGIApp, host: str) -> tuple[str, str]:
    """Send ``GET /`` with this Host header through a WSGI app; return (status, body)."""
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(s)

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": _BASE_DOMAIN,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    result = app(environ, start_response)
    try:
        body = b"".join(result).decode()
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], body


# --- the steps -----------------------------------------------------------------------------


def _heading(console: Console, text: str) -> None:
    console.print()
    console.print(f"[bold]{text}[/]")


def _timed(console: Console, what: str, seconds: float) -> None:
    console.print(f"{what:<40} {_ms(seconds):>9}")


def _table(columns: Iterable[str], right: Iterable[str] = ()) -> Any:
    """A table in the style of the other commands' (``print_rows``): a rule under the header."""
    from rich import box
    from rich.table import Table

    table = Table(highlight=False, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", no_wrap=True)
    return table


def _create_tenants(console: Console, tenancy: Tenancy) -> list[tuple[str, str, float]]:
    """Create the demo tenants, one per provisioning path, showing progress; return
    (schema, path, seconds) per tenant."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    from ..provisioning.provisioners import Template

    table = _table(["tenant", "name", "host", "provisioned by", "time"], right=["time"])
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        console=console,
    )
    task = progress.add_task("creating tenants", total=len(_TENANTS))
    created: list[tuple[str, str, float]] = []
    prepared: list[str] = []
    # Transient: on a terminal the growing table and the bar are replaced by the final table;
    # piped, only the final table is printed.
    with Live(Group(table, progress), console=console, transient=True, refresh_per_second=20):
        for index, (schema, name) in enumerate(_TENANTS):
            # First by replaying the migrations, then from the template kept at the head, then
            # by claiming a pre-built spare schema: the three ways create_tenant can take.
            if index == 1:
                progress.update(task, description="building the template schema")
                started = time.perf_counter()
                template = Template(tenancy)
                template.ensure()
                # The clone script is read from the catalog once per process; a long-running
                # application pays that once, so it is part of the preparation here.
                template.script_standalone(template.migrations().digest("tenant"))
                prepared.append(f"template schema {_ms(time.perf_counter() - started)}")
            elif index == 2:
                progress.update(task, description="filling the spare pool")
                started = time.perf_counter()
                tenancy.spares.fill(1)
                prepared.append(f"1 spare schema {_ms(time.perf_counter() - started)}")
            progress.update(task, description=f"creating {schema}")
            host = f"{schema}.{_BASE_DOMAIN}"
            started = time.perf_counter()
            tenant = tenancy.create_tenant(schema, name=name, domains=[host])
            elapsed = time.perf_counter() - started
            path = str(getattr(tenancy.provisioner, "last_path", None) or "schema")
            with tenancy.connection(tenant) as conn:
                conn.execute("insert into notes (body) values (%s)", (f"hello from {name}",))
            created.append((schema, path, elapsed))
            table.add_row(schema, name, host, _PATHS.get(path, path), _ms(elapsed))
            progress.advance(task)
    console.print(table)
    console.print(f"prepared ahead of time, as a deployment does: {', '.join(prepared)}")
    return created


def _route(console: Console, tenancy: Tenancy) -> list[tuple[str, str, str, str]]:
    """Send sample requests through the routing middleware; return (host, status, schema,
    response) per request."""
    from rich.text import Text

    from ..web.routing import TenantResolver
    from ..web.wsgi import WSGITenantMiddleware

    hosts = [f"{schema}.{_BASE_DOMAIN}" for schema, _ in _TENANTS]
    hosts += [f"ACME.{_BASE_DOMAIN}.:8000", _BASE_DOMAIN, f"unknown.{_BASE_DOMAIN}", "bad host!"]
    rows: list[tuple[str, str, str, str]] = []
    # subscribe=False: the registry does not change while these requests run, so no LISTEN
    # thread is needed (an application keeps the default: LISTEN/NOTIFY invalidation).
    with TenantResolver.from_tenancy(
        tenancy, public_hosts=[_BASE_DOMAIN], subscribe=False
    ) as resolver:
        app = WSGITenantMiddleware(_tenant_app(tenancy), resolver, public_app=_public_app(tenancy))
        for host in hosts:
            status, body = _get(app, host)
            schema, sep, text = body.partition("|")
            if not sep:
                schema, text = "-", body
            rows.append((host, status, schema, text))
    table = _table(["Host header", "status", "served from schema", "response"])
    for host, status, schema, text in rows:
        style = "green" if status.startswith("2") else "yellow"
        table.add_row(Text(host), Text(status, style=style), Text(schema), Text(text))
    console.print(table)
    return rows


def _check_isolation(console: Console, tenancy: Tenancy) -> bool:
    """Each tenant sees only its own rows; no tenant object references another tenant."""
    from ..introspection.isolation import check_isolation

    ok = True
    seen: list[str] = []
    for schema, name in _TENANTS:
        with tenancy.connection(schema) as conn:
            bodies = [str(r[0]) for r in conn.execute("select body from notes").fetchall()]
        if bodies == [f"hello from {name}"]:
            seen.append(f"{schema} 1 row")
        else:
            ok = False
            seen.append(f"{schema} WRONG {bodies!r}")
    console.print(f"each tenant sees only its own notes: {', '.join(seen)}")
    schemas = [schema for schema, _ in _TENANTS]
    with psycopg.connect(tenancy.conninfo, autocommit=True) as admin:
        report = check_isolation(admin, schemas, tenancy.connection)
    if report.references:
        for reference in report.references:
            console.print(f"cross-schema reference: {reference}")
    else:
        console.print("cross-schema references between tenant schemas: none")
    if report.leaks:
        for leak in report.leaks:
            console.print(f"leak: {leak}")
    else:
        console.print(
            f"canary rows: {report.canaries} written (one per table of each tenant), none "
            "visible to another tenant"
        )
    ok = ok and report.ok
    console.print(
        "[bold green]isolation OK[/]" if ok else "[bold red]ISOLATION VIOLATED[/]", highlight=False
    )
    return ok


def _run(console: Console, conninfo: str) -> bool:
    """Every step of the demo on ``conninfo``; True when everything checked out."""
    from .. import _demo
    from ..core.tenancy import Tenancy

    began = time.perf_counter()
    with Tenancy(conninfo, migrations=_demo.MIGRATIONS, max_size=4) as tenancy:
        _heading(console, "1. Registry and shared migrations")
        started = time.perf_counter()
        tenancy.install()
        _timed(
            console,
            f"registry installed in schema {tenancy.shared_schema}",
            time.perf_counter() - started,
        )
        report = tenancy.migrate()
        shared = report.shared
        applied = ", ".join(shared.applied) if shared is not None else ""
        _timed(console, f"shared migrations applied: {applied or 'none'}", report.duration)

        _heading(console, "2. Tenants: each with its own schema and host")
        created = _create_tenants(console, tenancy)

        _heading(console, "3. Requests through WSGITenantMiddleware, routed by Host")
        routed = _route(console, tenancy)

        _heading(console, "4. Isolation")
        isolated = _check_isolation(console, tenancy)

        plan = tenancy.plan()
        drift = tenancy.drift()

    statuses = {host: (status.split()[0], schema) for host, status, schema, _ in routed}
    routed_ok = all(
        statuses.get(f"{schema}.{_BASE_DOMAIN}") == ("200", schema) for schema, _ in _TENANTS
    )
    pending = sum(len(p.pending) for p in plan.entries)
    _heading(console, "Summary")
    unknown, bad = statuses[f"unknown.{_BASE_DOMAIN}"][0], statuses["bad host!"][0]
    for label, text in [
        ("tenants", f"{len(created)}, created three ways (migrations, template clone, spare)"),
        (
            "routing",
            f"{len(routed)} requests; "
            + ("each tenant host served from its own schema" if routed_ok else "MISROUTED")
            + f"; unknown host {unknown}, bad host {bad}",
        ),
        ("isolation", "OK" if isolated else "VIOLATED"),
        (
            "migrations",
            f"{pending} pending; {len(drift.drifted)} of {drift.checked} tenants drift from "
            "the template",
        ),
        ("time", f"{time.perf_counter() - began:.2f} s (server start not included)"),
    ]:
        console.print(f"{label:<11}{text}")
    return isolated and routed_ok and pending == 0 and not drift.drifted


def _command(console: Console, line: str) -> None:
    """Print a command to copy: never wrapped, never read as markup (a DSN may hold ``[``)."""
    console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)


def _print_kept(console: Console, place: _Place) -> None:
    from .. import _demo

    console.print()
    if place.server is not None:
        console.print("[bold]Kept running.[/] Explore it:")
    else:
        console.print(f"[bold]Kept database {place.dbname}.[/] Explore it:")
    _command(console, f"export PGTENANTS_DSN={shlex.quote(place.conninfo)}")
    _command(console, f"export TENANTKIT_MIGRATIONS={shlex.quote(str(_demo.MIGRATIONS))}")
    _command(console, "tenantkit shell --tenant acme")
    if place.server is not None:
        console.print("Stop and remove it:")
        _command(console, stop_command(place.server.base_dir))
    else:
        assert place.server_conninfo is not None and place.dbname is not None
        console.print("Drop it:")
        _command(
            console,
            f"tenantkit --dsn {shlex.quote(place.server_conninfo)} demo --drop {place.dbname}",
        )


def _print_cleaned(console: Console, place: _Place) -> None:
    console.print()
    if place.server is not None:
        console.print(f"Cleaned up: server stopped, {place.server.base_dir} removed.", markup=False)
    else:
        console.print(f"Cleaned up: database {place.dbname} dropped.", markup=False)


def _drop_kept(ctx: click.Context, dbname: str) -> None:
    from . import require_dsn

    if not dbname.startswith(_DB_PREFIX):
        raise CliError(
            f"{dbname!r} is not a database made by `tenantkit demo --keep` (their names start "
            f"with {_DB_PREFIX}); nothing was dropped",
            ExitCode.USAGE,
        )
    dsn = require_dsn(ctx)
    check_reachable(dsn)
    if not _drop_database(dsn, dbname):
        raise CliError(f"no database {dbname!r} on {_describe(dsn)}", ExitCode.NOT_FOUND)
    click.echo(f"Dropped database {dbname}.")


@click.command()
@click.option(
    "--keep",
    is_flag=True,
    help="Leave everything running after the command (the embedded server, or the demo's "
    "database on your server) and print how to explore and remove it.",
)
@click.option(
    "--drop",
    "drop_db",
    metavar="DBNAME",
    default=None,
    help="Drop a database left by `tenantkit --dsn ... demo --keep` and exit.",
)
# The demo used to wait for Ctrl-C unless --no-wait; it now always cleans up and exits.
@click.option("--no-wait", is_flag=True, hidden=True)
@click.pass_context
def demo(ctx: click.Context, keep: bool, drop_db: str | None, no_wait: bool) -> None:
    """Run tenantkit end to end on a throw-away PostgreSQL and show what it does.

    Starts an embedded server, or with a DSN (--dsn, PGTENANTS_DSN, DATABASE_URL) works in a
    new database of its own; creates tenants the three ways tenantkit can, routes requests by
    host, checks isolation, then removes everything (unless --keep).
    """
    from ._context import dsn_option_value

    if drop_db is not None:
        _drop_kept(ctx, drop_db)
        return
    console = make_console()
    root = ctx.find_root().obj or {}
    # --embedded means "no server of mine": the demo's own embedded server, which --keep can
    # leave running (the group's lazily started one is always removed at exit).
    dsn = None if root.get("embedded") else dsn_option_value(ctx)
    signals = _Signals()
    signals.unwind()
    try:
        where = _embedded(console, keep) if dsn is None else _own_database(dsn, keep)
        with where as place:
            console.print("[bold]tenantkit demo[/]: schema-per-tenant multi-tenancy on PostgreSQL")
            console.print(place.where, markup=False)
            ok = _run(console, place.conninfo)
            signals.hold()
        if place.kept:
            _print_kept(console, place)
        else:
            _print_cleaned(console, place)
    finally:
        signals.restore()
    if signals.held:
        raise KeyboardInterrupt  # after the report: "error: interrupted", exit 130
    if not ok:
        raise CliError("the demo found a problem; see above", ExitCode.FAILED)
