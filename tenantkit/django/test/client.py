"""``TenantClient`` and ``TenantRequestFactory``: requests addressed to a tenant's host."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.http import HttpRequest
from django.test import Client, RequestFactory

from ..utils import remove_www

__all__ = ["TenantClient", "TenantRequestFactory"]


class _TenantHost:
    """Adds ``HTTP_HOST`` = the tenant's primary domain (looked up once) to each request."""

    def __init__(self, tenant: Any, **defaults: Any) -> None:
        super().__init__(**defaults)
        self.tenant = tenant
        self._host: str | None = None

    def tenant_host(self) -> str:
        """The tenant's primary domain (one query, the first time)."""
        if self._host is None:
            domain = self.tenant.get_primary_domain()
            if domain is None:
                raise LookupError(f"tenant {self.tenant.schema_name!r} has no primary domain")
            self._host = str(domain.domain)
        return self._host

    def generic(self, *args: Any, **kwargs: Any) -> Any:
        """Django's ``generic`` with the tenant's host unless one is given."""
        kwargs.setdefault("HTTP_HOST", self.tenant_host())
        return super().generic(*args, **kwargs)  # type: ignore[misc]


class TenantRequestFactory(_TenantHost, RequestFactory):
    """A ``RequestFactory`` whose requests carry the tenant (``request.tenant``) as the
    middleware would set it."""

    def generic(self, *args: Any, **kwargs: Any) -> Any:
        """The request, with ``request.tenant`` and the tenant's ``domain_url`` set."""
        request = super().generic(*args, **kwargs)
        self.tenant.domain_url = remove_www(request.META["HTTP_HOST"].split(":")[0])
        request.tenant = self.tenant
        return request


class TenantClient(_TenantHost, Client):
    """A test ``Client`` sending every request to the tenant's primary domain."""

    def login(self, **credentials: Any) -> bool:
        """Log in through the authentication backends, with a request for the tenant."""
        request = HttpRequest()
        request.META["HTTP_HOST"] = self.tenant_host()
        request.tenant = self.tenant
        user = authenticate(request, **credentials)
        if user is None:
            return False
        self._login(user)
        return True
