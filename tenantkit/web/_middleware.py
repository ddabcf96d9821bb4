"""What the WSGI and ASGI middleware share: the app types, the resolver, the choice of app.

:class:`TenantMiddleware` holds everything that does not depend on the protocol: owning (or
borrowing) the :class:`~tenantkit.web.routing.TenantResolver`, closing it, and the one place
that decides which app serves a :class:`~tenantkit.web.routing.Resolution` and as which
tenant. :mod:`~tenantkit.web.wsgi` and :mod:`~tenantkit.web.asgi` only read the request from
their protocol and run the chosen app in it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .routing import Outcome, Resolution, TenantResolver

if TYPE_CHECKING:
    from ..core.models import Tenant

__all__ = [
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "TenantMiddleware",
]

logger = logging.getLogger("tenantkit.web.routing")

# ASGI 3 (the WSGI names come from the standard library's typeshed: _typeshed.wsgi).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The app type of a middleware (a WSGI or an ASGI application).
App = TypeVar("App")


class TenantMiddleware(Generic[App]):
    """The protocol-independent half of the WSGI and ASGI middleware.

    ``resolver`` is a :class:`~tenantkit.web.routing.TenantResolver` or a ``Tenancy`` (a
    resolver fed by its registry is then built with ``TenantResolver.from_tenancy``, and
    closed with the middleware). A subclass gives the apps that answer unknown and invalid
    hosts by default and starts what ``warm`` asks for.
    """

    def __init__(
        self,
        app: App,
        resolver: TenantResolver | Any,
        *,
        public_app: App | None = None,
        unknown_app: App | None = None,
        invalid_app: App | None = None,
        fallback_tenant: Tenant | str | None = None,
        warm: bool = True,
    ) -> None:
        self._owns_resolver = not isinstance(resolver, TenantResolver)
        if not isinstance(resolver, TenantResolver):
            resolver = TenantResolver.from_tenancy(resolver)
        self._warm = warm
        self._closed = False
        self.app = app
        self.resolver: TenantResolver = resolver
        not_found, bad_request = self._default_apps()
        self.public_app = public_app or app
        self.unknown_app = unknown_app or not_found
        self.invalid_app = invalid_app or bad_request
        self.fallback_tenant = fallback_tenant
        self._setup(resolver)

    def _default_apps(self) -> tuple[App, App]:
        """The apps for unknown hosts (404) and invalid requests (400)."""
        raise NotImplementedError

    def _setup(self, resolver: TenantResolver) -> None:
        """What the protocol needs once the resolver is known (header names...)."""

    def choose(self, resolution: Resolution) -> tuple[App, Tenant | str | None]:
        """The app that serves ``resolution`` and the tenant current while it runs.

        Tenant hosts go to ``app``, public ones to ``public_app``; an unknown host is served
        as ``fallback_tenant`` when there is one (by ``public_app`` if that tenant is the
        public one), otherwise by ``unknown_app``; anything invalid by ``invalid_app``.
        """
        outcome = resolution.outcome
        if outcome is Outcome.TENANT:
            return self.app, resolution.tenant
        if outcome is Outcome.PUBLIC:
            return self.public_app, resolution.tenant
        if outcome is Outcome.UNKNOWN:
            tenant = self.fallback_tenant
            if tenant is None:
                return self.unknown_app, resolution.tenant
            return (self.public_app if getattr(tenant, "is_public", False) else self.app), tenant
        return self.invalid_app, resolution.tenant

    def warm(self, timeout: float = 5.0) -> None:
        """Load the routing table now, blocking (see ``TenantResolver.warm``)."""
        self.resolver.warm(timeout)

    @staticmethod
    def _warm_failed(exc: Exception) -> None:
        # Not fatal: the first request loads the table again (the database may start later).
        logger.warning(
            "could not load the routing table at start-up (%s); requests will try again", exc
        )

    def close(self) -> None:
        """Close the resolver this middleware built (idempotent; may block briefly)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_resolver:
            self.resolver.close()

    def __enter__(self) -> TenantMiddleware[App]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
