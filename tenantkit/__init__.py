"""tenantkit: schema-per-tenant multi-tenancy for PostgreSQL on psycopg 3."""

from __future__ import annotations

from ._version import __version__
from .asgi import ASGITenantMiddleware
from .domain_sources import DomainSource, RegistryDomainSource, StaticDomainSource
from .errors import (
    DomainExists,
    DomainNotFound,
    InvalidHostname,
    InvalidSchemaName,
    MigrationChecksumMismatch,
    MigrationError,
    NoTenantSelected,
    PostgresNotFound,
    RegistryNotInstalled,
    SchemaExists,
    SchemaNotEmpty,
    SchemaNotFound,
    ServerError,
    TenantExists,
    TenantkitError,
    TenantNotFound,
)
from .models import Domain, Tenant, TenantState
from .names import normalize_host, schema_name_from, validate_schema_name
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

__all__ = [
    "ASGITenantMiddleware",
    "AsyncSchemaProvisioner",
    "AsyncTenancy",
    "AsyncTenantConnection",
    "Domain",
    "DomainExists",
    "DomainNotFound",
    "DomainSource",
    "EmbeddedServer",
    "InvalidHostname",
    "InvalidSchemaName",
    "MigrationChecksumMismatch",
    "MigrationError",
    "NoTenantSelected",
    "Outcome",
    "PostgresNotFound",
    "RegistryDomainSource",
    "RegistryNotInstalled",
    "Resolution",
    "RoutingTable",
    "SchemaExists",
    "SchemaNotEmpty",
    "SchemaNotFound",
    "SchemaProvisioner",
    "ServerError",
    "StaticDomainSource",
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
    "create_schema",
    "current_tenant",
    "drop_schema",
    "list_schemas",
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
