"""Tests of tenantkit.asgi.ASGITenantMiddleware."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import fastapi
import httpx
import psycopg
import pytest
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tenantkit.asgi import ASGITenantMiddleware, Message, Receive, Scope, Send
from tenantkit.domain_sources import StaticDomainSource
from tenantkit.models import Tenant, TenantState
from tenantkit.routing import TenantResolver
from tenantkit.search_path import current_tenant
from tenantkit.tenancy import AsyncTenancy, Tenancy


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
