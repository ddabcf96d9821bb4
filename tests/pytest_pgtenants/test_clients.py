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
