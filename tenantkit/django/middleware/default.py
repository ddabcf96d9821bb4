"""``DefaultTenantMiddleware``: unknown hosts are served by a default tenant."""

from __future__ import annotations

from typing import Any

from ..utils import get_public_schema_name
from .main import TenantMainMiddleware, table_only
from .suspicious import SuspiciousTenantMiddleware

__all__ = ["DefaultTenantMiddleware"]


class DefaultTenantMiddleware(SuspiciousTenantMiddleware):
    """A host no tenant has gets the tenant ``DEFAULT_SCHEMA_NAME`` (default: the public
    one) instead of an error. Subclass and set ``DEFAULT_SCHEMA_NAME`` to pick another."""

    DEFAULT_SCHEMA_NAME: str | None = None

    @table_only
    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        """The host's tenant, else the default tenant (both from the routing table)."""
        try:
            return TenantMainMiddleware.get_tenant(self, domain_model, hostname)
        except domain_model.DoesNotExist:
            schema = self.DEFAULT_SCHEMA_NAME or get_public_schema_name()
            instance = self.tenant_by_schema(schema)
            if instance is None:
                raise domain_model.DoesNotExist(f"no default tenant {schema!r}") from None
            return instance
