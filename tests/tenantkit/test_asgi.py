"""Tests of tenantkit.web.asgi.ASGITenantMiddleware."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import fastapi
import httpx
import psycopg
import pytest
from _pgbouncer import PgBouncer
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tenantkit.core.context import current_tenant
from tenantkit.core.models import Tenant, TenantState
from tenantkit.core.tenancy import AsyncTenancy, Tenancy
from tenantkit.web.asgi import ASGITenantMiddleware, Message, Receive, Scope, Send
from tenantkit.web.routing import TenantResolver
from tenantkit.web.sources import RegistryDomainSource, StaticDomainSource


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


async def whoami(request: Request) -> PlainTextResponse:
    return PlainTextResponse(
        f"{schema()} {request.state.tenant} {request.scope['tenant']} "
        f"{request.url_for('whoami').path}"
    )


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for _ in range(3):
            yield schema() + ","

    return StreamingResponse(chunks())


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(schema())
    await websocket.close()


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/whoami", whoami, name="whoami"),
            Route("/stream", stream),
            WebSocketRoute("/ws", ws_endpoint),
        ]
    )


async def public_app(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse(f"public {schema()}")(scope, receive, send)


def make(app: Any = None, **kw: Any) -> ASGITenantMiddleware:
    options = {k: kw.pop(k) for k in list(kw) if k in ("mode", "public_hosts", "source")}
    source = options.pop("source", None) or StaticDomainSource(HOSTS)
    resolver = TenantResolver(source, public_tenant=PUBLIC, **options)
    return ASGITenantMiddleware(app or starlette_app(), resolver, **kw)


def client(app: Any, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


async def test_tenant_host_runs_app_as_tenant() -> None:
    async with client(make(), "Acme.Test.") as c:
        response = await c.get("/whoami")
    assert response.text == "acme acme acme /whoami"
    assert current_tenant() is None


async def test_unknown_invalid_public_and_fallback() -> None:
    app = make(public_app=public_app, public_hosts=["www.test"])
    async with client(app, "nobody.test") as c:
        assert (await c.get("/whoami")).status_code == 404
    async with client(app, "bad_host.test") as c:
        assert (await c.get("/whoami")).status_code == 400
    async with client(app, "www.test") as c:
        assert (await c.get("/")).text == "public public"
    async with client(make(fallback_tenant=GLOBEX), "nobody.test") as c:
        assert (await c.get("/whoami")).text.startswith("globex globex")
    fallback_public = make(public_app=public_app, fallback_tenant=PUBLIC)
    async with client(fallback_public, "nobody.test") as c:
        assert (await c.get("/")).text == "public public"


async def test_path_mode_extends_root_path() -> None:
    async with client(make(mode="path"), "app.test") as c:
        response = await c.get("/t/globex/whoami")
        assert (await c.get("/t/nobody/whoami")).status_code == 404
    assert response.text == "globex globex globex /t/globex/whoami"


async def test_fastapi_app() -> None:
    api = fastapi.FastAPI()

    @api.get("/items/{n}")
    async def item(n: int, request: fastapi.Request) -> dict[str, Any]:
        return {"n": n, "tenant": schema(), "state": str(request.state.tenant)}

    async with client(make(api), "globex.test") as c:
        assert (await c.get("/items/3")).json() == {"n": 3, "tenant": "globex", "state": "globex"}


async def test_streaming_response_and_errors() -> None:
    async with client(make(), "acme.test") as c:
        assert (await c.get("/stream")).text == "acme,acme,acme,"

    async def boom(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError(schema())

    with pytest.raises(RuntimeError, match="acme"):
        await make(boom)({"type": "http", "headers": [(b"host", b"acme.test")]}, _recv, _send)
    assert current_tenant() is None


async def _recv() -> Message:
    return {"type": "http.disconnect"}


async def _send(message: Message) -> None:
    return None


async def test_lifespan_passes_through() -> None:
    seen: list[Mapping[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await make(app)(scope, _recv, _send)
    assert seen == [scope]
    assert seen[0] is scope


async def websocket(app: ASGITenantMiddleware, host: str) -> list[Message]:
    """Open a websocket on ``/ws`` at ``host``; return what the app sent."""
    incoming: list[Message] = [{"type": "websocket.connect"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
    }
    await app(scope, receive, send)
    return sent


async def test_websockets_are_routed_by_host() -> None:
    app = make()
    sent = await websocket(app, "acme.test")
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "acme"
    assert await websocket(app, "nobody.test") == [{"type": "websocket.close", "code": 1008}]
    assert current_tenant() is None


class ThreadRecordingSource(StaticDomainSource):
    def __init__(self) -> None:
        super().__init__(HOSTS)
        self.threads: list[int] = []

    def load(self) -> Mapping[str, Tenant | str]:
        self.threads.append(threading.get_ident())
        return super().load()


async def test_table_loads_off_the_event_loop() -> None:
    source = ThreadRecordingSource()
    app = make(source=source)
    async with client(app, "acme.test") as c:
        for _ in range(5):
            assert (await c.get("/whoami")).status_code == 200
        source.update({"globex.test": GLOBEX})
        assert (await c.get("/whoami")).status_code == 404
    assert len(source.threads) == 2
    assert threading.get_ident() not in source.threads


# -- a real app, a real registry, a real database -------------------------------------------

N_TENANTS = 100


@pytest.fixture(scope="module")
def registry(dsn: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A private registry (its own shared schema) with 100 tenants, each with a table naming it.

    Yields the shared schema and {host: schema}.
    """
    shared = f"ra_{uuid.uuid4().hex[:12]}"
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


async def test_tasks_each_see_only_their_tenant(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    async with AsyncTenancy(dsn, shared_schema=shared, max_size=8) as atenancy:
        await atenancy.get_public_tenant()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            async with atenancy.connection() as conn:
                cur = await conn.execute("SELECT name FROM whoami")
                rows = [r[0] for r in await cur.fetchall()]
            await asyncio.sleep(0)  # let other requests interleave while this one is current
            response = JSONResponse({"current": schema(), "rows": rows})
            await response(scope, receive, send)

        resolver = TenantResolver.from_tenancy(atenancy, public_hosts=["www.test"])
        try:
            assert resolver.wait_subscribed(5)
            mw = ASGITenantMiddleware(app, resolver, public_app=public_app)
            requests = [host for _ in range(3) for host in hosts]
            random.Random(7).shuffle(requests)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw)) as c:

                async def one(host: str) -> None:
                    data = (await c.get(f"http://{host}/")).json()
                    assert data == {"current": hosts[host], "rows": [hosts[host]]}, host

                await asyncio.gather(*(one(h) for h in requests))
                assert (await c.get("http://nobody.test/")).status_code == 404
                public = (await c.get("http://www.test/")).text
                assert public == f"public {shared}"  # the public tenant: the shared schema
            assert current_tenant() is None
        finally:
            resolver.close()


async def test_async_registry_source_serves_key_modes(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    schema0 = next(iter(hosts.values()))
    atenancy = AsyncTenancy(dsn, shared_schema=shared)
    # Built before the public tenant was loaded, as at import time of an app module.
    resolver = TenantResolver.from_tenancy(atenancy, mode="header", subscribe=False)
    async with atenancy:
        try:
            found = resolver.resolve("svc", header_value=schema0.replace("_", "-")).tenant
            assert isinstance(found, Tenant)
            assert found.schema == schema0
            assert resolver.resolve("svc").tenant == await atenancy.get_public_tenant()
        finally:
            resolver.close()


# -- hosts fail closed (issue 11) -----------------------------------------------------------


def http_scope(*headers: tuple[bytes, bytes], path: str = "/whoami") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }


async def status_of(app: Any, scope: dict[str, Any]) -> int:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, _recv, send)
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


async def test_two_host_headers_are_a_bad_request() -> None:
    # Which of the two a proxy, the app or a framework reads is anybody's guess: the request
    # is refused rather than routed by the last one (what this middleware used to do).
    app = make()
    for first, second in ((b"acme.test", b"globex.test"), (b"nobody.test", b"acme.test")):
        scope = http_scope((b"host", first), (b"user-agent", b"t"), (b"host", second))
        assert await status_of(app, scope) == 400
    assert await status_of(app, http_scope((b"host", b"acme.test"))) == 200
    header_mode = make(mode="header")
    two_tenants = http_scope((b"host", b"svc"), (b"x-tenant", b"acme"), (b"x-tenant", b"globex"))
    assert await status_of(header_mode, two_tenants) == 400
    joined = http_scope((b"host", b"svc"), (b"x-tenant", b"acme, globex"))
    assert await status_of(header_mode, joined) == 400
    assert await status_of(header_mode, http_scope((b"host", b"svc"), (b"x-tenant", b"acme"))) == (
        200
    )


# -- lifetime: lifespan warm-up, close() (issues 11 and 17) ---------------------------------


class Lifespan:
    """Drive the ASGI lifespan protocol of ``app`` as a server does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _send(self, message: Message) -> None:
        await self.outbox.put(message)

    async def startup(self) -> Message:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self._send))
        await self.inbox.put({"type": "lifespan.startup"})
        return await asyncio.wait_for(self.outbox.get(), 30)

    async def shutdown(self) -> Message:
        await self.inbox.put({"type": "lifespan.shutdown"})
        message = await asyncio.wait_for(self.outbox.get(), 30)
        assert self.task is not None
        await asyncio.wait_for(self.task, 30)
        return message


async def test_lifespan_startup_loads_the_table() -> None:
    source = ThreadRecordingSource()
    app = make(source=source)
    lifespan = Lifespan(app)
    assert (await lifespan.startup())["type"] == "lifespan.startup.complete"
    assert len(source.threads) == 1  # loaded at start-up, off the event loop
    assert threading.get_ident() not in source.threads
    async with client(app, "acme.test") as c:
        assert (await c.get("/whoami")).status_code == 200
    assert len(source.threads) == 1  # the first request ran no load
    assert (await lifespan.shutdown())["type"] == "lifespan.shutdown.complete"
    assert not app.resolver.closed  # passed in: its owner closes it
    app.resolver.close()


async def test_lifespan_shutdown_closes_what_the_middleware_built(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    host = next(iter(hosts))
    with Tenancy(dsn, shared_schema=shared, max_size=2) as tenancy:
        app = ASGITenantMiddleware(starlette_app(), tenancy)
        source = app.resolver.source
        assert isinstance(source, RegistryDomainSource)
        lifespan = Lifespan(app)
        assert (await lifespan.startup())["type"] == "lifespan.startup.complete"
        assert source.loads == 1
        async with client(app, host) as c:
            assert (await c.get("/whoami")).text.startswith(hosts[host])
        assert source.loads == 1
        assert app.resolver.subscribed
        assert (await lifespan.shutdown())["type"] == "lifespan.shutdown.complete"
        assert app.resolver.closed
        assert not app.resolver.subscribed


async def test_require_listen_behind_a_pooler_fails_the_startup(
    registry: tuple[str, dict[str, str]], pgbouncer: PgBouncer
) -> None:
    shared, _ = registry
    with Tenancy(pgbouncer.dsn, shared_schema=shared, pgbouncer=True, max_size=1) as pooled:
        resolver = TenantResolver.from_tenancy(pooled, require_listen=True)
        app = ASGITenantMiddleware(starlette_app(), resolver)
        try:
            message = await Lifespan(app).startup()
            assert message["type"] == "lifespan.startup.failed"
            assert "listen_conninfo" in message["message"]
        finally:
            await app.aclose()
            resolver.close()


async def test_close_releases_every_connection(
    dsn: str, registry: tuple[str, dict[str, str]]
) -> None:
    shared, hosts = registry
    host = next(iter(hosts))

    def router_backends(conn: psycopg.Connection) -> set[int]:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE application_name = 'tenantkit-router' AND datname = current_database()"
        ).fetchall()
        return {r[0] for r in rows}

    with psycopg.connect(dsn, autocommit=True) as conn:
        before = router_backends(conn)
        for i in range(10):
            # An AsyncTenancy: the source also holds a load connection of its own.
            async with AsyncTenancy(dsn, shared_schema=shared, max_size=1) as atenancy:
                app = ASGITenantMiddleware(starlette_app(), atenancy)
                if i % 2:
                    async with app, client(app, host) as c:
                        assert (await c.get("/whoami")).status_code == 200
                else:
                    async with client(app, host) as c:
                        assert (await c.get("/whoami")).status_code == 200
                    app.close()
                    await app.aclose()  # idempotent
                assert app.resolver.closed
        deadline = time.monotonic() + 10
        while router_backends(conn) - before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert router_backends(conn) - before == set()


async def test_building_the_middleware_needs_no_database() -> None:
    atenancy = AsyncTenancy("host=127.0.0.1 port=1 dbname=nowhere connect_timeout=1")
    app = ASGITenantMiddleware(starlette_app(), atenancy)
    # A start-up without a database is logged, not fatal: requests try again.
    assert (await Lifespan(app).startup())["type"] == "lifespan.startup.complete"
    await app.aclose()
