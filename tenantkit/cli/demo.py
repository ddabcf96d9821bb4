"""``tenantkit demo``: the whole product, end to end, on a throw-away server.

Starts an embedded PostgreSQL (or uses ``--dsn``, in a database of its own that it drops
afterwards), installs the registry, migrates a small example project, creates tenants the three
ways tenantkit can (migrations, template clone, warm spare), routes requests by host through the
WSGI middleware, shows that each tenant sees only its own rows, plans and checks drift, then
keeps the server up for you to explore until Ctrl-C (or exits with ``--no-wait``).
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import click
from psycopg.conninfo import conninfo_to_dict

from ..server import EmbeddedServer, temporary_database

__all__ = ["demo"]

_TENANTS = (("acme", "Acme Corp"), ("globex", "Globex"), ("initech", "Initech"))
WSGIStartResponse = Callable[..., Any]


@contextlib.contextmanager
def _database(dsn: str | None) -> Iterator[str]:
    """Yield the demo database's conninfo; clean up everything afterwards."""
    if dsn is None:
        with EmbeddedServer() as server:
            yield server.conninfo
        return
    # A database of its own on the user's server, so the demo never touches their data.
    with temporary_database(dsn, prefix="tenantkit_demo") as conninfo:
        yield conninfo


def _notes_app(tenancy: Any) -> Callable[[dict[str, Any], WSGIStartResponse], Iterable[bytes]]:
    """A one-query WSGI app: lists the current tenant's notes (the tenant comes from routing)."""

    def app(environ: dict[str, Any], start_response: WSGIStartResponse) -> Iterable[bytes]:
        with tenancy.connection() as conn:
            rows = conn.execute("select body from notes order by id").fetchall()
        body = "; ".join(r[0] for r in rows).encode()
        start_response("200 OK", [("content-type", "text/plain; charset=utf-8")])
        return [body]

    return app


def _call(app: Any, host: str) -> tuple[str, str]:
    """Send one GET / with the given Host header through a WSGI app; return (status, body)."""
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(s)

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
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


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _wait_for_interrupt() -> None:
    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.option(
    "--wait/--no-wait",
    default=True,
    help="Keep the server running for exploration until Ctrl-C [wait].",
)
@click.pass_context
def demo(ctx: click.Context, wait: bool) -> None:
    """Run tenantkit end to end on a throw-away PostgreSQL and show what it does.

    Uses an embedded server, or the global --dsn (in a new database it drops afterwards).
    """
    from rich.console import Console
    from rich.table import Table

    from .. import _demo
    from ..provisioning import Template
    from ..routing import TenantResolver
    from ..tenancy import Tenancy
    from ..wsgi import WSGITenantMiddleware
    from . import dsn_option_value

    console = Console(highlight=False)
    with _database(dsn_option_value(ctx)) as dsn:
        console.print(f"[bold]PostgreSQL[/] {dsn}")
        with Tenancy(dsn, migrations=_demo.MIGRATIONS) as tenancy:
            tenancy.install()
            report = tenancy.migrate()
            console.print(
                f"registry installed, shared migrations applied in {_ms(report.duration)}"
            )

            timings = Table(title="Creating tenants", title_justify="left")
            timings.add_column("tenant")
            timings.add_column("host")
            timings.add_column("how")
            timings.add_column("time", justify="right")
            # First by replaying the migrations, then from the template kept at the head, then
            # by claiming a pre-built spare schema: the three ways create_tenant can take.
            for index, (schema, name) in enumerate(_TENANTS):
                if index == 1:
                    Template(tenancy).ensure()
                elif index == 2:
                    tenancy.spares.fill(1)
                host = f"{schema}.localhost"
                started = time.perf_counter()
                tenant = tenancy.create_tenant(schema, name=name, domains=[host])
                elapsed = time.perf_counter() - started
                how = getattr(tenancy.provisioner, "last_path", None) or "schema"
                with tenancy.connection(tenant) as conn:
                    conn.execute("insert into notes (body) values (%s)", (f"hello from {name}",))
                timings.add_row(schema, host, how, _ms(elapsed))
            console.print(timings)

            resolver = TenantResolver.from_tenancy(tenancy)
            app = WSGITenantMiddleware(_notes_app(tenancy), resolver)
            requests = Table(title="Routing requests by Host", title_justify="left")
            requests.add_column("Host header")
            requests.add_column("status")
            requests.add_column("what the app saw")
            hosts = [f"{s}.localhost" for s, _ in _TENANTS]
            hosts += ["ACME.localhost.:8000", "unknown.localhost", "bad host!"]
            try:
                for host in hosts:
                    status, body = _call(app, host)
                    requests.add_row(host, status, body)
            finally:
                resolver.close()
            console.print(requests)

            plan = tenancy.plan()
            pending = sum(len(p.pending) for p in plan.entries)
            console.print(f"migrate --plan: {len(plan.entries)} schemas, {pending} pending")
            drift = tenancy.drift()
            console.print(
                f"drift: {drift.checked} tenants checked, {len(drift.drifted)} differ from "
                "the template"
            )

            if not wait:
                return
            params = conninfo_to_dict(dsn)
            url = (
                f"postgresql://{params.get('user', 'postgres')}@{params.get('host', '')}:"
                f"{params.get('port', 5432)}/{params.get('dbname', 'postgres')}"
            )
            console.print()
            console.print("Explore it (Ctrl-C stops and removes everything):")
            console.print(f"  export PGTENANTS_DSN='{dsn}'")
            console.print(f"  psql '{url}' -c 'set search_path = acme, public' -c 'table notes'")
            console.print("  tenantkit shell acme          # a SQL prompt working as acme")
            console.print(f"  tenantkit migrate --plan --migrations {_demo.MIGRATIONS}")
            sys.stdout.flush()
            _wait_for_interrupt()
