"""tenant_client / atenant_client against real WSGI (Flask) and ASGI (Starlette, FastAPI) apps."""

from __future__ import annotations

APPS = """
from flask import Flask, request as flask_request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from fastapi import FastAPI


def query(tenancy):
    # tenancy.connection() with no argument: the tenant the routing middleware made current
    with tenancy.connection() as conn:
        schema = conn.execute("select current_schema()").fetchone()[0]
        rows = conn.execute("select count(*) from shop_t0").fetchone()[0]
    return schema, rows


def flask_app(tenancy):
    app = Flask("shop")

    @app.get("/")
    def index():
        schema, rows = query(tenancy)
        return {"schema": schema, "rows": rows, "host": flask_request.host}

    return app


def starlette_app(tenancy):
    async def index(request):
        schema, rows = query(tenancy)
        return JSONResponse({"schema": schema, "rows": rows, "host": request.headers["host"]})

    return Starlette(routes=[Route("/", index)])


def fastapi_app(tenancy):
    app = FastAPI()

    @app.get("/")
    def index():
        schema, rows = query(tenancy)
        return {"schema": schema, "rows": rows}

    return app


def echo_host_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["HTTP_HOST"].encode()]
"""


def test_http_clients(inner) -> None:
    """Requests carry the tenant's host; for_host / for_tenant / headers switch it."""
    inner.pytester.makepyfile(apps=APPS)
    inner.pytester.makepyfile(
        """
        import pytest
        from apps import flask_app, starlette_app, fastapi_app, echo_host_app

        @pytest.mark.parametrize("make", [flask_app, starlette_app, fastapi_app])
        @pytest.mark.tenants("acme", "globex")
        def test_routed(make, tenancy, tenants, tenant_client, tenant_conn):
            tenant_conn.execute("insert into shop_t0 (name) values ('one')")
            tenant_conn.commit()
            client = tenant_client(make(tenancy), route=True)
            assert client.host == "acme.example.test"
            assert client.get("/").json()["schema"] == "acme"
            assert client.get("/").json()["rows"] == 1
            other = client.for_tenant(tenants["globex"])
            assert other.get("/").json() == {**other.get("/").json(), "schema": "globex", "rows": 0}
            by_header = client.get("/", headers={"host": "globex.example.test"})
            assert by_header.json()["schema"] == "globex"
            assert client.for_host("nobody.example.test").get("/").status_code == 404
            assert client.for_host("bad host!").get("/").status_code == 400

        def test_default_tenant_and_plain_host(tenant, tenant_client, tenant_url):
            client = tenant_client(echo_host_app)
            assert client.get("/").text == tenant_url(tenant, "/")[len("http://"):-1]
            assert client.url("/x") == tenant_url(tenant, "/x")
            plain = tenant_client(echo_host_app, host="any.example.org")
            assert plain.get("/").text == "any.example.org"

        async def test_async_client(tenancy, tenant, atenant_client):
            client = atenant_client(starlette_app(tenancy), route=True)
            response = await client.get("/")
            assert response.json()["schema"] == tenant.schema
            assert (await client.for_host("nobody.example.test").get("/")).status_code == 404

        from hypothesis import HealthCheck, given, settings
        from pytest_pgtenants.strategies import hostile_hosts

        @settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(host=hostile_hosts().filter(lambda h: h.isascii() and h.isprintable()))
        def test_hostile_hosts_get_400(host, tenancy, tenant_client):
            client = tenant_client(flask_app(tenancy), host="x.example.test", route=True)
            assert client.get("/", headers={"host": host}).status_code == 400

        async def test_async_client_rejects_wsgi(atenant_client):
            with pytest.raises(TypeError, match="needs an ASGI app"):
                atenant_client(echo_host_app, host="x.example.test")
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=7)


LIFESPAN_APPS = """
import contextlib

from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tenantkit import AsyncTenancy

EVENTS = []


def fastapi_app(conninfo):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        atenancy = AsyncTenancy(conninfo)
        await atenancy.open()
        app.state.atenancy = atenancy
        EVENTS.append("startup")
        yield
        await atenancy.close()  # must run on the loop the pool was opened on
        EVENTS.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def index(request: Request):
        async with request.app.state.atenancy.connection() as conn:  # the routed tenant
            cur = await conn.execute("select current_schema()")
            return {"schema": (await cur.fetchone())[0]}

    return app


def starlette_state_app(conninfo):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with AsyncTenancy(conninfo) as atenancy:
            EVENTS.append("startup")
            yield {"atenancy": atenancy}
        EVENTS.append("shutdown")

    async def index(request):
        async with request.state.atenancy.connection() as conn:
            cur = await conn.execute("select current_schema()")
            return JSONResponse({"schema": (await cur.fetchone())[0]})

    return Starlette(routes=[Route("/", index)], lifespan=lifespan)


def failing_app():
    @contextlib.asynccontextmanager
    async def lifespan(app):
        raise RuntimeError("no database here")
        yield

    return Starlette(lifespan=lifespan)


async def http_only_app(scope, receive, send):
    assert scope["type"] == "http"  # no lifespan support: served anyway
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_lifespan(inner) -> None:
    """Clients run the ASGI lifespan: startup before the first request, shutdown after the
    test, on the loop serving the requests (the test's loop for atenant_client)."""
    inner.pytester.makepyfile(lifespan_apps=LIFESPAN_APPS)
    inner.pytester.makepyfile(
        """
        import pytest
        from lifespan_apps import (
            EVENTS, fastapi_app, starlette_state_app, failing_app, http_only_app)
        from pytest_pgtenants.client import LifespanError

        @pytest.fixture(autouse=True)
        def events():
            before = list(EVENTS)
            EVENTS.clear()
            return before

        @pytest.mark.parametrize("make", [fastapi_app, starlette_state_app])
        @pytest.mark.tenants("acme", "globex")
        async def test_async(make, pgtenants_database, atenant_client, tenants):
            app = make(pgtenants_database.conninfo)
            client = atenant_client(app, route=True)
            assert EVENTS == []  # started with the first request
            assert (await client.get("/")).json() == {"schema": "acme"}
            other = client.for_tenant(tenants["globex"])  # same app: same lifespan
            assert (await other.get("/")).json() == {"schema": "globex"}
            again = atenant_client(app, tenants["globex"], route=True)  # the same app again
            assert (await again.get("/")).json() == {"schema": "globex"}
            assert EVENTS == ["startup"]

        def test_async_shut_down(events):
            assert events == ["startup", "shutdown"]

        @pytest.mark.parametrize("make", [fastapi_app, starlette_state_app])
        def test_sync(make, pgtenants_database, tenant_client, tenant):
            client = tenant_client(make(pgtenants_database.conninfo), route=True)
            assert client.get("/").json() == {"schema": tenant.schema}
            assert client.for_host("nobody.example.test").get("/").status_code == 404
            assert EVENTS == ["startup"]

        def test_sync_shut_down(events):
            assert events == ["startup", "shutdown"]

        def test_lifespan_off(pgtenants_database, tenant_client, tenant):
            client = tenant_client(fastapi_app(pgtenants_database.conninfo), lifespan=False)
            assert client.get("/docs").status_code == 200
            assert EVENTS == []

        def test_failing_startup(tenant_client, tenant):
            client = tenant_client(failing_app())
            with pytest.raises(LifespanError, match="(?s)startup failed.*no database here"):
                client.get("/")

        async def test_app_without_lifespan(atenant_client, tenant_client, tenant):
            assert (await atenant_client(http_only_app).get("/")).text == "ok"
            assert tenant_client(http_only_app).get("/").text == "ok"
        """
    )
    inner.run("-p", "no:randomly").assert_outcomes(passed=9)


def test_atenancy(inner) -> None:
    """atenancy: an AsyncTenancy on the test database and the test's loop, closed after."""
    inner.pytester.makepyfile(
        """
        POOLS = []

        async def test_atenancy(atenancy, tenant):
            async with atenancy.connection(tenant) as conn:
                cur = await conn.execute("select current_schema()")
                assert (await cur.fetchone())[0] == tenant.schema
            assert tenant.schema in [t.schema for t in await atenancy.tenants()]
            POOLS.append(atenancy.pool)

        def test_closed():
            assert POOLS and POOLS[0].closed
        """
    )
    inner.run("-p", "no:randomly").assert_outcomes(passed=2)


def test_clients_close_the_middleware_they_build(inner) -> None:
    """route=True: the routing middleware the fixture built is closed after the test."""
    inner.pytester.makepyfile(apps=APPS)
    inner.pytester.makepyfile(
        """
        from apps import flask_app, starlette_app
        from tenantkit.web.asgi import ASGITenantMiddleware
        from tenantkit.web.wsgi import WSGITenantMiddleware

        BUILT = []
        CLOSED = set()

        def spy(self):
            CLOSED.add(id(self))

        async def aspy(self):
            CLOSED.add(id(self))

        def test_routed(monkeypatch, tenancy, tenant, tenant_client):
            monkeypatch.setattr(WSGITenantMiddleware, "close", spy, raising=False)
            monkeypatch.setattr(ASGITenantMiddleware, "close", spy, raising=False)
            for make in (flask_app, starlette_app):
                client = tenant_client(make(tenancy), route=True)
                assert client.get("/").status_code == 200
                BUILT.append(client.app)  # the middleware the fixture wrapped the app in
            assert not CLOSED

        async def test_routed_async(monkeypatch, tenancy, tenant, atenant_client):
            monkeypatch.setattr(ASGITenantMiddleware, "aclose", aspy, raising=False)
            client = atenant_client(starlette_app(tenancy), route=True)
            assert (await client.get("/")).status_code == 200
            BUILT.append(client.app)

        def test_closed():
            assert [type(m).__name__ for m in BUILT] == [
                "WSGITenantMiddleware", "ASGITenantMiddleware", "ASGITenantMiddleware"]
            assert {id(m) for m in BUILT} <= CLOSED
        """
    )
    inner.run("-p", "no:randomly").assert_outcomes(passed=3)
