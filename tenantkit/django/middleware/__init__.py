"""Routing middlewares (django-tenants' module paths)."""

from __future__ import annotations

import warnings
from typing import Any

from .main import TenantMainMiddleware
from .subfolder import TenantSubfolderMiddleware

__all__ = ["TenantMainMiddleware", "TenantMiddleware", "TenantSubfolderMiddleware"]


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants' old name of :class:`TenantMainMiddleware` (deprecated there too)."""

    def __init__(self, get_response: Any = None) -> None:
        super().__init__(get_response)
        warnings.warn(
            "TenantMiddleware has been renamed TenantMainMiddleware", DeprecationWarning, 2
        )
