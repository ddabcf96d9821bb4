"""httpx clients that send requests to a WSGI or ASGI app as a given tenant's host.

:class:`TenantClient` (sync; WSGI apps, and ASGI apps run on a private event-loop thread) and
:class:`AsyncTenantClient` (async; ASGI apps, on the test's event loop) put the tenant's
primary host in the base URL, so every request carries ``Host: <tenant host>``.
``client.for_host(host)`` and ``client.for_tenant(t)`` give clients for other hosts that share
the first client's app runner; ``headers={"host": ...}`` on a single request works too.

ASGI apps get their ``lifespan``: startup runs before the first request and shutdown when the
transport is closed, both on the event loop that serves the requests, so what an app opens in
its lifespan (an ``AsyncTenancy`` pool...) is used and closed on one loop. The lifespan
``state`` reaches every request's scope (``request.state`` in Starlette and FastAPI).

This module imports ``httpx``; the fixtures import it only when a client is asked for.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any, Generic, TypeVar

import httpx

__all__ = [
    "AsyncASGITransport",
    "AsyncTenantClient",
    "LifespanError",
    "SyncASGITransport",
    "TenantClient",
    "is_asgi_app",
]

T = TypeVar("T")
#: ``httpx.BaseTransport`` or ``httpx.AsyncBaseTransport``.
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
_Client = TypeVar("_Client", bound="_TenantClientBase[Any]")
HostOf = Callable[[Any], str]
Message = MutableMapping[str, Any]


class LifespanError(RuntimeError):
    """The app's ASGI lifespan startup or shutdown failed (its message is included)."""


def is_asgi_app(app: object) -> bool:
    """Tell an ASGI app (``async def app(scope, receive, send)``) from a WSGI one."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - the bound method itself is inspected
    return inspect.iscoroutinefunction(call)


class _Lifespan:
    """Runs an ASGI app's ``lifespan`` protocol the way servers do (uvicorn's "auto" mode).

    An app that ends or raises before answering ``lifespan.startup`` does not support the
    protocol (a bare ``async def app`` that only knows "http"): requests are served anyway.
    ``lifespan.startup.failed`` / ``shutdown.failed`` raise :class:`LifespanError`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.started = False
        self.supported = True
        self._task: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[Message] | None = None
        self._from_app: asyncio.Queue[Message | None] | None = None
        self._error: BaseException | None = None

    async def _run(self) -> None:
        assert self._to_app is not None and self._from_app is not None
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = self.state
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except Exception as exc:  # reported by startup()/shutdown(), never lost
            self._error = exc
        finally:
            await self._from_app.put(None)

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer."""
        self.started = True
        self._to_app = asyncio.Queue()
        self._from_app = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message is None:  # ended without answering: no lifespan support
            self.supported = False
            await self._task
            return
        if message["type"] == "lifespan.startup.failed":
            await self._finish()
            raise LifespanError(
                f"the app's lifespan startup failed: {message.get('message') or 'no message'}"
            ) from self._error

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app to finish it."""
        if not self.started or not self.supported or self._task is None or self._task.done():
            return
        assert self._to_app is not None and self._from_app is not None
        await self._to_app.put({"type": "lifespan.shutdown"})
        message = await self._from_app.get()
        await self._finish()
        if message is None or message["type"] == "lifespan.shutdown.failed":
            detail = (message or {}).get("message") or repr(self._error or "no answer")
            raise LifespanError(f"the app's lifespan shutdown failed: {detail}") from self._error

    async def _finish(self) -> None:
        if self._task is not None:
            await self._task


class AsyncASGITransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` plus the app's lifespan and its state in each request's scope.

    ``lifespan=True`` (default) starts the app's lifespan before the first request, on the
    loop that sends it; :meth:`aclose` shuts it down. ``lifespan=False`` skips the protocol.
    """

    def __init__(self, app: Any, *, lifespan: bool = True) -> None:
        self.app = app
        self.lifespan = _Lifespan(app) if lifespan else None
        self._inner = httpx.ASGITransport(app=self._with_state)
        self._starting: asyncio.Lock | None = None

    async def _with_state(self, scope: Message, receive: Any, send: Any) -> None:
        if self.lifespan is not None and scope["type"] in ("http", "websocket"):
            # A shallow copy per request, as ASGI servers give it.
            scope = {**scope, "state": dict(self.lifespan.state)}
        await self.app(scope, receive, send)

    async def startup(self) -> None:
        """Run the lifespan startup now (otherwise done before the first request)."""
        if self.lifespan is None or self.lifespan.started:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self.lifespan.started:
                await self.lifespan.startup()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.startup()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Shut the app's lifespan down (if it was started)."""
        if self.lifespan is not None:
            await self.lifespan.shutdown()


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
    """Sends each request to an ASGI app on one persistent event loop in a private thread.

    One loop for the transport's lifetime (not ``asyncio.run`` per request), so an app's
    loop-bound resources, such as an async connection pool, keep working across requests;
    the lifespan starts and stops on that loop too.
    """

    def __init__(self, app: Any, *, lifespan: bool = True) -> None:
        self.app = app
        self._inner = AsyncASGITransport(app, lifespan=lifespan)
        self._loop: _LoopThread | None = _LoopThread()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("this client's transport is closed")
        return self._loop.run(coro)

    def startup(self) -> None:
        """Run the lifespan startup now (otherwise done before the first request)."""
        self._run(self._inner.startup())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._inner.handle_async_request(forwarded)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = self._run(call())
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        """Shut the lifespan down on the app's loop, then stop the loop (safe to call twice)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.run(self._inner.aclose())
        finally:
            loop.close()


class _Borrowed(httpx.BaseTransport):
    """A transport shared with other clients: closing one client leaves it open."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.transport.handle_request(request)

    def close(self) -> None:
        pass


class _ABorrowed(httpx.AsyncBaseTransport):
    """The async twin of :class:`_Borrowed`."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transport.handle_async_request(request)

    async def aclose(self) -> None:
        pass


def _shared(transport: Any) -> Any:
    return transport.transport if isinstance(transport, _Borrowed | _ABorrowed) else transport


def _client_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("follow_redirects", True)
    # The app is in-process: proxies, netrc and certificates from the environment do not apply
    # (an HTTP_PROXY variable would otherwise send requests for *.example.test to the proxy).
    kwargs.setdefault("trust_env", False)
    return kwargs


class _TenantClientBase(Generic[TransportT]):
    """What the sync and async clients share: the host, the transport, the host helpers.

    Mixed in before ``httpx.Client`` / ``httpx.AsyncClient``; a subclass only says which
    transport runs the app (:meth:`_transport_for`).
    """

    def __init__(
        self,
        app: Any,
        host: str,
        *,
        tenant: Any = None,
        scheme: str = "http",
        host_of: HostOf | None = None,
        transport: TransportT | None = None,
        lifespan: bool = True,
        **kwargs: Any,
    ) -> None:
        transport = self._transport_for(app, transport, lifespan=lifespan)
        # httpx.Client or httpx.AsyncClient: the next class in the MRO.
        client_init: Callable[..., None] = super().__init__
        client_init(transport=transport, base_url=f"{scheme}://{host}", **_client_kwargs(kwargs))
        self.app = app
        self.host = host
        self.tenant = tenant
        self.scheme = scheme
        self._host_of = host_of
        self._transport_in_use: TransportT = _shared(transport)
        self._kwargs = kwargs

    @staticmethod
    def _transport_for(app: Any, transport: TransportT | None, *, lifespan: bool) -> TransportT:
        """A transport of our own for ``app``, or ``transport`` borrowed (left open)."""
        raise NotImplementedError

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this client's host."""
        return f"{self.scheme}://{self.host}{path if path.startswith('/') else '/' + path}"

    def for_host(self: _Client, host: str) -> _Client:
        """A new client on the same app (and app runner) whose requests carry ``Host: host``."""
        return type(self)(
            self.app,
            host,
            scheme=self.scheme,
            host_of=self._host_of,
            transport=self._transport_in_use,
            **self._kwargs,
        )

    def for_tenant(self: _Client, tenant: Any) -> _Client:
        """A new client on the same app (and app runner) for ``tenant``'s primary host."""
        if self._host_of is None:
            raise RuntimeError("this client does not know the tenants' hosts")
        return type(self)(
            self.app,
            self._host_of(tenant),
            tenant=tenant,
            scheme=self.scheme,
            host_of=self._host_of,
            transport=self._transport_in_use,
            **self._kwargs,
        )


class TenantClient(_TenantClientBase[httpx.BaseTransport], httpx.Client):
    """An ``httpx.Client`` whose requests go to ``app`` (WSGI or ASGI) as ``Host: host``.

    ``TenantClient(app, host, *, tenant=None, scheme="http", host_of=None, transport=None,
    lifespan=True, **httpx_client_kwargs)``. Attributes: ``app``, ``host``, ``tenant``
    (``None`` for a plain host). Besides the ``httpx.Client`` methods: ``for_host(host)``,
    ``for_tenant(tenant)``, ``url(path)``. ``transport=`` shares an app runner (not closed
    with this client); by default the client makes its own, and ``lifespan=False`` skips an
    ASGI app's lifespan.
    """

    @staticmethod
    def _transport_for(
        app: Any, transport: httpx.BaseTransport | None, *, lifespan: bool
    ) -> httpx.BaseTransport:
        if transport is not None:
            return _Borrowed(_shared(transport))
        if is_asgi_app(app):
            return SyncASGITransport(app, lifespan=lifespan)
        return httpx.WSGITransport(app=app)


class AsyncTenantClient(_TenantClientBase[httpx.AsyncBaseTransport], httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose requests go to the ASGI ``app`` as ``Host: host``.

    Same arguments and helpers as :class:`TenantClient`; use ``await client.get(...)``. The
    app (and its lifespan) runs on the loop of the caller.
    """

    @staticmethod
    def _transport_for(
        app: Any, transport: httpx.AsyncBaseTransport | None, *, lifespan: bool
    ) -> httpx.AsyncBaseTransport:
        if not is_asgi_app(app):
            raise TypeError(
                "atenant_client needs an ASGI app (async def app(scope, receive, send)); "
                "use tenant_client for WSGI apps"
            )
        if transport is not None:
            return _ABorrowed(_shared(transport))
        return AsyncASGITransport(app, lifespan=lifespan)
