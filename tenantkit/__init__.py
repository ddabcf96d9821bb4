"""tenantkit: schema-per-tenant multi-tenancy for PostgreSQL on psycopg 3."""

from __future__ import annotations

from ._version import __version__
from .asgi import ASGITenantMiddleware
from .catalog import Difference, DriftReport, SchemaDrift
from .clone import CloneError, clone_schema
from .domain_sources import DomainSource, RegistryDomainSource, StaticDomainSource
from .errors import (
    DomainExists,
    DomainNotFound,
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
    MigrationReport,
    MigrationSet,
    Plan,
    ProgressEvent,
    SchemaPlan,
    SchemaResult,
    load_migrations,
)
from .models import Domain, Tenant, TenantState
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
    "InvalidHostname",
    "InvalidSchemaName",
    "IsolationReport",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
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
