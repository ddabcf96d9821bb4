"""httpx clients that send requests to a WSGI or ASGI app as a given tenant's host.

:class:`TenantClient` (sync; WSGI apps, and ASGI apps run on a private event-loop thread) and
:class:`AsyncTenantClient` (async; ASGI apps) put the tenant's primary host in the base URL, so
every request carries ``Host: <tenant host>``. ``client.for_host(host)`` and
``client.for_tenant(t)`` give clients for other hosts; ``headers={"host": ...}`` on a single
request works too. This module imports ``httpx``; the fixtures import it only when a client is
asked for.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx

__all__ = ["AsyncTenantClient", "TenantClient", "is_asgi_app"]

T = TypeVar("T")
HostOf = Callable[[Any], str]


def is_asgi_app(app: object) -> bool:
    """Tell an ASGI app (``async def app(scope, receive, send)``) from a WSGI one."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - the bound method itself is inspected
    return inspect.iscoroutinefunction(call)


class _LoopThread:
    """An event loop in a daemon thread, for running an ASGI app from synchronous tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="pgtenants-asgi", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


class SyncASGITransport(httpx.BaseTransport):
    """Sends each request through ``httpx.ASGITransport`` on one persistent event loop.

    One loop for the client's lifetime (not ``asyncio.run`` per request), so an app's
    loop-bound resources, such as an async connection pool, keep working across requests.
    """

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = _LoopThread()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._inner.handle_async_request(forwarded)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = self._loop.run(call())
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        self._loop.close()


class _HostHelpers:
    """Host helpers shared by the sync and async clients."""

    app: Any
    host: str
    tenant: Any
    scheme: str
    _host_of: HostOf | None

    def _init_helpers(
        self, app: Any, host: str, tenant: Any, scheme: str, host_of: HostOf | None
    ) -> None:
        self.app = app
        self.host = host
        self.tenant = tenant
        self.scheme = scheme
        self._host_of = host_of

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this client's host."""
        return f"{self.scheme}://{self.host}{path if path.startswith('/') else '/' + path}"

    def _tenant_host(self, tenant: Any) -> str:
        if self._host_of is None:
            raise RuntimeError("this client does not know the tenants' hosts")
        return self._host_of(tenant)


class TenantClient(_HostHelpers, httpx.Client):
    """An ``httpx.Client`` whose requests go to ``app`` (WSGI or ASGI) as ``Host: host``.

    Attributes: ``app``, ``host``, ``tenant`` (``None`` for a plain host). Besides the
    ``httpx.Client`` methods: ``for_host(host)``, ``for_tenant(tenant)``, ``url(path)``.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        *,
        tenant: Any = None,
        scheme: str = "http",
        host_of: HostOf | None = None,
        **kwargs: Any,
    ) -> None:
        transport: httpx.BaseTransport = (
            SyncASGITransport(app) if is_asgi_app(app) else httpx.WSGITransport(app=app)
        )
        kwargs.setdefault("follow_redirects", True)
        super().__init__(transport=transport, base_url=f"{scheme}://{host}", **kwargs)
        self._init_helpers(app, host, tenant, scheme, host_of)
        self._kwargs = kwargs

    def for_host(self, host: str) -> TenantClient:
        """A new client on the same app whose requests carry ``Host: host``."""
        return TenantClient(
            self.app, host, scheme=self.scheme, host_of=self._host_of, **self._kwargs
        )

    def for_tenant(self, tenant: Any) -> TenantClient:
        """A new client on the same app for ``tenant``'s primary host."""
        return TenantClient(
            self.app,
            self._tenant_host(tenant),
            tenant=tenant,
            scheme=self.scheme,
            host_of=self._host_of,
            **self._kwargs,
        )


class AsyncTenantClient(_HostHelpers, httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose requests go to the ASGI ``app`` as ``Host: host``.

    Same helpers as :class:`TenantClient`; use ``await client.get(...)``.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        *,
        tenant: Any = None,
        scheme: str = "http",
        host_of: HostOf | None = None,
        **kwargs: Any,
    ) -> None:
        if not is_asgi_app(app):
            raise TypeError(
                "atenant_client needs an ASGI app (async def app(scope, receive, send)); "
                "use tenant_client for WSGI apps"
            )
        kwargs.setdefault("follow_redirects", True)
        super().__init__(
            transport=httpx.ASGITransport(app=app), base_url=f"{scheme}://{host}", **kwargs
        )
        self._init_helpers(app, host, tenant, scheme, host_of)
        self._kwargs = kwargs

    def for_host(self, host: str) -> AsyncTenantClient:
        """A new client on the same app whose requests carry ``Host: host``."""
        return AsyncTenantClient(
            self.app, host, scheme=self.scheme, host_of=self._host_of, **self._kwargs
        )

    def for_tenant(self, tenant: Any) -> AsyncTenantClient:
        """A new client on the same app for ``tenant``'s primary host."""
        return AsyncTenantClient(
            self.app,
            self._tenant_host(tenant),
            tenant=tenant,
            scheme=self.scheme,
            host_of=self._host_of,
            **self._kwargs,
        )
