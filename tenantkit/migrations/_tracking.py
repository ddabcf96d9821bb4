"""Where tenantkit records what ran: tables, advisory-lock keys and the SQL that touches them.

* ``<schema>.tenantkit_migrations`` in every migrated schema (the shared one included): the
  authoritative history, which travels with the schema when it is cloned, renamed or dumped.
* ``<shared>.tenantkit_migration_state``: one row per schema with its applied IDs, checksums and
  their digest, written in the same transaction as the schema's own history. Planning over any
  number of tenants is one query against it.
* ``<shared>.tenantkit_migration_runs`` and ``tenantkit_migration_journal``: the run journal.
* ``<shared>.tenantkit_spares``: spare schemas ready to be claimed (see tenantkit.provisioning).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from ..core.storage import TEMPLATE_PREFIX, bookkeeping_ddl, history_ddl

if TYPE_CHECKING:
    from ._source import MigrationSource
    from ._source import TenantSchemas as _TenantSchemas

__all__ = [
    "LOCK_NAMESPACE",
    "Target",
    "ensure_shared_tables",
    "ensure_tracking_table",
    "resolve",
    "schema_lock_key",
    "template_schema_name",
]

#: First key of every tenantkit advisory lock (two-int form): hashtext('tenantkit.migrate')
#: would need a round trip, so the constant is fixed here.
LOCK_NAMESPACE = 0x7E4A_17C1 - (1 << 31)
#: Second key reserved for tenantkit-wide locks (schema keys avoid it); ``GLOBAL_LOCK_KEY - 1``
#: serialises the creation of the bookkeeping tables.
GLOBAL_LOCK_KEY = 0


def schema_lock_key(schema: str) -> int:
    """Second advisory-lock key for ``schema`` (a stable signed 32-bit hash of its name)."""
    value = int.from_bytes(hashlib.sha1(schema.encode()).digest()[:4], "big")
    # Avoid 0, which is the global (shared-migrations) key.
    return (value - (1 << 31)) or 1


def template_schema_name(shared_schema: str) -> str:
    """Name of the template schema kept at the tenant-migration head for ``shared_schema``."""
    return TEMPLATE_PREFIX + hashlib.sha1(shared_schema.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Target:
    """What the engine needs from a tenancy: where to connect and what to migrate.

    ``migrations_dir`` is what ``load_migrations()`` takes: a directory path or a
    :class:`~tenantkit.migrations.MigrationSource` (pickled into process workers).
    ``tenant_schemas`` replaces the registry as the list of tenants when planning.
    """

    conninfo: str
    shared_schema: str
    migrations_dir: str | MigrationSource | None
    tenant_schemas: _TenantSchemas | None = None


def resolve(tenancy: Any, migrations: Any = None) -> Target:
    """Read conninfo, shared schema and migrations (a directory or a source) from a
    ``Tenancy`` (duck-typed).

    ``migrations`` overrides the tenancy's; else a ``migration_source`` attribute of the
    tenancy, else its ``migrations_dir``. The tenants come from the source's
    ``tenant_schemas``, else the tenancy's ``tenant_schemas`` attribute, else the registry.
    The engine opens its own connections (workers may be other processes), so a tenancy built
    on a pool contributes the pool's conninfo.
    """
    from ._source import TenantSchemas, as_source

    conninfo = getattr(tenancy, "conninfo", None)
    if not conninfo and getattr(tenancy, "pool", None) is not None:
        conninfo = tenancy.pool.conninfo
    if not conninfo:
        raise ValueError("the tenancy has no conninfo; migrations need one to open connections")
    mdir = migrations
    if mdir is None:
        mdir = getattr(tenancy, "migration_source", None)
    if mdir is None:
        mdir = getattr(tenancy, "migrations_dir", None)
    chosen: str | MigrationSource | None
    if mdir is None or isinstance(mdir, (str, os.PathLike)):
        chosen = None if mdir is None else str(mdir)
    else:
        chosen = as_source(mdir)  # raises TypeError for anything else
    schemas = getattr(chosen, "tenant_schemas", None) if chosen is not None else None
    if schemas is None:
        schemas = getattr(tenancy, "tenant_schemas", None)
    if schemas is not None and not isinstance(schemas, TenantSchemas):
        raise TypeError(
            f"tenant_schemas must have select(shared) -> SQL, not {type(schemas).__name__}"
        )
    return Target(str(conninfo), str(tenancy.shared_schema), chosen, schemas)


def ensure_tracking_table(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the schema's history table when missing (call inside a transaction)."""
    conn.execute(history_ddl(schema))


def ensure_shared_tables(conn: psycopg.Connection[Any], shared_schema: str) -> None:
    """Create tenantkit's bookkeeping tables in the shared schema; idempotent, concurrent-safe.

    ``create table if not exists`` races (two sessions can both pass the check and one fails
    on pg_type's unique index), so creators serialise on the global advisory key.
    """
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, GLOBAL_LOCK_KEY - 1))
        conn.execute(
            sql.SQL("create schema if not exists {}").format(sql.Identifier(shared_schema))
        )
        conn.execute(bookkeeping_ddl(shared_schema))
        ensure_tracking_table(conn, shared_schema)
