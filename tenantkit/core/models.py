"""Value objects of the tenant registry: :class:`Tenant`, :class:`Domain`, :class:`TenantState`.

They are frozen dataclasses: what a query returned, never a live handle on a row. Anywhere
tenantkit accepts a tenant it accepts either a :class:`Tenant` or its schema name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

__all__ = [
    "Domain",
    "RetiredSchema",
    "Tenant",
    "TenantLike",
    "TenantState",
    "schema_of",
]


class TenantState(str, Enum):
    """Lifecycle state of a tenant in the registry."""

    #: The schema is being built (only visible to the creating transaction or to a spare pool).
    PROVISIONING = "provisioning"
    #: Ready to serve requests.
    ACTIVE = "active"
    #: Provisioning failed after the registry row became visible (kept for inspection).
    FAILED = "failed"
    #: Being dropped.
    DROPPING = "dropping"


@dataclass(frozen=True)
class Tenant:
    """A tenant: one schema plus its registry row.

    ``is_public`` marks the shared schema's entry, which routing treats like any tenant (a
    public site can have domains) but which is never migrated or dropped as a tenant.
    """

    id: int
    schema: str
    name: str
    state: TenantState
    created_at: datetime
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    is_public: bool = False

    def __str__(self) -> str:
        return self.schema


@dataclass(frozen=True)
class RetiredSchema:
    """A schema ``Tenancy.retire_tenant()`` took out of the registry, tables intact.

    ``schema`` is its new name (``tenantkit.core.storage.RETIRED_PREFIX`` + random hex); ``oid`` is
    its namespace oid, which a rename keeps. Hand it to ``Spares.adopt()`` or
    ``Tenancy.drop_retired()``.
    """

    schema: str
    oid: int


@dataclass(frozen=True)
class Domain:
    """A host name (normalised, see :func:`tenantkit.core.names.normalize_host`) of a tenant."""

    host: str
    tenant_id: int
    schema: str
    is_primary: bool


#: What the API accepts wherever a tenant is expected: a :class:`Tenant` or a schema name.
TenantLike = Tenant | str


def schema_of(tenant: TenantLike) -> str:
    """Return the schema name of a :class:`Tenant` or a schema name (unvalidated)."""
    if isinstance(tenant, Tenant):
        return tenant.schema
    if isinstance(tenant, str):
        return tenant
    raise TypeError(f"expected a Tenant or a schema name, got {type(tenant).__name__}")
