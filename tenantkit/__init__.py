"""tenantkit: schema-per-tenant multi-tenancy for PostgreSQL on psycopg 3."""

from __future__ import annotations

from ._version import __version__
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
from .names import normalize_host, schema_name_from, validate_schema_name

__all__ = [
    "DomainExists",
    "DomainNotFound",
    "InvalidHostname",
    "InvalidSchemaName",
    "MigrationChecksumMismatch",
    "MigrationError",
    "NoTenantSelected",
    "PostgresNotFound",
    "RegistryNotInstalled",
    "SchemaExists",
    "SchemaNotEmpty",
    "SchemaNotFound",
    "ServerError",
    "TenantExists",
    "TenantNotFound",
    "TenantkitError",
    "__version__",
    "normalize_host",
    "schema_name_from",
    "validate_schema_name",
]
