"""tenantkit's storage: every table and schema prefix it owns, the registry SQL, row mapping,
and the one translation of SQLSTATEs into tenantkit errors.

Nothing else in tenantkit spells a table name or a reserved prefix: SQL elsewhere takes them
from here (:func:`tables` gives the composed, quoted names for one shared schema). What lives
where:

* in the shared schema: the registry (``tenantkit_tenants``, ``tenantkit_domains``, and the
  ``tenantkit_notify`` trigger function), the per-schema migration summary
  (``tenantkit_migration_state``: planning over any number of tenants is one query on it), the
  run journal (``tenantkit_migration_runs``, ``tenantkit_migration_journal``) and the spare pool
  (``tenantkit_spares``);
* in every migrated schema: its own history, ``tenantkit_migrations``, which travels with the
  schema when it is cloned, renamed or dumped;
* internal schemas start with ``_tenantkit_``: the migration template, warm spares and retired
  tenants. ``validate_schema_name`` reserves the prefix, so no tenant can take such a name.

The registry SQL is composed with ``psycopg.sql`` (never formatted by hand) and turned into
:class:`~tenantkit.core.models.Tenant` / :class:`~tenantkit.core.models.Domain` values here;
:class:`~tenantkit.core.tenancy.Tenancy` runs the statements. Every row changed in either
registry table fires a trigger that sends ``NOTIFY tenantkit_registry`` with what changed
(``tenantkit_tenants:<id>``, ``tenantkit_domains:<host>``; a TRUNCATE sends the bare table
name), so routers reload just those entries of their host maps.

The names are constants of this module, which imports psycopg only where SQL is composed:
:mod:`tenantkit.core.names` (a leaf the CLI loads early) reads the reserved prefix from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg
    from psycopg import errors as pgerrors
    from psycopg import sql

from ..errors import (
    DomainExists,
    RegistryNotInstalled,
    SchemaExists,
    SchemaNotEmpty,
    SchemaNotFound,
    TenantExists,
)
from .models import Domain, Tenant, TenantState

__all__ = [
    "DOMAINS_TABLE",
    "HISTORY_TABLE",
    "INSTALL_LOCK_KEY",
    "INTERNAL_PREFIX",
    "MIGRATION_JOURNAL_TABLE",
    "MIGRATION_RUNS_TABLE",
    "MIGRATION_STATE_TABLE",
    "NOTIFY_CHANNEL",
    "NOTIFY_FUNCTION",
    "RETIRED_PREFIX",
    "SPARES_TABLE",
    "SPARE_PREFIX",
    "TABLE_PREFIX",
    "TEMPLATE_PREFIX",
    "TENANTS_TABLE",
    "Registry",
    "bookkeeping_ddl",
    "count_tenants",
    "domain_from_row",
    "domains_of",
    "history_ddl",
    "like_pattern",
    "retire_statement",
    "tables",
    "tenant_from_row",
    "tenant_page",
    "translated",
]

#: Every table tenantkit creates starts with this (``tenantkit shell``'s ``\\dt`` hides them).
TABLE_PREFIX = "tenantkit_"
#: The registry: one row per tenant, one per host.
TENANTS_TABLE = TABLE_PREFIX + "tenants"
DOMAINS_TABLE = TABLE_PREFIX + "domains"
#: The registry's trigger function, and the LISTEN/NOTIFY channel it tells about every change.
NOTIFY_FUNCTION = TABLE_PREFIX + "notify"
NOTIFY_CHANNEL = TABLE_PREFIX + "registry"
#: Per-schema migration summary kept by tenantkit.migrations in the shared schema.
MIGRATION_STATE_TABLE = TABLE_PREFIX + "migration_state"
#: The migration run journal: one row per run, one per (run, schema).
MIGRATION_RUNS_TABLE = TABLE_PREFIX + "migration_runs"
MIGRATION_JOURNAL_TABLE = TABLE_PREFIX + "migration_journal"
#: The warm spare schemas ready to be claimed (tenantkit.provisioning).
SPARES_TABLE = TABLE_PREFIX + "spares"
#: Each migrated schema's own history (in that schema).
HISTORY_TABLE = TABLE_PREFIX + "migrations"
#: Every internal schema starts with this (reserved by ``validate_schema_name``).
INTERNAL_PREFIX = "_tenantkit_"
#: The migration template of a shared schema: this prefix + a hash of the shared schema's name.
TEMPLATE_PREFIX = INTERNAL_PREFIX + "template_"
#: Warm spares (``Spares.fill()``, ``Spares.adopt()``): this prefix + random hex.
SPARE_PREFIX = INTERNAL_PREFIX + "spare_"
#: Retired tenants (``Tenancy.retire_tenant()``): this prefix + random hex.
RETIRED_PREFIX = INTERNAL_PREFIX + "retired_"
#: Advisory lock serialising concurrent ``install()`` calls ("tenantkit" in ASCII, truncated).
INSTALL_LOCK_KEY = 0x74656E616E746B69 & 0x7FFFFFFFFFFFFFFF


def tables(shared_schema: str) -> dict[str, sql.Composable]:
    """The quoted, schema-qualified names of tenantkit's tables in ``shared_schema``, keyed for
    ``sql.SQL(...).format(**tables(shared))``: ``tenants``, ``domains``, ``state``, ``runs``,
    ``journal``, ``spares``; ``shared`` is the schema itself."""
    from psycopg import sql

    return {
        "shared": sql.Identifier(shared_schema),
        "tenants": sql.Identifier(shared_schema, TENANTS_TABLE),
        "domains": sql.Identifier(shared_schema, DOMAINS_TABLE),
        "state": sql.Identifier(shared_schema, MIGRATION_STATE_TABLE),
        "runs": sql.Identifier(shared_schema, MIGRATION_RUNS_TABLE),
        "journal": sql.Identifier(shared_schema, MIGRATION_JOURNAL_TABLE),
        "spares": sql.Identifier(shared_schema, SPARES_TABLE),
    }


def history_ddl(schema: str) -> sql.Composed:
    """``CREATE TABLE IF NOT EXISTS`` of ``schema``'s own migration history."""
    from psycopg import sql

    return sql.SQL(
        "create table if not exists {} ("
        " id text primary key,"
        " checksum text not null,"
        " applied_at timestamptz not null default now(),"
        " duration_ms double precision)"
    ).format(sql.Identifier(schema, HISTORY_TABLE))


#: The bookkeeping tables of the shared schema (placeholders: see :func:`tables`).
_BOOKKEEPING_DDL = """
create table if not exists {state} (
    schema text primary key,
    kind text not null,
    applied text[] not null default '{{}}',
    checksums text[] not null default '{{}}',
    digest text not null,
    updated_at timestamptz not null default now()
);
create table if not exists {runs} (
    id bigint generated always as identity primary key,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    status text not null default 'running',
    backend_pid integer not null default pg_backend_pid(),
    total integer not null default 0,
    applied integer not null default 0,
    failed integer not null default 0,
    resumed_from bigint,
    alive_until timestamptz
);
-- Databases set up by earlier development versions have the table without it.
alter table {runs} add column if not exists alive_until timestamptz;
create table if not exists {journal} (
    run_id bigint not null,
    schema text not null,
    status text not null,
    migrations text[] not null default '{{}}',
    error text,
    duration_ms double precision,
    at timestamptz not null default now(),
    primary key (run_id, schema)
);
create table if not exists {spares} (
    schema text primary key,
    created_at timestamptz not null default now()
);
"""


def bookkeeping_ddl(shared_schema: str) -> sql.Composed:
    """The migration summary, run journal and spare pool tables of ``shared_schema``
    (idempotent; run under ``ensure_shared_tables``' lock)."""
    from psycopg import sql

    return sql.SQL(_BOOKKEEPING_DDL).format(**tables(shared_schema))


_TENANT_COLS = ("id", "schema", "name", "state", "created_at", "metadata", "is_public")


def tenant_from_row(row: Sequence[Any]) -> Tenant:
    """Build a :class:`Tenant` from the registry columns, in ``_TENANT_COLS`` order."""
    return Tenant(
        id=int(row[0]),
        schema=row[1],
        name=row[2],
        state=TenantState(row[3]),
        created_at=row[4],
        metadata=MappingProxyType(dict(row[5] or {})),
        is_public=bool(row[6]),
    )


def domain_from_row(row: Sequence[Any]) -> Domain:
    """Build a :class:`Domain` from ``host, tenant_id, schema, is_primary``."""
    return Domain(host=row[0], tenant_id=int(row[1]), schema=row[2], is_primary=bool(row[3]))


def _names_registry_table(exc: pgerrors.UndefinedTable) -> bool:
    message = exc.diag.message_primary or str(exc)
    return TENANTS_TABLE in message or DOMAINS_TABLE in message


@contextmanager
def translated(
    *, schema: str | None = None, host: str | None = None, new_schema: str | None = None
) -> Iterator[None]:
    """Translate the SQLSTATEs tenantkit understands into its errors, chaining psycopg's.

    ``schema`` (and ``new_schema`` for a rename) and ``host`` are what the statements were
    about; they go into the messages. Any other error passes through unchanged, and so does a
    missing table that is not the registry's (a tenant migration's own mistake, say).
    """
    from psycopg import errors as pgerrors

    try:
        yield
    except pgerrors.UndefinedTable as exc:
        if not _names_registry_table(exc):
            raise
        raise RegistryNotInstalled(
            "the tenant registry tables are missing: call Tenancy.install() "
            "(or `await AsyncTenancy.install()`) once at deployment"
        ) from exc
    except pgerrors.UniqueViolation as exc:
        constraint = exc.diag.constraint_name or ""
        if constraint.startswith(DOMAINS_TABLE):
            raise DomainExists(
                f"host {host!r} is already registered; remove_domain() it first"
            ) from exc
        if constraint.startswith(TENANTS_TABLE):
            raise TenantExists(
                f"a tenant with schema {schema!r} already exists; pick another schema name"
            ) from exc
        raise
    except pgerrors.DuplicateSchema as exc:
        taken = new_schema if new_schema is not None else schema
        raise SchemaExists(
            f"schema {taken!r} already exists; pick another name or drop it first"
        ) from exc
    except pgerrors.InvalidSchemaName as exc:  # SQLSTATE 3F000: no such schema
        raise SchemaNotFound(
            f"schema {schema!r} does not exist; check the name or pass missing_ok=True"
        ) from exc
    except pgerrors.DependentObjectsStillExist as exc:
        raise SchemaNotEmpty(
            f"schema {schema!r} still holds objects; pass cascade=True to drop them too"
        ) from exc


class Registry:
    """The registry statements for one shared schema (all identifiers pre-composed)."""

    def __init__(self, shared_schema: str) -> None:
        from psycopg import sql

        self.shared_schema = shared_schema
        s = sql.Identifier(shared_schema)
        t = sql.SQL("{}.{}").format(s, sql.Identifier(TENANTS_TABLE))
        d = sql.SQL("{}.{}").format(s, sql.Identifier(DOMAINS_TABLE))
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in _TENANT_COLS)
        tcols = sql.SQL(", ").join(sql.Identifier("t", c) for c in _TENANT_COLS)
        fn = sql.Identifier(shared_schema, NOTIFY_FUNCTION)
        fmt = {"s": s, "t": t, "d": d, "cols": cols, "tcols": tcols, "fn": fn}

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(**fmt)

        self.install_lock = sql.SQL("SELECT pg_catalog.pg_advisory_xact_lock({})").format(
            sql.Literal(INSTALL_LOCK_KEY)
        )
        self.install: list[sql.Composed] = [
            q("CREATE SCHEMA IF NOT EXISTS {s}"),
            q(
                "CREATE TABLE IF NOT EXISTS {t} ("
                " id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                " schema text NOT NULL CONSTRAINT tenantkit_tenants_schema_key UNIQUE,"
                " name text NOT NULL,"
                " state text NOT NULL DEFAULT 'active' CONSTRAINT tenantkit_tenants_state_check"
                "  CHECK (state IN ('provisioning', 'active', 'failed', 'dropping')),"
                " created_at timestamptz NOT NULL DEFAULT now(),"
                " metadata jsonb NOT NULL DEFAULT '{{}}',"
                " is_public boolean NOT NULL DEFAULT false)"
            ),
            # At most one public tenant (the shared schema's entry).
            q(
                "CREATE UNIQUE INDEX IF NOT EXISTS tenantkit_tenants_one_public"
                " ON {t} ((true)) WHERE is_public"
            ),
            q(
                "CREATE TABLE IF NOT EXISTS {d} ("
                " host text CONSTRAINT tenantkit_domains_pkey PRIMARY KEY"
                "  CONSTRAINT tenantkit_domains_host_check CHECK (host = lower(host)),"
                " tenant_id bigint NOT NULL REFERENCES {t} (id) ON DELETE CASCADE,"
                " is_primary boolean NOT NULL DEFAULT false)"
            ),
            q(
                "CREATE UNIQUE INDEX IF NOT EXISTS tenantkit_domains_one_primary"
                " ON {d} (tenant_id) WHERE is_primary"
            ),
            q("CREATE INDEX IF NOT EXISTS tenantkit_domains_tenant_id ON {d} (tenant_id)"),
            # The payload names the changed entry (routers reload just that): the tenant id,
            # or the host (old and new on an update). Identical payloads are sent once per
            # transaction. TRUNCATE has no rows: the bare table name means "everything".
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN"
                " IF TG_LEVEL = 'STATEMENT' THEN"
                "  PERFORM pg_catalog.pg_notify({chan}, TG_TABLE_NAME);"
                " ELSIF TG_TABLE_NAME = {tenants} THEN"
                "  IF TG_OP = 'DELETE' THEN"
                "   PERFORM pg_catalog.pg_notify({chan}, TG_TABLE_NAME || ':' || OLD.id);"
                "  ELSE"
                "   PERFORM pg_catalog.pg_notify({chan}, TG_TABLE_NAME || ':' || NEW.id);"
                "  END IF;"
                " ELSE"
                "  IF TG_OP <> 'INSERT' THEN"
                "   PERFORM pg_catalog.pg_notify({chan}, TG_TABLE_NAME || ':' || OLD.host);"
                "  END IF;"
                "  IF TG_OP <> 'DELETE' THEN"
                "   PERFORM pg_catalog.pg_notify({chan}, TG_TABLE_NAME || ':' || NEW.host);"
                "  END IF;"
                " END IF;"
                " RETURN NULL; END $$"
            ).format(fn=fn, chan=sql.Literal(NOTIFY_CHANNEL), tenants=sql.Literal(TENANTS_TABLE)),
            # DROP + CREATE rather than CREATE OR REPLACE TRIGGER (PostgreSQL 14+ only);
            # the install lock makes the pairs safe against a concurrent install().
            q("DROP TRIGGER IF EXISTS tenantkit_notify ON {t}"),
            q(
                "CREATE TRIGGER tenantkit_notify AFTER INSERT OR UPDATE OR DELETE"
                " ON {t} FOR EACH ROW EXECUTE FUNCTION {fn}()"
            ),
            q("DROP TRIGGER IF EXISTS tenantkit_notify_truncate ON {t}"),
            q(
                "CREATE TRIGGER tenantkit_notify_truncate AFTER TRUNCATE"
                " ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
            ),
            q("DROP TRIGGER IF EXISTS tenantkit_notify ON {d}"),
            q(
                "CREATE TRIGGER tenantkit_notify AFTER INSERT OR UPDATE OR DELETE"
                " ON {d} FOR EACH ROW EXECUTE FUNCTION {fn}()"
            ),
            q("DROP TRIGGER IF EXISTS tenantkit_notify_truncate ON {d}"),
            q(
                "CREATE TRIGGER tenantkit_notify_truncate AFTER TRUNCATE"
                " ON {d} FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
            ),
            sql.SQL(
                "INSERT INTO {t} (schema, name, state, is_public) VALUES ({sch}, {sch}, 'active',"
                " true) ON CONFLICT DO NOTHING"
            ).format(t=t, sch=sql.Literal(shared_schema)),
        ]
        # The migration summary (tenantkit.migrations) keys rows by schema name: a dropped or
        # renamed tenant must take its row along, or re-creating the name collides and a
        # renamed tenant looks unmigrated. The table exists only once migrations have run.
        m = sql.SQL("{}.{}").format(s, sql.Identifier(MIGRATION_STATE_TABLE))
        self.has_migration_state = sql.SQL(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = {ns} AND c.relname = {rel})"
        ).format(ns=sql.Literal(shared_schema), rel=sql.Literal(MIGRATION_STATE_TABLE))
        self.forget_migrations = sql.SQL("DELETE FROM {} WHERE schema = %s").format(m)
        # retire_tenant(): lock the row (an optional lock_timeout set in the same statement) and
        # read the schema's oid and whether the migration summary exists, in one round trip.
        self.retire_lock = sql.SQL(
            "SELECT t.id, n.oid::bigint, t.is_public, ({has}) FROM {t} t"
            " JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema"
            " WHERE t.schema = %(schema)s AND (%(timeout)s::text IS NULL"
            " OR pg_catalog.set_config('lock_timeout', %(timeout)s, true) IS NOT NULL)"
            " FOR UPDATE OF t"
        ).format(has=self.has_migration_state, t=t)
        self.rename_migrations = sql.SQL("UPDATE {} SET schema = %s WHERE schema = %s").format(m)
        self.select_public = q("SELECT {cols} FROM {t} WHERE is_public")
        self.select_by_schema = q("SELECT {cols} FROM {t} WHERE schema = %s")
        self.select_by_id = q("SELECT {cols} FROM {t} WHERE id = %s")
        self.select_by_host = q(
            "SELECT {tcols} FROM {d} d JOIN {t} t ON t.id = d.tenant_id WHERE d.host = %s"
        )
        self.select_all = q(
            "SELECT {cols} FROM {t} WHERE (%(state)s::text IS NULL OR state = %(state)s)"
            " AND (%(public)s OR NOT is_public) ORDER BY id"
        )
        self.insert = q(
            "INSERT INTO {t} (schema, name, state, metadata) VALUES (%s, %s, %s, %s)"
            " RETURNING {cols}"
        )
        self.set_state = q("UPDATE {t} SET state = %s WHERE id = %s RETURNING {cols}")
        self.rename = q("UPDATE {t} SET schema = %s WHERE id = %s RETURNING {cols}")
        self.merge_metadata = q(
            "UPDATE {t} SET metadata = metadata || %s WHERE id = %s RETURNING {cols}"
        )
        self.delete = q("DELETE FROM {t} WHERE id = %s")
        self.insert_domain = q(
            "INSERT INTO {d} (host, tenant_id, is_primary) VALUES (%(host)s, %(tid)s,"
            " %(primary)s OR NOT EXISTS (SELECT FROM {d} WHERE tenant_id = %(tid)s"
            " AND is_primary)) RETURNING host, tenant_id, %(schema)s, is_primary"
        )
        self.unset_primary = q(
            "UPDATE {d} SET is_primary = false WHERE tenant_id = %s AND is_primary"
        )
        self.delete_domain = q("DELETE FROM {d} WHERE host = %s RETURNING tenant_id")
        self.select_domain = q(
            "SELECT d.host, d.tenant_id, t.schema, d.is_primary FROM {d} d"
            " JOIN {t} t ON t.id = d.tenant_id WHERE d.host = %s"
        )
        # Unset the old primary first: the partial unique index is checked row by row.
        self.set_primary = q("UPDATE {d} SET is_primary = true WHERE host = %s")
        self.select_domains = q(
            "SELECT d.host, d.tenant_id, t.schema, d.is_primary FROM {d} d"
            " JOIN {t} t ON t.id = d.tenant_id"
            " WHERE (%(tid)s::bigint IS NULL OR d.tenant_id = %(tid)s)"
            " ORDER BY t.id, NOT d.is_primary, d.host"
        )
        self.domain_map = q(
            "SELECT d.host, {tcols} FROM {d} d JOIN {t} t ON t.id = d.tenant_id"
            " WHERE t.state = 'active'"
        )
        # Listing at scale: one page of tenants in id order, filtered on the server (a
        # pattern on schema, display name or host), after a given tenant (keyset paging).
        where = q(
            " WHERE NOT t.is_public"
            " AND (%(state)s::text IS NULL OR t.state = %(state)s)"
            " AND (%(after)s::bigint IS NULL OR t.id > %(after)s)"
            " AND (%(pattern)s::text IS NULL OR t.schema ILIKE %(pattern)s"
            " OR t.name ILIKE %(pattern)s OR EXISTS (SELECT FROM {d} x"
            " WHERE x.tenant_id = t.id AND x.host ILIKE %(pattern)s))"
        )
        self.select_page = sql.SQL(
            "SELECT {tcols} FROM {t} t{where} ORDER BY t.id LIMIT %(limit)s"
        ).format(where=where, **fmt)
        self.count_page = sql.SQL("SELECT count(*) FROM {t} t{where}").format(where=where, **fmt)
        self.select_domains_of = q(
            "SELECT d.host, d.tenant_id, t.schema, d.is_primary FROM {d} d"
            " JOIN {t} t ON t.id = d.tenant_id WHERE d.tenant_id = ANY(%s)"
            " ORDER BY t.id, NOT d.is_primary, d.host"
        )


def retire_statement(
    shared_schema: str, tenant_id: int, schema: str, new_schema: str, *, move_state: bool
) -> sql.Composed:
    """One message unregistering a tenant and renaming its schema (``Tenancy.retire_tenant``).

    The tenant row goes (its domains with it, ON DELETE CASCADE; the trigger notifies routers
    as for any drop), the schema takes ``new_schema`` and, with ``move_state``, the migration
    summary follows it, so a retired schema is still known to be at its migration head.
    """
    from psycopg import sql

    s = sql.Identifier(shared_schema)
    statements = [
        sql.SQL("DELETE FROM {}.{} WHERE id = {}").format(
            s, sql.Identifier(TENANTS_TABLE), sql.Literal(tenant_id)
        ),
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
            sql.Identifier(schema), sql.Identifier(new_schema)
        ),
    ]
    if move_state:
        statements.append(
            sql.SQL("UPDATE {}.{} SET schema = {} WHERE schema = {}").format(
                s,
                sql.Identifier(MIGRATION_STATE_TABLE),
                sql.Literal(new_schema),
                sql.Literal(schema),
            )
        )
    return sql.SQL("; ").join(statements)


def like_pattern(text: str) -> str:
    """An ``ILIKE`` pattern for a user's filter: ``*`` and ``?`` are wildcards matching the
    whole value (``acme*``); text without them matches anywhere (``acme``: ``%acme%``).
    ``%``, ``_`` and ``\\`` stand for themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    if "*" in text or "?" in text:
        return escaped.replace("*", "%").replace("?", "_")
    return f"%{escaped}%"


def _page_args(
    state: str | None, pattern: str | None, after: int | None, limit: int | None
) -> dict[str, Any]:
    return {
        "state": state,
        "pattern": None if pattern is None else like_pattern(pattern),
        "after": after,
        "limit": limit,
    }


def tenant_page(
    conn: psycopg.Connection[Any],
    registry: Registry,
    *,
    state: str | None = None,
    pattern: str | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[Tenant]:
    """At most ``limit`` tenants (the public one left out) with an id above ``after``, in id
    order, in ``state`` and matching ``pattern`` (see :func:`like_pattern`) on schema, name
    or host: one query, so a page of a registry of 10,000 tenants costs what a page costs.
    Call it again with ``after`` = the last id for the next page."""
    with translated():
        rows = conn.execute(
            registry.select_page, _page_args(state, pattern, after, limit)
        ).fetchall()
    return [tenant_from_row(r) for r in rows]


def count_tenants(
    conn: psycopg.Connection[Any],
    registry: Registry,
    *,
    state: str | None = None,
    pattern: str | None = None,
    after: int | None = None,
) -> int:
    """How many tenants :func:`tenant_page` would page through with these filters."""
    with translated():
        row = conn.execute(registry.count_page, _page_args(state, pattern, after, None)).fetchone()
    return int(row[0]) if row else 0


def domains_of(
    conn: psycopg.Connection[Any], registry: Registry, tenant_ids: Sequence[int]
) -> list[Domain]:
    """The domains of the tenants with these ids (primary first for each), in one query."""
    with translated():
        rows = conn.execute(registry.select_domains_of, (list(tenant_ids),)).fetchall()
    return [domain_from_row(r) for r in rows]
