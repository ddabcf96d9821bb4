"""ASGI middleware: route each request or websocket to its tenant and make it current.

Pure ASGI 3, no framework dependency: works with Starlette, FastAPI, Quart, Django's ASGI
handler or a bare coroutine. ``lifespan`` passes through to the app, after the middleware has
loaded the routing table at start-up (so no request pays for it); at shutdown the middleware
closes the resolver it built. Other scope types pass through untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from ..core.context import reset_current_tenant, set_current_tenant
from ..errors import TenantkitError
from ._middleware import ASGIApp, Message, Receive, Scope, Send, TenantMiddleware
from .routing import Outcome, Resolution, RoutingTable, TenantResolver

__all__ = ["ASGITenantMiddleware"]

#: Scope key holding the tenant the request runs as (also ``scope["state"]["tenant"]``, which
#: Starlette exposes as ``request.state.tenant``).
SCOPE_TENANT = "tenant"
#: Scope key holding the full :class:`~tenantkit.web.routing.Resolution`.
SCOPE_RESOLUTION = "tenantkit.resolution"

_T = TypeVar("_T")


async def _off_loop(fn: Callable[[], _T]) -> _T:
    """Run a (rare) table load in a worker thread so it does not block the event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # Another event loop (trio): a rare blocking reload beats a dependency on anyio.
        return fn()
    return await asyncio.to_thread(fn)


def _responder(status: int, body: bytes) -> ASGIApp:
    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return respond


not_found: ASGIApp = _responder(404, b"Not Found")
bad_request: ASGIApp = _responder(400, b"Bad Request")

_TWO_HOSTS = Resolution(Outcome.INVALID, reason="more than one Host header")
_TWO_TENANT_HEADERS = Resolution(Outcome.INVALID, reason="more than one tenant header")


class ASGITenantMiddleware(TenantMiddleware[ASGIApp]):
    """Resolve each HTTP request or websocket's tenant and run the app with it current.

    ``resolver`` is a :class:`~tenantkit.web.routing.TenantResolver` or a ``Tenancy`` (a resolver
    fed by its registry is then built with ``TenantResolver.from_tenancy``).

    - Tenant requests go to ``app`` with the tenant current for the whole call (the ASGI
      server runs each request in its own task, so the ``ContextVar`` is per request), and
      in ``scope["tenant"]`` and ``scope["state"]["tenant"]``; in path mode the
      ``/<prefix>/<tenant>`` part is appended to ``root_path`` (``path`` stays the full
      path, as Starlette and uvicorn expect).
    - Public requests go to ``public_app`` (default ``app``) with the public tenant current
      (or none).
    - Unknown hosts go to ``unknown_app`` (default: 404, websocket closed with 1008), or are
      served as ``fallback_tenant`` when it is given; invalid hosts go to ``invalid_app``
      (default: 400).
    - A request with two ``Host`` headers (or two tenant headers in header mode) is invalid:
      which one a proxy or the app would read is anybody's guess.
    - ``lifespan`` goes to ``app``; on ``lifespan.startup`` the middleware first loads the
      routing table (``warm=True``, the default; a configuration error such as
      ``PoolerDetected`` fails the start-up, an unreachable database is logged and left to
      the first request), and after the app's shutdown it closes the resolver it built.
      Other scope types go to ``app`` untouched.

    The table is loaded in a worker thread when stale; once warm, routing is in-memory.
    :meth:`close` / :meth:`aclose` (or ``with`` / ``async with``) close the resolver the
    middleware built from a ``Tenancy``; a resolver passed in stays its owner's to close.
    """

    def _default_apps(self) -> tuple[ASGIApp, ASGIApp]:
        return not_found, bad_request

    def _setup(self, resolver: TenantResolver) -> None:
        # Header names as ASGI sends them (lowercase bytes), to compare without decoding.
        self._forwarded_name = (
            resolver.forwarded_header.lower().encode("latin-1")
            if resolver.trusted_proxies
            else None
        )
        self._header_name = (
            resolver.header.lower().encode("latin-1") if resolver.mode == "header" else None
        )

    # -- lifetime ----------------------------------------------------------------------

    async def awarm(self, timeout: float = 5.0) -> None:
        """Load the routing table now, in a worker thread (see ``TenantResolver.warm``)."""
        await _off_loop(lambda: self.resolver.warm(timeout))

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread, so the event loop does not wait on it."""
        if not self._closed:
            await _off_loop(self.close)

    async def __aenter__(self) -> ASGITenantMiddleware:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Warm up before the app's start-up; close what we own after its shutdown."""
        first = await receive()
        if first.get("type") == "lifespan.startup" and self._warm:
            try:
                await self.awarm()
            except TenantkitError as exc:
                # A configuration error (PoolerDetected, RegistryNotInstalled...): refusing
                # to start is better than serving every request an error.
                await send({"type": "lifespan.startup.failed", "message": f"tenantkit: {exc}"})
                return
            except Exception as exc:  # the database is not reachable yet
                self._warm_failed(exc)
        pending = [first]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        async def send_then_close(message: Message) -> None:
            if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        await self.app(scope, replay, send_then_close)

    # -- requests ----------------------------------------------------------------------

    async def resolve(self, scope: Scope) -> Resolution:
        """Resolve the request described by ``scope`` (loading the table off-loop if stale)."""
        resolver = self.resolver
        table: RoutingTable | None = resolver.cached_table()
        if table is None:
            table = await _off_loop(resolver.refresh)
        host = forwarded = header_value = None
        forwarded_name = self._forwarded_name
        header_name = self._header_name
        for name, value in scope.get("headers", ()):
            if name == b"host":
                if host is not None:
                    return _TWO_HOSTS
                host = value.decode("latin-1")
            elif name == forwarded_name:
                # Several lines are one comma-separated list; the proxy's value is last.
                forwarded = value.decode("latin-1")
            elif name == header_name:
                if header_value is not None:
                    return _TWO_TENANT_HEADERS
                header_value = value.decode("latin-1")
        path = scope.get("path") or "/"
        root_path = scope.get("root_path")
        if root_path and path.startswith(root_path):
            # ASGI paths include root_path (as uvicorn sends them); route on the rest.
            path = path[len(root_path) :] or "/"
        client = scope.get("client")
        args = (host, path, client[0] if client else None, forwarded)
        result = resolver.resolve_in(table, *args, header_value)
        if result.outcome is Outcome.UNKNOWN and resolver.should_reload_on_miss(result):
            table = await _off_loop(lambda: resolver.refresh(force=True))
            result = resolver.resolve_in(table, *args, header_value)
        return result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            if scope["type"] == "lifespan" and (self._warm or self._owns_resolver):
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        resolution = await self.resolve(scope)
        app, tenant = self.choose(resolution)
        # A copy: the server may reuse the scope (and lifespan state) of other requests.
        scope = dict(scope)
        scope[SCOPE_TENANT] = tenant
        scope[SCOPE_RESOLUTION] = resolution
        state = dict(scope.get("state") or ())
        state["tenant"] = tenant
        scope["state"] = state
        if resolution.prefix:
            scope["root_path"] = scope.get("root_path", "") + resolution.prefix
        # Set even when tenant is None: an unknown-host handler must run as no tenant.
        token = set_current_tenant(tenant)
        try:
            await app(scope, receive, send)
        finally:
            reset_current_tenant(token)
