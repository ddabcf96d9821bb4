"""Tests of tenantkit.web.wsgi.WSGITenantMiddleware."""

from __future__ import annotations

import io
import json
import random
import socket
import threading
import time
import uuid
import wsgiref.simple_server
import wsgiref.util
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import flask
import httpx
import psycopg
import pytest
from psycopg import sql

from tenantkit.core.context import current_tenant
from tenantkit.core.models import Tenant, TenantState
from tenantkit.core.tenancy import Tenancy
from tenantkit.web.routing import Outcome, TenantResolver
from tenantkit.web.sources import RegistryDomainSource, StaticDomainSource
from tenantkit.web.wsgi import WSGITenantMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def tenant(schema: str, *, public: bool = False) -> Tenant:
    return Tenant(
        1, schema, schema, TenantState.ACTIVE, datetime(2026, 1, 1, tzinfo=timezone.utc), {}, public
    )


ACME = tenant("acme")
GLOBEX = tenant("globex")
PUBLIC = tenant("public", public=True)
HOSTS = {"acme.test": ACME, "globex.test": GLOBEX}


def schema() -> str:
    current = current_tenant()
    return "-" if current is None else str(current)


def echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Says which tenant it runs as, and where it is mounted."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    env_tenant = environ["tenantkit.tenant"]
    body = f"{schema()} {env_tenant} {environ.get('SCRIPT_NAME', '')}|{environ['PATH_INFO']}"
    return [body.encode()]


def public_echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"public {schema()}".encode()]


def make(app: Any = echo, **kw: Any) -> WSGITenantMiddleware:
    options = {k: kw.pop(k) for k in list(kw) if k in ("mode", "public_hosts", "path_prefix")}
    resolver = TenantResolver(StaticDomainSource(HOSTS), public_tenant=PUBLIC, **options)
    return WSGITenantMiddleware(app, resolver, **kw)


def client(app: Any, host: str) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=f"http://{host}")


def environ_for(host: str | None, path: str = "/") -> dict[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    environ.pop("HTTP_HOST", None)
    if host is not None:
        environ["HTTP_HOST"] = host
    return environ


class Recorder:
    def __init__(self) -> None:
        self.status = ""

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status
        return lambda data: None


def test_tenant_host_runs_app_as_tenant() -> None:
    with client(make(), "ACME.test:8000") as c:
        response = c.get("/orders")
    assert response.status_code == 200
    assert response.text == "acme acme |/orders"
    assert current_tenant() is None


def test_unknown_and_invalid_hosts_fail_closed() -> None:
    app = make()
    start = Recorder()
    assert b"".join(app(environ_for("evil.test"), start)) == b"Not Found"
    assert start.status.startswith("404")
    assert b"".join(app(environ_for("bad_host.test"), start)) == b"Bad Request"
    assert start.status.startswith("400")
    app(environ_for(None), start)
    assert start.status.startswith("400")


def test_public_app_and_custom_handlers() -> None:
    seen: list[object] = []

    def unknown(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append((environ["tenantkit.resolution"].outcome, current_tenant()))
        start_response("421 Misdirected Request", [])
        return []

    app = make(public_app=public_echo, unknown_app=unknown, public_hosts=["www.test"])
    with client(app, "www.test") as c:
        assert c.get("/").text == "public public"
    with client(app, "nobody.test") as c:
        assert c.get("/").status_code == 421
    assert seen == [(Outcome.UNKNOWN, None)]


def test_fallback_tenant() -> None:
    with client(make(fallback_tenant=GLOBEX), "nobody.test") as c:
        assert c.get("/").text.startswith("globex globex")
    with client(make(public_app=public_echo, fallback_tenant=PUBLIC), "nobody.test") as c:
        assert c.get("/").text == "public public"


def test_path_mode_moves_prefix_to_script_name() -> None:
    app = make(mode="path", public_app=public_echo)
    with client(app, "app.test") as c:
        assert c.get("/t/acme/orders/1").text == "acme acme /t/acme|/orders/1"
        assert c.get("/pricing").text == "public public"
        assert c.get("/t/nobody/x").status_code == 404


def test_flask_app_with_path_mode() -> None:
    flask_app = flask.Flask(__name__)

    @flask_app.get("/orders/<int:n>")
    def order(n: int) -> dict[str, object]:
        return {
            "tenant": schema(),
            "env": str(flask.request.environ["tenantkit.tenant"]),
            "self": flask.url_for("order", n=n),
        }

    with client(make(flask_app.wsgi_app, mode="path"), "app.test") as c:
        data = c.get("/t/globex/orders/7").json()
    assert data == {"tenant": "globex", "env": "globex", "self": "/t/globex/orders/7"}


def test_streaming_body_runs_with_tenant_and_leaves_none() -> None:
    seen: list[str] = []

    def streaming(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            for i in range(3):
                seen.append(schema())
                yield str(i).encode()
        finally:
            seen.append("close:" + schema())

    body = make(streaming)(environ_for("acme.test"), Recorder())
    iterator = iter(body)
    assert next(iterator) == b"0"
    assert current_tenant() is None  # not left current between chunks
    assert next(iterator) == b"1"
    body.close()  # type: ignore[attr-defined]
    assert seen == ["acme", "acme", "close:acme"]
    assert current_tenant() is None


def test_errors_reset_the_tenant() -> None:
    def boom(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError(schema())

    with pytest.raises(RuntimeError, match="acme"):
        make(boom)(environ_for("acme.test"), Recorder())
    assert current_tenant() is None

    def boom_later(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"x"
        raise RuntimeError(schema())

    body = make(boom_later)(environ_for("acme.test"), Recorder())
    with pytest.raises(RuntimeError, match="acme"):
        list(body)
    assert current_tenant() is None


def test_file_wrapper_passes_through() -> None:
    environ = environ_for("acme.test")
    environ["wsgi.file_wrapper"] = wsgiref.util.FileWrapper

    def send_file(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](io.BytesIO(b"data"))
        return wrapper

    result = make(send_file)(environ, Recorder())
    assert isinstance(result, wsgiref.util.FileWrapper)


# -- a real app, a real registry, a real database -------------------------------------------

N_TENANTS = 100


def stable_registry_scans(dsn: str, shared: str) -> int:
    """Scans of the registry tables, counted by the server once every backend has flushed."""
    query = (
        "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables"
        " WHERE schemaname = %s AND relname IN ('tenantkit_tenants', 'tenantkit_domains')"
    )
    previous = -1
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(50):
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(query, [shared]).fetchone()
            assert row is not None
            if row[0] == previous:
                return int(previous)
            previous = row[0]
            time.sleep(0.1)
    raise AssertionError("statistics did not settle")


@pytest.fixture(scope="module")
def registry(dsn: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A private registry (its own shared schema) with 100 tenants, each with a table naming it.

    Yields the shared schema and {host: schema}.
    """
    shared = f"rt_{uuid.uuid4().hex[:12]}"
    hosts: dict[str, str] = {}
    with Tenancy(dsn, shared_schema=shared) as tenancy:
        tenancy.install()
        for i in range(N_TENANTS):
            schema = f"{shared}_{i}"
            host = f"t{i}.{shared.replace('_', '-')}.test"
            tenancy.create_tenant(schema, domains=[host])
            hosts[host] = schema
        with tenancy.admin_connection() as conn:
            for schema in hosts.values():
                table = sql.Identifier(schema, "whoami")
                conn.execute(sql.SQL("CREATE TABLE {} (name text)").format(table))
                conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(table), [schema])
    yield shared, hosts
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = [shared, *hosts.values()]
        conn.execute(
            sql.SQL("DROP SCHEMA {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(n) for n in names)
            )
        )


def db_app(tenancy: Tenancy) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with tenancy.connection() as conn:
            rows = [r[0] for r in conn.execute("SELECT name FROM whoami").fetchall()]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"current": schema(), "rows": rows}).encode()]

    return app


def test_threads_each_see_only_their_tenant_and_routing_adds_no_query(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    requests = [host for _ in range(3) for host in hosts]
    random.Random(5).shuffle(requests)

    def run(requests: list[str], tenancy: Tenancy, app: WSGITenantMiddleware) -> list[str]:
        local = threading.local()

        def one(host: str) -> str:
            if not hasattr(local, "client"):
                local.client = httpx.Client(transport=httpx.WSGITransport(app=app))
            data = local.client.get(f"http://{host}/").json()
            assert data == {"current": hosts[host], "rows": [hosts[host]]}, host
            return schema()  # what this worker thread has current after the request

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, requests))

    before = stable_registry_scans(dsn, shared)
    # Phase 1: start, warm up with one request, stop. Phase 2: the same plus 300 requests
    # from 8 threads. The server must count the same registry scans for both.
    costs = []
    for batch in ([], requests):
        with Tenancy(dsn, shared_schema=shared, max_size=8) as tenancy:
            resolver = TenantResolver.from_tenancy(tenancy)
            assert resolver.wait_subscribed(5)
            app = WSGITenantMiddleware(db_app(tenancy), resolver)
            assert run([requests[0]], tenancy, app) == ["-"]
            leftovers = run(batch, tenancy, app)
            assert set(leftovers) <= {"-"}, "a tenant was left current in a worker thread"
            resolver.close()
        after = stable_registry_scans(dsn, shared)
        costs.append(after - before)
        before = after
    assert costs[0] > 0  # the measurement sees the warm-up load...
    assert costs[1] == costs[0]  # ...and no more for 300 warm requests
    assert current_tenant() is None


def test_domain_changes_take_effect_within_a_second(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    new_host = f"new.{shared.replace('_', '-')}.test"
    schema0 = hosts[next(iter(hosts))]
    with (
        Tenancy(dsn, shared_schema=shared) as tenancy,
        Tenancy(dsn, shared_schema=shared) as other,
    ):
        resolver = TenantResolver.from_tenancy(tenancy)
        assert resolver.wait_subscribed(5)
        app = WSGITenantMiddleware(db_app(tenancy), resolver)
        with httpx.Client(transport=httpx.WSGITransport(app=app)) as c:

            def status_becomes(code: int) -> float:
                started = time.monotonic()
                while time.monotonic() - started < 1.0:
                    if c.get(f"http://{new_host}/").status_code == code:
                        return time.monotonic() - started
                    time.sleep(0.01)
                raise AssertionError(f"{new_host} did not answer {code} within a second")

            assert c.get(f"http://{new_host}/").status_code == 404
            other.add_domain(schema0, new_host)
            status_becomes(200)
            assert c.get(f"http://{new_host}/").json()["rows"] == [schema0]
            other.remove_domain(new_host)
            status_becomes(404)
        resolver.close()


def test_registry_source_serves_subdomain_mode(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    schema0 = next(iter(hosts.values()))
    with Tenancy(dsn, shared_schema=shared) as tenancy:
        resolver = TenantResolver.from_tenancy(tenancy, mode="subdomain", base_domain="app.test")
        try:
            found = resolver.resolve(f"{schema0.replace('_', '-')}.app.test").tenant
            assert isinstance(found, Tenant)
            assert found.schema == schema0
            public = resolver.resolve("app.test")
            assert (public.outcome, public.tenant) == (Outcome.PUBLIC, tenancy.public_tenant)
        finally:
            resolver.close()


# -- lifetime: close(), warm-up (issues 11 and 17) ------------------------------------------


def router_backends(conn: psycopg.Connection) -> set[int]:
    """PIDs of this database's routing connections (LISTEN and loads)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE application_name = 'tenantkit-router' AND datname = current_database()"
    ).fetchall()
    return {r[0] for r in rows}


def test_close_releases_the_listen_connection(
    dsn: str, registry: tuple[str, dict[str, str]], conn: psycopg.Connection
) -> None:
    # The testing docs build one middleware per test: 300 tests used to leave 300 LISTEN
    # connections open and exhaust max_connections.
    shared, hosts = registry
    host = next(iter(hosts))
    before = router_backends(conn)
    with Tenancy(dsn, shared_schema=shared, max_size=2) as tenancy:
        for i in range(30):
            app = WSGITenantMiddleware(db_app(tenancy), tenancy)
            if i % 2:  # as a context manager, or closed by hand
                with app, httpx.Client(transport=httpx.WSGITransport(app=app)) as c:
                    assert c.get(f"http://{host}/").json()["current"] == hosts[host]
            else:
                assert app.resolver.wait_subscribed(5)
                app.close()
                app.close()  # idempotent
            assert app.resolver.closed
        deadline = time.monotonic() + 10
        while router_backends(conn) - before and time.monotonic() < deadline:
            time.sleep(0.05)  # a closed connection's backend exits asynchronously
        assert router_backends(conn) - before == set()


def test_a_resolver_passed_in_stays_open() -> None:
    resolver = TenantResolver(StaticDomainSource(HOSTS), public_tenant=PUBLIC)
    with WSGITenantMiddleware(echo, resolver):
        pass
    assert not resolver.closed
    assert resolver.subscribed
    resolver.close()


def test_the_table_is_loaded_before_the_first_request(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    host = next(iter(hosts))
    with Tenancy(dsn, shared_schema=shared, max_size=2) as tenancy:
        resolver = TenantResolver.from_tenancy(tenancy)
        source = resolver.source
        assert isinstance(source, RegistryDomainSource)
        with WSGITenantMiddleware(db_app(tenancy), resolver) as app:
            # Loaded in the background as the middleware was built (no request yet)...
            deadline = time.monotonic() + 10
            while resolver.cached_table() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert source.loads == 1
            with httpx.Client(transport=httpx.WSGITransport(app=app)) as c:
                assert c.get(f"http://{host}/").json()["current"] == hosts[host]
            # ...so the first request ran no routing query.
            assert source.loads == 1
        resolver.close()
    # Without warm-up the first request loads.
    lazy = make(warm=False)
    source_lazy = lazy.resolver.source
    assert isinstance(source_lazy, StaticDomainSource)
    assert source_lazy.loads == 0


# -- hosts fail closed (issue 11) -----------------------------------------------------------


def test_several_host_values_are_invalid() -> None:
    # WSGI servers join repeated headers with commas: two Host headers arrive as "a, b".
    app = make()
    start = Recorder()
    for host in ("acme.test, globex.test", "acme.test,acme.test", "globex.test;x"):
        assert b"".join(app(environ_for(host), start)) == b"Bad Request", host
        assert start.status.startswith("400")


def test_several_tenant_headers_are_invalid() -> None:
    app = make(mode="header")
    start = Recorder()
    environ = environ_for("svc.test")
    environ["HTTP_X_TENANT"] = "acme, globex"
    assert b"".join(app(environ, start)) == b"Bad Request"
    assert start.status.startswith("400")


def test_two_host_headers_through_a_real_wsgi_server() -> None:
    # wsgiref joins the two values into HTTP_HOST; the request must be refused, never
    # routed by either value.
    app = make()
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        for hosts in (["acme.test", "globex.test"], ["acme.test", "acme.test"]):
            request = "GET / HTTP/1.1\r\n" + "".join(f"Host: {h}\r\n" for h in hosts)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall((request + "Connection: close\r\n\r\n").encode())
                reply = b""
                while chunk := sock.recv(4096):
                    reply += chunk
            assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400"), reply
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
