"""tenantkit: schema-per-tenant multi-tenancy for PostgreSQL on psycopg 3.

Every public name below is importable from here. They are loaded on first use (PEP 562), so
``import tenantkit`` (and the ``tenantkit`` command's start-up) costs only what is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._version import __version__
    from .asgi import ASGITenantMiddleware
    from .catalog import Difference, DriftReport, SchemaDrift
    from .clone import clone_schema
    from .domain_sources import DomainSource, RegistryDomainSource, StaticDomainSource
    from .errors import (
        CloneError,
        DomainExists,
        DomainNotFound,
        HookNotRun,
        InvalidHostname,
        InvalidSchemaName,
        MigrationChecksumMismatch,
        MigrationError,
        NoTenantSelected,
        PoolerDetected,
        PostgresNotFound,
        PsycopgUnsupported,
        RegistryNotInstalled,
        SchemaExists,
        SchemaNotEmpty,
        SchemaNotFound,
        ServerError,
        TenantExists,
        TenantkitError,
        TenantNotFound,
    )
    from .isolation import (
        CanaryLeak,
        IsolationReport,
        SchemaReference,
        TenantConnect,
        check_isolation,
        find_cross_schema_references,
    )
    from .migrations import (
        Migration,
        MigrationInterrupted,
        MigrationReport,
        MigrationSet,
        Plan,
        ProgressEvent,
        SchemaPlan,
        SchemaResult,
        load_migrations,
    )
    from .models import Domain, RetiredSchema, Tenant, TenantState
    from .names import normalize_host, schema_name_from, validate_schema_name
    from .provisioning import CloneProvisioner, MigrationProvisioner, Spares, Template
    from .routing import Outcome, Resolution, RoutingTable, TenantResolver
    from .schema import create_schema, drop_schema, list_schemas, rename_schema, schema_exists
    from .search_path import (
        AsyncTenantConnection,
        TenantConnection,
        ause_tenant,
        current_tenant,
        reset_current_tenant,
        set_current_tenant,
        tenant_context,
        use_tenant,
    )
    from .server import EmbeddedServer
    from .tenancy import AsyncSchemaProvisioner, AsyncTenancy, SchemaProvisioner, Tenancy
    from .wsgi import WSGITenantMiddleware

#: public name -> the module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    "ASGITenantMiddleware": "asgi",
    "AsyncSchemaProvisioner": "tenancy",
    "AsyncTenancy": "tenancy",
    "AsyncTenantConnection": "search_path",
    "CanaryLeak": "isolation",
    "CloneError": "errors",
    "CloneProvisioner": "provisioning",
    "Difference": "catalog",
    "Domain": "models",
    "DomainExists": "errors",
    "DomainNotFound": "errors",
    "DomainSource": "domain_sources",
    "HookNotRun": "errors",
    "DriftReport": "catalog",
    "EmbeddedServer": "server",
    "InvalidHostname": "errors",
    "InvalidSchemaName": "errors",
    "IsolationReport": "isolation",
    "Migration": "migrations",
    "MigrationChecksumMismatch": "errors",
    "MigrationError": "errors",
    "MigrationInterrupted": "migrations",
    "MigrationProvisioner": "provisioning",
    "MigrationReport": "migrations",
    "MigrationSet": "migrations",
    "NoTenantSelected": "errors",
    "Outcome": "routing",
    "Plan": "migrations",
    "PoolerDetected": "errors",
    "PostgresNotFound": "errors",
    "ProgressEvent": "migrations",
    "RetiredSchema": "models",
    "PsycopgUnsupported": "errors",
    "RegistryDomainSource": "domain_sources",
    "RegistryNotInstalled": "errors",
    "Resolution": "routing",
    "RoutingTable": "routing",
    "SchemaDrift": "catalog",
    "SchemaExists": "errors",
    "SchemaNotEmpty": "errors",
    "SchemaNotFound": "errors",
    "SchemaPlan": "migrations",
    "SchemaProvisioner": "tenancy",
    "SchemaReference": "isolation",
    "SchemaResult": "migrations",
    "ServerError": "errors",
    "Spares": "provisioning",
    "StaticDomainSource": "domain_sources",
    "Template": "provisioning",
    "Tenancy": "tenancy",
    "Tenant": "models",
    "TenantConnect": "isolation",
    "TenantConnection": "search_path",
    "TenantExists": "errors",
    "TenantNotFound": "errors",
    "TenantResolver": "routing",
    "TenantState": "models",
    "TenantkitError": "errors",
    "WSGITenantMiddleware": "wsgi",
    "__version__": "_version",
    "ause_tenant": "search_path",
    "check_isolation": "isolation",
    "clone_schema": "clone",
    "create_schema": "schema",
    "current_tenant": "search_path",
    "drop_schema": "schema",
    "find_cross_schema_references": "isolation",
    "list_schemas": "schema",
    "load_migrations": "migrations",
    "normalize_host": "names",
    "rename_schema": "schema",
    "reset_current_tenant": "search_path",
    "schema_exists": "schema",
    "schema_name_from": "names",
    "set_current_tenant": "search_path",
    "tenant_context": "search_path",
    "use_tenant": "search_path",
    "validate_schema_name": "names",
}

__all__ = [
    "ASGITenantMiddleware",
    "AsyncSchemaProvisioner",
    "AsyncTenancy",
    "AsyncTenantConnection",
    "CanaryLeak",
    "CloneError",
    "CloneProvisioner",
    "Difference",
    "Domain",
    "DomainExists",
    "DomainNotFound",
    "DomainSource",
    "DriftReport",
    "EmbeddedServer",
    "HookNotRun",
    "InvalidHostname",
    "InvalidSchemaName",
    "IsolationReport",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "MigrationInterrupted",
    "MigrationProvisioner",
    "MigrationReport",
    "MigrationSet",
    "NoTenantSelected",
    "Outcome",
    "Plan",
    "PoolerDetected",
    "PostgresNotFound",
    "ProgressEvent",
    "PsycopgUnsupported",
    "RegistryDomainSource",
    "RegistryNotInstalled",
    "Resolution",
    "RetiredSchema",
    "RoutingTable",
    "SchemaDrift",
    "SchemaExists",
    "SchemaNotEmpty",
    "SchemaNotFound",
    "SchemaPlan",
    "SchemaProvisioner",
    "SchemaReference",
    "SchemaResult",
    "ServerError",
    "Spares",
    "StaticDomainSource",
    "Template",
    "Tenancy",
    "Tenant",
    "TenantConnect",
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
    "clone_schema",
    "create_schema",
    "current_tenant",
    "drop_schema",
    "find_cross_schema_references",
    "list_schemas",
    "load_migrations",
    "normalize_host",
    "rename_schema",
    "reset_current_tenant",
    "schema_exists",
    "schema_name_from",
    "set_current_tenant",
    "tenant_context",
    "use_tenant",
    "validate_schema_name",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tenantkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
