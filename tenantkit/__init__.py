"""tenantkit: schema-per-tenant multi-tenancy for PostgreSQL on psycopg 3.

The names an application needs are importable from here (``__all__``, about thirty). Everything
else lives in the module that owns it: the whole error tree in :mod:`tenantkit.errors`; schema
lifecycle in :mod:`tenantkit.core.schema`; provisioning in :mod:`tenantkit.provisioning`;
drift and catalog snapshots in :mod:`tenantkit.introspection`; routing sources in
:mod:`tenantkit.web.sources`; migration types in :mod:`tenantkit.migrations`. The other names
that were exported here before still resolve, with a ``DeprecationWarning`` naming their home.

Names are loaded on first use (PEP 562), so ``import tenantkit`` (and the ``tenantkit`` command's
start-up) costs only what is used. The layers are described in docs/internals.md.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._version import __version__
    from .core.context import (
        AsyncTenantConnection,
        TenantConnection,
        ause_tenant,
        current_tenant,
        tenant_context,
        use_tenant,
    )
    from .core.models import (
        Domain,
        Tenant,
        TenantState,
    )
    from .core.names import (
        normalize_host,
        schema_name_from,
        validate_schema_name,
    )
    from .core.tenancy import (
        AsyncTenancy,
        Tenancy,
    )
    from .errors import (
        DomainNotFound,
        InvalidHostname,
        InvalidSchemaName,
        MigrationError,
        NoTenantSelected,
        PoolerDetected,
        TenantExists,
        TenantkitError,
        TenantNotFound,
    )
    from .introspection.isolation import check_isolation
    from .migrations import (
        MigrationInterrupted,
        MigrationReport,
        Plan,
    )
    from .server import EmbeddedServer
    from .web.asgi import ASGITenantMiddleware
    from .web.routing import TenantResolver
    from .web.wsgi import WSGITenantMiddleware

#: public name -> the module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    "ASGITenantMiddleware": "web.asgi",
    "AsyncTenancy": "core.tenancy",
    "AsyncTenantConnection": "core.context",
    "Domain": "core.models",
    "DomainNotFound": "errors",
    "EmbeddedServer": "server",
    "InvalidHostname": "errors",
    "InvalidSchemaName": "errors",
    "MigrationError": "errors",
    "MigrationInterrupted": "migrations",
    "MigrationReport": "migrations",
    "NoTenantSelected": "errors",
    "Plan": "migrations",
    "PoolerDetected": "errors",
    "Tenancy": "core.tenancy",
    "Tenant": "core.models",
    "TenantConnection": "core.context",
    "TenantExists": "errors",
    "TenantNotFound": "errors",
    "TenantResolver": "web.routing",
    "TenantState": "core.models",
    "TenantkitError": "errors",
    "WSGITenantMiddleware": "web.wsgi",
    "__version__": "_version",
    "ause_tenant": "core.context",
    "check_isolation": "introspection.isolation",
    "current_tenant": "core.context",
    "normalize_host": "core.names",
    "schema_name_from": "core.names",
    "tenant_context": "core.context",
    "use_tenant": "core.context",
    "validate_schema_name": "core.names",
}

#: names exported here before the curation (issue 12) -> their module; they still resolve, with
#: a DeprecationWarning, until the release after next.
_DEPRECATED: dict[str, str] = {
    "AsyncSchemaProvisioner": "core.tenancy",
    "CanaryLeak": "introspection.isolation",
    "CloneError": "errors",
    "CloneProvisioner": "provisioning",
    "Difference": "introspection.catalog",
    "DomainExists": "errors",
    "DomainSource": "web.sources",
    "DriftReport": "introspection.catalog",
    "HookNotRun": "errors",
    "IsolationReport": "introspection.isolation",
    "Migration": "migrations",
    "MigrationChecksumMismatch": "errors",
    "MigrationProvisioner": "provisioning",
    "MigrationSet": "migrations",
    "Outcome": "web.routing",
    "PostgresNotFound": "errors",
    "ProgressEvent": "migrations",
    "PsycopgUnsupported": "errors",
    "RegistryDomainSource": "web.sources",
    "RegistryNotInstalled": "errors",
    "Resolution": "web.routing",
    "RetiredSchema": "core.models",
    "RoutingTable": "web.routing",
    "SchemaDrift": "introspection.catalog",
    "SchemaExists": "errors",
    "SchemaNotEmpty": "errors",
    "SchemaNotFound": "errors",
    "SchemaPlan": "migrations",
    "SchemaProvisioner": "core.tenancy",
    "SchemaReference": "introspection.isolation",
    "SchemaResult": "migrations",
    "ServerError": "errors",
    "Spares": "provisioning",
    "StaticDomainSource": "web.sources",
    "Template": "provisioning",
    "TenantConnect": "introspection.isolation",
    "clone_schema": "provisioning.clone",
    "create_schema": "core.schema",
    "drop_schema": "core.schema",
    "find_cross_schema_references": "introspection.isolation",
    "list_schemas": "core.schema",
    "load_migrations": "migrations",
    "rename_schema": "core.schema",
    "reset_current_tenant": "core.context",
    "schema_exists": "core.schema",
    "set_current_tenant": "core.context",
}

__all__ = [
    "ASGITenantMiddleware",
    "AsyncTenancy",
    "AsyncTenantConnection",
    "Domain",
    "DomainNotFound",
    "EmbeddedServer",
    "InvalidHostname",
    "InvalidSchemaName",
    "MigrationError",
    "MigrationInterrupted",
    "MigrationReport",
    "NoTenantSelected",
    "Plan",
    "PoolerDetected",
    "Tenancy",
    "Tenant",
    "TenantConnection",
    "TenantExists",
    "TenantNotFound",
    "TenantResolver",
    "TenantState",
    "TenantkitError",
    "WSGITenantMiddleware",
    "__version__",
    "ause_tenant",
    "check_isolation",
    "current_tenant",
    "normalize_host",
    "schema_name_from",
    "tenant_context",
    "use_tenant",
    "validate_schema_name",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        module = _DEPRECATED.get(name)
        if module is None:
            raise AttributeError(f"module 'tenantkit' has no attribute {name!r}")
        warnings.warn(
            f"tenantkit.{name} is no longer exported from the package root: import it from "
            f"tenantkit.{module} (this alias goes away in the release after next)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(f".{module}", __name__), name)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
