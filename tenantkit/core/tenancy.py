"""``Tenancy`` and ``AsyncTenancy``: the registry, tenant lifecycle and tenant-bound pools.

Both are bound to a conninfo (a ``psycopg_pool`` pool is created when that package is
installed, else one connection per use) or to a pool you built with
``connection_class=TenantConnection`` (``AsyncTenantConnection`` for asyncio).

The asyncio API (:mod:`tenantkit.core._tenancy_async`) is the source; the sync API
(:mod:`tenantkit.core._tenancy_sync`) is generated from it by ``tools/async_to_sync.py``, so the
two cannot drift apart.
"""

from __future__ import annotations

from ._tenancy_async import AsyncProvisioner, AsyncSchemaProvisioner, AsyncTenancy
from ._tenancy_sync import Provisioner, SchemaProvisioner, Tenancy

__all__ = [
    "AsyncProvisioner",
    "AsyncSchemaProvisioner",
    "AsyncTenancy",
    "Provisioner",
    "SchemaProvisioner",
    "Tenancy",
]
