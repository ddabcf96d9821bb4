"""The exceptions tenantkit raises.

Every error derives from :class:`TenantkitError` and, where one fits, from the closest builtin
(``ValueError``, ``LookupError``, ``RuntimeError``), so callers can catch either. Messages say
what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "CloneError",
    "DomainExists",
    "DomainNotFound",
    "HookNotRun",
    "InvalidHostname",
    "InvalidSchemaName",
    "MigrationChecksumMismatch",
    "MigrationError",
    "NoTenantSelected",
    "PoolerDetected",
    "PostgresNotFound",
    "PsycopgUnsupported",
    "RegistryNotInstalled",
    "SchemaExists",
    "SchemaNotEmpty",
    "SchemaNotFound",
    "ServerError",
    "TenantExists",
    "TenantNotFound",
    "TenantkitError",
]


class TenantkitError(Exception):
    """Base class of every error raised by tenantkit."""


class InvalidSchemaName(TenantkitError, ValueError):
    """A schema name was rejected before any SQL was built from it."""

    def __init__(self, name: object, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(
            f"invalid schema name {name!r}: {reason}. Schema names must match "
            "[a-z_][a-z0-9_]*, be at most 63 bytes, not start with 'pg_' and not be a "
            "reserved schema; use tenantkit.core.names.schema_name_from() to derive one."
        )


class InvalidHostname(TenantkitError, ValueError):
    """A hostname (or Host header) is not a valid DNS name or IP literal."""

    def __init__(self, host: object, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"invalid hostname {host!r}: {reason}")


class CloneError(TenantkitError, ValueError):
    """The source schema holds something cloning cannot reproduce (partitioned tables)."""


class SchemaExists(TenantkitError, ValueError):
    """A schema with that name already exists."""


class SchemaNotFound(TenantkitError, LookupError):
    """The schema does not exist."""


class SchemaNotEmpty(TenantkitError):
    """A schema holds objects and ``cascade=True`` was not given."""


class TenantNotFound(TenantkitError, LookupError):
    """No tenant matches the given schema, id or host."""


class TenantExists(TenantkitError, ValueError):
    """A tenant with that schema name already exists."""


class DomainNotFound(TenantkitError, LookupError):
    """The host is not registered to any tenant."""


class DomainExists(TenantkitError, ValueError):
    """The host is already registered (each host belongs to one tenant)."""


class NoTenantSelected(TenantkitError, LookupError):
    """A tenant-bound operation ran while no tenant was current."""


class RegistryNotInstalled(TenantkitError, RuntimeError):
    """The tenant registry tables are missing; call ``Tenancy.install()`` first."""


class MigrationError(TenantkitError):
    """A migration failed; ``schema`` and ``migration`` say where."""

    def __init__(self, message: str, *, schema: str | None = None, migration: str | None = None):
        self.schema = schema
        self.migration = migration
        super().__init__(message)


class MigrationChecksumMismatch(MigrationError):
    """An applied migration's file changed after it was applied."""


class ServerError(TenantkitError, RuntimeError):
    """The embedded PostgreSQL server could not be started or stopped."""


class PostgresNotFound(ServerError, FileNotFoundError):
    """No PostgreSQL server binaries were found."""


class PoolerDetected(TenantkitError, RuntimeError):
    """A connection pooler (pgbouncer) sits between tenantkit and PostgreSQL.

    Raised on a connection in tenantkit's default mode, whose session-level state (temporary
    tables, the path of autocommit statements) is not safe behind a transaction pooler: build
    the tenancy with ``pgbouncer=True``, or connect to PostgreSQL directly. Also raised by a
    routing resolver built with ``require_listen=True`` whose LISTEN goes through a transaction
    pooler (notifications never arrive): give it a direct ``listen_conninfo``.
    """


class HookNotRun(TenantkitError, RuntimeError):
    """psycopg started a transaction without tenantkit's hook, so the tenant's path is unknown.

    Raised before any statement of that transaction runs; see
    :mod:`tenantkit.core._psycopg_contract`.
    """


class PsycopgUnsupported(TenantkitError, ImportError):
    """The installed psycopg does not have the internals tenantkit's connections hook into."""
