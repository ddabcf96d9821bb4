"""``SuspiciousTenantMiddleware``: an unknown host is a ``DisallowedHost`` (400), not a 404."""

from __future__ import annotations

from django.core.exceptions import DisallowedHost

from .main import TenantMainMiddleware

__all__ = ["SuspiciousTenantMiddleware"]


class SuspiciousTenantMiddleware(TenantMainMiddleware):
    """For projects whose ``ALLOWED_HOSTS`` admits any host (tenants bring their own
    domains): a host no tenant has raises ``DisallowedHost`` (HTTP 400, logged by Django's
    security logger) instead of ``Http404``."""

    TENANT_NOT_FOUND_EXCEPTION = DisallowedHost
