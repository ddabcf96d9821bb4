"""Routing middlewares (django-tenants' module paths)."""

from __future__ import annotations

from .main import TenantMainMiddleware

__all__ = ["TenantMainMiddleware"]
