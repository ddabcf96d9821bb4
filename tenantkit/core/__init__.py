"""The bottom layer: what every other part of tenantkit is built on.

- :mod:`~tenantkit.core.names`: schema-name and hostname validation (pure).
- :mod:`~tenantkit.core.models`: the ``Tenant`` / ``Domain`` values.
- :mod:`~tenantkit.core._psycopg_contract`: the only importer of psycopg's private names.
- :mod:`~tenantkit.core._connection`: ``TenantConnection``, the path riding on ``BEGIN``.
- :mod:`~tenantkit.core.context`: the current tenant (a ``ContextVar``) and ``use_tenant``.
- :mod:`~tenantkit.core.schema`: schema lifecycle (async source, sync generated).
- :mod:`~tenantkit.core.storage`: every table and prefix tenantkit owns, the registry SQL,
  row mapping and the one SQLSTATE translation.
- :mod:`~tenantkit.core.tenancy`: ``Tenancy`` / ``AsyncTenancy`` (async source, sync generated).

Nothing is imported here, so ``import tenantkit.core.names`` stays cheap; the public names are
exported from :mod:`tenantkit`.
"""
