"""Read-only inspection of tenant schemas: tables with sizes, a table's description, per-schema
size summaries, and which sessions are working in which tenant.

What ``tenantkit shell`` shows (``\\dt``, ``\\d``, ``\\sizes``, ``\\who``), as typed functions
returning frozen dataclasses, for scripts and admin pages. Every function takes a psycopg
connection and runs catalog queries on it, with names always passed as parameters. Types and
definitions are rendered by PostgreSQL relative to the connection's ``search_path``: on a
connection bound to a tenant (``tenancy.connection(tenant)``) names in the tenant's and the
shared schema come unqualified, as the tenant sees them.

The structural side (fingerprints, drift, diffs) is in :mod:`tenantkit.introspection.catalog`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "ColumnInfo",
    "ConstraintInfo",
    "ForeignKeyInfo",
    "IndexInfo",
    "SchemaSummary",
    "SessionInfo",
    "TableDescription",
    "TableInfo",
    "TriggerInfo",
    "describe_table",
    "list_sessions",
    "list_tables",
    "schema_summaries",
]

_KINDS = {
    "r": "table",
    "p": "partitioned table",
    "v": "view",
    "m": "materialized view",
    "f": "foreign table",
}

# Row estimate of a relation ``c`` with its statistics row ``s``: the statistics system's live
# tuple count (kept current by every commit), else the planner's reltuples (set by VACUUM and
# ANALYZE; -1 when the table was never analysed), else 0 for a table with statistics.
_ROWS = sql.SQL("""
case when c.relkind in ('r', 'm', 'p') then
    coalesce(nullif(s.n_live_tup, 0),
             case when c.reltuples >= 0 then c.reltuples::bigint end,
             s.n_live_tup)
end
""")


@dataclass(frozen=True)
class TableInfo:
    """One table-like relation of a schema.

    ``rows_estimate`` is None where PostgreSQL keeps no count (views, a partitioned parent);
    ``size_bytes`` counts the table, its indexes and TOAST data (0 for views).
    """

    schema: str
    name: str
    kind: str  # 'table', 'partitioned table', 'view', 'materialized view', 'foreign table'
    rows_estimate: int | None
    size_bytes: int


def list_tables(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> tuple[TableInfo, ...]:
    """Tables, views, materialized views and foreign tables of ``schemas`` (one query),
    ordered by schema (in the given order) then name."""
    names = list(schemas)
    query = sql.SQL(
        """
        select n.nspname, c.relname, c.relkind, {rows},
               case when c.relkind in ('r', 'm', 'p')
                    then pg_catalog.pg_total_relation_size(c.oid) else 0 end
        from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        left join pg_catalog.pg_stat_all_tables s on s.relid = c.oid
        where n.nspname = any(%(s)s) and c.relkind in ('r', 'p', 'v', 'm', 'f')
        order by array_position(%(s)s, n.nspname::text), c.relname
        """
    ).format(rows=_ROWS)
    rows = conn.execute(query, {"s": names}).fetchall()
    return tuple(
        TableInfo(schema, name, _KINDS[kind], None if est is None else int(est), int(size))
        for schema, name, kind, est, size in rows
    )


@dataclass(frozen=True)
class ColumnInfo:
    """A column: ``type`` as ``format_type`` renders it, ``default`` the default expression
    (for a generated column: its expression), ``identity`` '' / 'always' / 'by default'."""

    name: str
    type: str
    nullable: bool
    default: str | None
    identity: str
    generated: bool
    collation: str | None


@dataclass(frozen=True)
class IndexInfo:
    """An index; ``definition`` is the full ``CREATE INDEX`` statement."""

    name: str
    definition: str
    is_primary: bool
    is_unique: bool
    is_valid: bool
    constraint: str | None  # 'primary key', 'unique' or 'exclusion' when a constraint owns it

    @property
    def summary(self) -> str:
        """The method and columns (``btree (created)``), as psql shows them."""
        _, sep, rest = self.definition.partition(" USING ")
        return rest if sep else self.definition


@dataclass(frozen=True)
class ConstraintInfo:
    """A primary key, unique, check or exclusion constraint (foreign keys are apart)."""

    name: str
    kind: str  # 'primary key', 'unique', 'check', 'exclusion'
    definition: str


@dataclass(frozen=True)
class ForeignKeyInfo:
    """A foreign key from ``table`` to ``referenced_table`` (both as schema and name)."""

    name: str
    table: tuple[str, str]
    referenced_table: tuple[str, str]
    definition: str


@dataclass(frozen=True)
class TriggerInfo:
    """A user trigger; ``enabled`` is False when disabled (``ALTER TABLE ... DISABLE``)."""

    name: str
    definition: str
    enabled: bool


@dataclass(frozen=True)
class TableDescription:
    """What ``\\d TABLE`` shows: columns, indexes, constraints, foreign keys both ways and
    triggers of one relation."""

    schema: str
    name: str
    kind: str
    columns: tuple[ColumnInfo, ...]
    indexes: tuple[IndexInfo, ...]
    constraints: tuple[ConstraintInfo, ...]
    foreign_keys: tuple[ForeignKeyInfo, ...]
    referenced_by: tuple[ForeignKeyInfo, ...]
    triggers: tuple[TriggerInfo, ...]


_CONTYPES = {"p": "primary key", "u": "unique", "c": "check", "x": "exclusion"}
_IDENTITY = {"a": "always", "d": "by default"}


def describe_table(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> TableDescription | None:
    """Describe ``schema.table`` (any table-like relation); None when there is none."""
    row = conn.execute(
        "select c.oid, c.relkind from pg_catalog.pg_class c "
        "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = %s and c.relname = %s and c.relkind in ('r', 'p', 'v', 'm', 'f')",
        (schema, table),
    ).fetchone()
    if row is None:
        return None
    oid, kind = row
    columns = tuple(
        ColumnInfo(name, typ, not notnull, default, _IDENTITY.get(ident, ""), gen == "s", coll)
        for name, typ, notnull, default, ident, gen, coll in conn.execute(
            """
            select a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                   case when a.attcollation <> t.typcollation then co.collname end
            from pg_catalog.pg_attribute a
            join pg_catalog.pg_type t on t.oid = a.atttypid
            left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
            left join pg_catalog.pg_collation co on co.oid = a.attcollation
            where a.attrelid = %s and a.attnum > 0 and not a.attisdropped
            order by a.attnum
            """,
            (oid,),
        )
    )
    indexes = tuple(
        IndexInfo(name, definition, primary, unique, valid, _CONTYPES.get(contype or ""))
        for name, definition, primary, unique, valid, contype in conn.execute(
            """
            select ic.relname, pg_catalog.pg_get_indexdef(i.indexrelid), i.indisprimary,
                   i.indisunique, i.indisvalid, k.contype
            from pg_catalog.pg_index i
            join pg_catalog.pg_class ic on ic.oid = i.indexrelid
            left join pg_catalog.pg_constraint k
                   on k.conindid = i.indexrelid and k.conrelid = i.indrelid
                   and k.contype in ('p', 'u', 'x')
            where i.indrelid = %s
            order by i.indisprimary desc, i.indisunique desc, ic.relname
            """,
            (oid,),
        )
    )
    constraints: list[ConstraintInfo] = []
    foreign_keys: list[ForeignKeyInfo] = []
    referenced_by: list[ForeignKeyInfo] = []
    for name, contype, definition, own, referenced, src, ref in conn.execute(
        """
        select k.conname, k.contype, pg_catalog.pg_get_constraintdef(k.oid, true),
               k.conrelid = %(oid)s, k.confrelid = %(oid)s,
               array[sn.nspname::text, s.relname::text], array[rn.nspname::text, r.relname::text]
        from pg_catalog.pg_constraint k
        join pg_catalog.pg_class s on s.oid = k.conrelid
        join pg_catalog.pg_namespace sn on sn.oid = s.relnamespace
        left join pg_catalog.pg_class r on r.oid = k.confrelid
        left join pg_catalog.pg_namespace rn on rn.oid = r.relnamespace
        where (k.conrelid = %(oid)s and k.contype in ('p', 'u', 'c', 'x', 'f'))
           or (k.confrelid = %(oid)s and k.contype = 'f' and k.conparentid = 0)
        order by k.contype, sn.nspname, s.relname, k.conname
        """,
        {"oid": oid},
    ):
        if contype != "f":
            constraints.append(ConstraintInfo(name, _CONTYPES[contype], definition))
            continue
        fk = ForeignKeyInfo(name, (src[0], src[1]), (ref[0], ref[1]), definition)
        if own:
            foreign_keys.append(fk)
        if referenced:  # a self reference is both
            referenced_by.append(fk)
    triggers = tuple(
        TriggerInfo(name, definition, enabled != "D")
        for name, definition, enabled in conn.execute(
            "select t.tgname, pg_catalog.pg_get_triggerdef(t.oid, true), t.tgenabled "
            "from pg_catalog.pg_trigger t where t.tgrelid = %s and not t.tgisinternal "
            "order by t.tgname",
            (oid,),
        )
    )
    return TableDescription(
        schema,
        table,
        _KINDS[kind],
        columns,
        indexes,
        tuple(constraints),
        tuple(foreign_keys),
        tuple(referenced_by),
        triggers,
    )


@dataclass(frozen=True)
class SchemaSummary:
    """Size of one schema: its tables, their estimated rows, and total bytes on disk."""

    schema: str
    tables: int
    rows_estimate: int
    size_bytes: int


def schema_summaries(
    conn: psycopg.Connection[Any], schemas: Sequence[str]
) -> tuple[SchemaSummary, ...]:
    """Tables, estimated rows and total size (tables, indexes, TOAST) of each existing schema
    of ``schemas`` in one query, largest first (schemas that do not exist are left out)."""
    query = sql.SQL(
        """
        select n.nspname,
               count(*) filter (where c.relkind in ('r', 'p') and not c.relispartition),
               coalesce(sum({rows}) filter (where c.relkind in ('r', 'm')), 0),
               coalesce(sum(pg_catalog.pg_total_relation_size(c.oid))
                        filter (where c.relkind in ('r', 'm')), 0)
        from pg_catalog.pg_namespace n
        left join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relkind in ('r', 'p', 'm')
        left join pg_catalog.pg_stat_all_tables s on s.relid = c.oid
        where n.nspname = any(%s)
        group by n.nspname
        """
    ).format(rows=_ROWS)
    rows = conn.execute(query, (list(schemas),)).fetchall()
    out = [SchemaSummary(s, int(t), int(r), int(b)) for s, t, r, b in rows]
    out.sort(key=lambda x: (-x.size_bytes, x.schema))
    return tuple(out)


@dataclass(frozen=True)
class SessionInfo:
    """A client session on the current database.

    ``schemas`` are those of the given schemas whose relations the session holds (or waits
    for) locks on: the tenants it is working in right now. PostgreSQL cannot show another
    session's ``search_path``, and tenantkit leaves none on idle pooled connections, so an
    idle session has no schemas. ``duration`` is how long it has been in ``state``.
    """

    pid: int
    user: str | None
    application: str
    client: str
    state: str | None
    since: datetime | None
    duration: timedelta | None
    query: str
    schemas: tuple[str, ...]


def list_sessions(
    conn: psycopg.Connection[Any], schemas: Sequence[str], *, exclude: Sequence[int] = ()
) -> tuple[SessionInfo, ...]:
    """Client sessions on this database (except this one and the pids in ``exclude``), each
    with the ``schemas`` it holds relation locks in, ordered by pid."""
    names = list(schemas)
    rows = conn.execute(
        """
        select a.pid, a.usename, coalesce(a.application_name, ''),
               coalesce(host(a.client_addr) || ':' || a.client_port,
                        case when a.client_port = -1 then 'local' end, ''),
               a.state, a.state_change, now() - a.state_change, coalesce(a.query, ''),
               coalesce((
                   select array_agg(distinct n.nspname::text)
                   from pg_catalog.pg_locks l
                   join pg_catalog.pg_class c on c.oid = l.relation
                   join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                   where l.pid = a.pid and l.locktype = 'relation' and l.database = a.datid
                     and n.nspname = any(%(s)s)
               ), '{}')
        from pg_catalog.pg_stat_activity a
        where a.datname = current_database() and a.backend_type = 'client backend'
          and a.pid <> pg_backend_pid() and a.pid <> all(%(x)s)
        order by a.pid
        """,
        {"s": names, "x": [int(p) for p in exclude]},
    ).fetchall()
    order = {s: i for i, s in enumerate(names)}
    return tuple(
        SessionInfo(
            int(pid),
            user,
            app,
            client,
            state,
            since,
            duration,
            query,
            tuple(sorted(held, key=lambda s: order.get(s, len(order)))),
        )
        for pid, user, app, client, state, since, duration, query, held in rows
    )
