"""WSGI middleware: route each request to its tenant and make it current while the app runs.

Pure WSGI (PEP 3333), no framework dependency: works with Flask, Django's WSGI handler,
Falcon, Bottle, Pyramid or a bare callable.

WSGI has no start-up hook, so the middleware loads the routing table in a background thread as
soon as it is built (``warm=True``): building it needs no database, and the first request
finds the table ready. ``close()`` (or ``with``) stops the resolver it built.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..core.context import reset_current_tenant, set_current_tenant
from ._middleware import TenantMiddleware
from .routing import Resolution, TenantResolver

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..core.models import Tenant

__all__ = ["WSGITenantMiddleware"]

#: ``environ`` key holding the tenant the request runs as (``None`` on public hosts without
#: a public tenant).
ENVIRON_TENANT = "tenantkit.tenant"
#: ``environ`` key holding the full :class:`~tenantkit.web.routing.Resolution`.
ENVIRON_RESOLUTION = "tenantkit.resolution"


def _plain(status: str, body: bytes) -> WSGIApplication:
    def respond(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response(
            status,
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return respond


not_found: WSGIApplication = _plain("404 Not Found", b"Not Found")
bad_request: WSGIApplication = _plain("400 Bad Request", b"Bad Request")


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class _TenantIterable:
    """Wrap a response iterable so that its code runs with the tenant current.

    Generators and streaming bodies run after the app call returned, so each ``next()`` and
    the final ``close()`` set the tenant and reset it right after: nothing is left current
    between chunks, even if a non-compliant server never calls ``close()``.
    """

    __slots__ = ("_iterable", "_iterator", "_tenant")

    def __init__(self, iterable: Iterable[bytes], tenant: Tenant | str | None) -> None:
        self._iterable = iterable
        self._iterator: Iterator[bytes] | None = None
        self._tenant = tenant

    def __iter__(self) -> _TenantIterable:
        return self

    def __next__(self) -> bytes:
        token = set_current_tenant(self._tenant)
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            return next(self._iterator)
        finally:
            reset_current_tenant(token)

    def close(self) -> None:
        close = getattr(self._iterable, "close", None)
        if close is not None:
            token = set_current_tenant(self._tenant)
            try:
                close()
            finally:
                reset_current_tenant(token)


class WSGITenantMiddleware(TenantMiddleware["WSGIApplication"]):
    """Resolve each request's tenant and run the app with it as the current tenant.

    ``resolver`` is a :class:`~tenantkit.web.routing.TenantResolver` or a ``Tenancy`` (a resolver
    fed by its registry is then built with ``TenantResolver.from_tenancy``).

    - Tenant requests go to ``app`` with the tenant current (``tenantkit.current_tenant()``)
      and in ``environ["tenantkit.tenant"]``; in path mode the ``/<prefix>/<tenant>`` part
      moves from ``PATH_INFO`` to ``SCRIPT_NAME``.
    - Public requests go to ``public_app`` (default ``app``) with the public tenant current
      (or none), as django-tenants' ``PUBLIC_SCHEMA_URLCONF``.
    - Unknown hosts go to ``unknown_app`` (default: 404), or are served as
      ``fallback_tenant`` when it is given; invalid hosts go to ``invalid_app`` (default: 400).
      Neither runs with a tenant current.

    The tenant is reset after the app returns or raises, and around each chunk of a streamed
    response (see :class:`_TenantIterable`).

    With ``warm=True`` (the default) the routing table is loaded in a background thread right
    away (no database is needed to build the middleware; if the load fails, the first request
    loads it). :meth:`close` closes the resolver the middleware built from a ``Tenancy`` (its
    LISTEN connection and thread); a resolver passed in stays its owner's to close. The
    middleware is also a context manager.
    """

    def _default_apps(self) -> tuple[WSGIApplication, WSGIApplication]:
        return not_found, bad_request

    def _setup(self, resolver: TenantResolver) -> None:
        # The environ keys of the headers the resolver reads (HTTP_X_FORWARDED_HOST...).
        self._forwarded_key = (
            _environ_key(resolver.forwarded_header) if resolver.trusted_proxies else None
        )
        self._header_key = _environ_key(resolver.header) if resolver.mode == "header" else None
        if self._warm:
            threading.Thread(
                target=self._warm_in_background, name="tenantkit-warm", daemon=True
            ).start()

    def _warm_in_background(self) -> None:
        resolver = self.resolver
        try:
            resolver.settle()
            if not (self._closed or resolver.closed):
                resolver.table()
        except Exception as exc:
            if not self._closed:
                self._warm_failed(exc)

    def resolve(self, environ: WSGIEnvironment) -> Resolution:
        """Resolve the request described by ``environ`` (may load the table on first use)."""
        return self.resolver.resolve(
            environ.get("HTTP_HOST"),
            path=environ.get("PATH_INFO") or "/",
            client=environ.get("REMOTE_ADDR"),
            forwarded=environ.get(self._forwarded_key) if self._forwarded_key else None,
            header_value=environ.get(self._header_key) if self._header_key else None,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        resolution = self.resolve(environ)
        app, tenant = self.choose(resolution)
        environ[ENVIRON_TENANT] = tenant
        environ[ENVIRON_RESOLUTION] = resolution
        if resolution.prefix:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + resolution.prefix
            environ["PATH_INFO"] = environ.get("PATH_INFO", "")[len(resolution.prefix) :]
        # Set even when tenant is None: a handler for an unknown host must not run as
        # whatever tenant the server thread might carry.
        token = set_current_tenant(tenant)
        try:
            result = app(environ, start_response)
        finally:
            reset_current_tenant(token)
        # Lists and tuples run no code while iterated, and file wrappers must reach the
        # server unwrapped to keep its sendfile() path.
        if type(result) in (list, tuple):
            return result
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            return result
        return _TenantIterable(result, tenant)
