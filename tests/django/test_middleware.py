"""Routing middlewares on the real server: hosts, public URLconf, 404s, threads, asyncio."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from typing import Any

import pytest
from _djsupport import PUBLIC_HOST, host_of, in_threads
from _wire import wire

pytestmark = pytest.mark.usefixtures("django_project")


@pytest.fixture
def warm(tenant_pair: Any) -> Any:
    """The process resolver, LISTENing and loaded (as after start-up)."""
    from tenantkit.django._source import get_resolver

    resolver = get_resolver()
    assert resolver.wait_subscribed(10)
    resolver.warm()
    return resolver


def _get(client: Any, host: str, path: str = "/who/") -> Any:
    return client.get(path, HTTP_HOST=host)


def test_routes_by_host_with_public_urlconf_and_404(tenant_pair: Any, warm: Any) -> None:
    from django.db import connection
    from django.test import Client

    a, b = tenant_pair
    client = Client()
    for tenant in (a, b):
        response = _get(client, host_of(tenant.schema_name))
        assert response.status_code == 200
        assert response.json() == {"schema": tenant.schema_name, "items": [tenant.schema_name]}
    # Host spellings: upper case, a port, www.
    host = host_of(a.schema_name)
    for spelling in (host.upper(), host + ":8000", "www." + host):
        assert _get(client, spelling).json()["schema"] == a.schema_name
    public = _get(client, PUBLIC_HOST)
    assert public.json() == {"public": True, "schema": "public", "titles": []}
    assert _get(client, "nobody.test").status_code == 404
    assert _get(client, "bad_host.test").status_code == 404  # DisallowedHost -> 404
    # Nothing leaks to the thread after the response.
    assert connection.schema_name == "public"


def test_warm_request_sends_what_plain_django_sends(tenant_pair: Any, warm: Any) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    a, b = tenant_pair
    client = Client()
    for tenant in (a, b):
        _get(client, host_of(tenant.schema_name))  # connection opened and verified
    connection.ensure_connection()
    for tenant, repeat in ((a, False), (a, True), (b, False), (b, True), (b, True)):
        with CaptureQueriesContext(connection) as queries:
            sent = wire(
                connection.connection, lambda t=tenant: _get(client, host_of(t.schema_name))
            )
        # The view's one query, in one round trip: no registry lookup, no SET of its own.
        assert len(queries) == 1
        assert sent.round_trips == 1, sent.messages
        assert len(sent.app_statements) == 1
        if repeat:
            # The tenant the connection served last: byte for byte the statements Django
            # logged, i.e. what Django's own backend sends for the same view.
            assert sent.texts == [q["sql"] for q in queries]


def test_registry_changes_arrive_by_notification(tenant_factory: Any, warm: Any, dsn: str) -> None:
    import psycopg
    from django.test import Client

    tenant = tenant_factory(items=["x"])
    client = Client()
    new_host = "late-" + host_of(tenant.schema_name)
    # Written by another client (as another process would): only the NOTIFY tells us. With
    # the subscription live the table is otherwise kept for 300 s, so seeing the change
    # proves the notification path (how fast is measured, not asserted: a loaded machine).
    assert warm.subscribed
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute(
            "INSERT INTO customers_domain (domain, tenant_id, is_primary) VALUES (%s, %s, false)",
            (new_host, tenant.pk),
        )
    deadline = time.monotonic() + 10.0
    while _get(client, new_host).status_code != 200:
        assert time.monotonic() < deadline, "the new domain was never routed"
        time.sleep(0.01)
    # Warm requests load nothing (a batch may still meet a late notification of the
    # fixture's own writes; then the next one is quiet).
    for _ in range(10):
        loads = warm.source.loads
        for _ in range(20):
            assert _get(client, new_host).status_code == 200
        if warm.source.loads == loads:
            break
    else:
        raise AssertionError("every batch of warm requests reloaded the table")
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("DELETE FROM customers_domain WHERE domain = %s", (new_host,))
    deadline = time.monotonic() + 10.0
    while _get(client, new_host).status_code != 404:
        assert time.monotonic() < deadline, "the removed domain was still routed"
        time.sleep(0.01)


def test_own_writes_are_routed_at_once(tenant_factory: Any, warm: Any) -> None:
    from django.test import Client
    from project.customers.models import Domain

    tenant = tenant_factory(items=["x"])
    new_host = "mine-" + host_of(tenant.schema_name)
    Domain(domain=new_host, tenant=tenant, is_primary=False).save()
    assert _get(Client(), new_host).status_code == 200


def test_not_found_settings(warm: Any) -> None:
    from django.test import Client, override_settings

    client = Client()
    with override_settings(DEFAULT_NOT_FOUND_TENANT_VIEW="project.views.not_found"):
        response = _get(client, "nobody.test")
        assert (response.status_code, response.content) == (404, b"no such tenant")
    with override_settings(SHOW_PUBLIC_IF_NO_TENANT_FOUND=True):
        assert _get(client, "nobody.test", "/").json()["public"] is True


def test_default_and_suspicious_middlewares(tenant_pair: Any, warm: Any) -> None:
    from django.test import Client, override_settings

    a, _ = tenant_pair
    with override_settings(
        MIDDLEWARE=["tenantkit.django.middleware.default.DefaultTenantMiddleware"]
    ):
        client = Client()  # a client loads the middleware of its first request
        assert _get(client, "nobody.test", "/").json()["public"] is True
        assert _get(client, host_of(a.schema_name)).json()["schema"] == a.schema_name
    with override_settings(
        MIDDLEWARE=["tenantkit.django.middleware.suspicious.SuspiciousTenantMiddleware"]
    ):
        assert _get(Client(), "nobody.test").status_code == 400


class _AliasMiddleware:
    """Subclasses of the main middleware overriding one routing hook each (a project's own
    host mapping, its own tenant lookup): each override must hold for known hosts too."""

    @staticmethod
    def classes(target: str) -> list[Any]:
        from tenantkit.django.middleware.main import TenantMainMiddleware

        class ByHostname(TenantMainMiddleware):
            @staticmethod
            def hostname_from_request(request: Any) -> str:
                return target  # every host is read as the target's

        class ByTenant(TenantMainMiddleware):
            def get_tenant(self, domain_model: Any, hostname: str) -> Any:
                return super().get_tenant(domain_model, target)

        return [ByHostname, ByTenant]


@pytest.mark.parametrize("async_mode", [False, True], ids=["sync", "async"])
def test_overridden_routing_hooks_hold_for_known_hosts(
    tenant_pair: Any, warm: Any, async_mode: bool
) -> None:
    from asgiref.sync import async_to_sync
    from django.db import connection
    from django.http import HttpResponse
    from django.test import RequestFactory

    a, b = tenant_pair
    seen: list[str] = []

    def view(request: Any) -> Any:
        seen.append(connection.schema_name)
        return HttpResponse("ok")

    async def async_view(request: Any) -> Any:
        seen.append(connection.schema_name)
        return HttpResponse("ok")

    for cls in _AliasMiddleware.classes(host_of(a.schema_name)):
        middleware = cls(async_view if async_mode else view)
        assert not middleware._plain  # the direct path is for the hooks as shipped
        request = RequestFactory().get("/who/", HTTP_HOST=host_of(b.schema_name))
        if async_mode:
            async_to_sync(middleware)(request)
        else:
            middleware(request)
        assert request.tenant.schema_name == a.schema_name, cls.__name__
    assert seen == [a.schema_name, a.schema_name]


def test_subfolder_routing(tenant_factory: Any, warm: Any) -> None:
    from django.test import Client, override_settings

    tenant = tenant_factory(items=["sub"], host="folder-" + host_of("x").split(".")[0])
    folder = tenant.get_primary_domain().domain
    with override_settings(
        MIDDLEWARE=["tenantkit.django.middleware.subfolder.TenantSubfolderMiddleware"],
        TENANT_SUBFOLDER_PREFIX="clients",
    ):
        client = Client()
        response = client.get(f"/clients/{folder}/who/", HTTP_HOST="anything.test")
        assert response.json() == {"schema": tenant.schema_name, "items": ["sub"]}
        assert client.get("/", HTTP_HOST="anything.test").json()["public"] is True
        assert client.get("/clients/nobody/who/", HTTP_HOST="anything.test").status_code == 404


def test_streamed_content_runs_as_the_tenant(tenant_pair: Any, warm: Any) -> None:
    from django.test import Client

    a, _ = tenant_pair
    response = _get(Client(), host_of(a.schema_name), "/stream/")
    assert b"".join(response.streaming_content) == f"{a.schema_name}\n".encode()


def test_8_threads_x_100_requests_never_read_another_tenant(tenant_pair: Any, warm: Any) -> None:
    from django.test import Client

    tenants = [*tenant_pair, None]
    wrong: list[str] = []
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        client = Client()
        barrier.wait()
        for _ in range(100):
            tenant = rng.choice(tenants)
            if tenant is None:
                body = _get(client, PUBLIC_HOST).json()
                if body.get("schema") != "public":
                    wrong.append(f"public got {body}")
                continue
            body = _get(client, host_of(tenant.schema_name)).json()
            expected = {"schema": tenant.schema_name, "items": [tenant.schema_name]}
            if body != expected:
                wrong.append(f"{tenant.schema_name} got {body}")

    in_threads(worker)
    assert wrong == []


def _async_client() -> Any:
    """Django's AsyncClient always sends ``host: testserver``; this one sends the host
    given as the ``x-test-host`` header instead."""
    from django.test import AsyncClient

    class HostClient(AsyncClient):  # type: ignore[misc]
        async def request(self, **scope: Any) -> Any:
            headers = dict(scope["headers"])
            host = headers.pop(b"x-test-host", b"testserver")
            headers[b"host"] = host
            scope["headers"] = list(headers.items())
            return await super().request(**scope)

    return HostClient()


async def test_200_async_tasks_never_read_another_tenant(tenant_pair: Any, warm: Any) -> None:
    a, b = tenant_pair
    client = _async_client()

    async def one(n: int) -> str | None:
        tenant = (a, b)[n % 2]
        response = await client.get("/awho/", headers={"x-test-host": host_of(tenant.schema_name)})
        body = json.loads(response.content)
        expected = {"schema": tenant.schema_name, "items": [tenant.schema_name]}
        return None if body == expected else f"{tenant.schema_name} got {body}"

    results = await asyncio.gather(*(one(n) for n in range(200)))
    assert [r for r in results if r] == []
    unknown = await client.get("/awho/", headers={"x-test-host": "nobody.test"})
    assert unknown.status_code == 404
    public = await client.get("/", headers={"x-test-host": PUBLIC_HOST})
    assert json.loads(public.content)["public"] is True
