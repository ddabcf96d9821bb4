"""Tenant isolation checks on a live database: do tenants see or reference each other?

Two checks, both built on the system catalogs and plain connections (they need no ORM and no
knowledge of the application's tables):

* :func:`find_cross_schema_references`: no foreign key, view, rule, row level security
  policy, column default, owned sequence, trigger or function body in one tenant schema may
  reference another tenant's schema;
* :func:`check_isolation`: that check, plus canary rows: a row written through tenant A's
  connection (unqualified table names, resolved by A's ``search_path``) must not be visible
  through tenant B's connection.

The pytest plugin's ``assert_tenants_isolated.between()`` and ``tenantkit demo`` are built on
them. The results are values (:class:`IsolationReport`); turning a problem into a failure is
the caller's choice.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "CanaryLeak",
    "IsolationReport",
    "SchemaReference",
    "TenantConnect",
    "check_isolation",
    "find_cross_schema_references",
]

TenantConnect = Callable[[str], AbstractContextManager[psycopg.Connection[Any]]]
"""``connect(schema)``: a context manager giving a connection bound to that tenant, the way the
application gets one (``Tenancy.connection`` is one)."""


@dataclass(frozen=True)
class SchemaReference:
    """A catalog object in one tenant schema that depends on another tenant's schema.

    ``kind`` is one of ``"foreign key"``, ``"view"``, ``"materialized view"``, ``"rule"``,
    ``"policy"``, ``"column default"``, ``"owned sequence"``, ``"trigger"`` or
    ``"function body"``. ``detail`` names the constraint, rule, policy, column or trigger
    (empty for the other kinds); ``name`` is the table, view, sequence or function in
    ``schema``; ``target`` what it references in ``target_schema`` (empty for a function body,
    where only the schema name is seen).
    """

    kind: str
    schema: str
    name: str
    target_schema: str
    target: str = ""
    detail: str = ""

    @property
    def message(self) -> str:
        """One line saying what references what."""
        if self.kind == "function body":
            return (
                f"function {self.schema}.{self.name}() body references schema {self.target_schema}"
            )
        what = {
            "foreign key": f"foreign key {self.detail}",
            "rule": f"rule {self.detail}",
            "policy": f"row level security policy {self.detail}",
            "column default": f"default of column {self.detail}",
            "trigger": f"trigger {self.detail} calls function {self.target.removesuffix('()')}",
        }.get(self.kind, self.kind)
        return f"{what} on {self.schema}.{self.name} references {self.target_schema}.{self.target}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CanaryLeak:
    """A canary row written through ``writer``'s connection was visible through ``reader``'s."""

    table: str
    writer: str
    reader: str
    rows: int

    @property
    def message(self) -> str:
        """One line naming the table and both tenants."""
        return (
            f"table {self.table}: a canary row written through tenant {self.writer}'s "
            f"connection is visible through tenant {self.reader}'s connection "
            f"({self.reader}.{self.table} gained {self.rows} row(s))"
        )

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class IsolationReport:
    """What :func:`check_isolation` found.

    ``canaries`` counts the canary rows written (each checked from every other tenant);
    ``skipped_tables`` (``"schema.table"``) got none because no value could be invented for a
    required column or a constraint refused the row.
    """

    schemas: tuple[str, ...]
    references: tuple[SchemaReference, ...] = ()
    leaks: tuple[CanaryLeak, ...] = ()
    canaries: int = 0
    skipped_tables: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no reference and no leak was found."""
        return not self.references and not self.leaks

    @property
    def problems(self) -> tuple[str, ...]:
        """Every problem found, one line each: references (sorted), then leaks."""
        return tuple(sorted(r.message for r in self.references)) + tuple(
            leak.message for leak in self.leaks
        )


# One query per kind of dependency PostgreSQL tracks; each row is
# (kind, detail, schema, name, target_schema, target).
_REFERENCES_QUERY = """
SELECT 'foreign key', k.conname, sn.nspname, sc.relname, tn.nspname, tc.relname
  FROM pg_constraint k
  JOIN pg_class sc ON sc.oid = k.conrelid JOIN pg_namespace sn ON sn.oid = sc.relnamespace
  JOIN pg_class tc ON tc.oid = k.confrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
 WHERE k.contype = 'f' AND sn.nspname = ANY(%(s)s) AND tn.nspname = ANY(%(s)s)
   AND sn.nspname <> tn.nspname
UNION
SELECT CASE WHEN r.rulename <> '_RETURN' THEN 'rule'
            WHEN v.relkind = 'm' THEN 'materialized view' ELSE 'view' END,
       CASE WHEN r.rulename <> '_RETURN' THEN r.rulename::text ELSE '' END,
       vn.nspname, v.relname, tn.nspname, t.relname
  FROM pg_depend d
  JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
  JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
  JOIN pg_class t ON d.refclassid = 'pg_class'::regclass AND t.oid = d.refobjid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE vn.nspname = ANY(%(s)s) AND tn.nspname = ANY(%(s)s) AND vn.nspname <> tn.nspname
UNION
SELECT 'policy', y.polname::text, cn.nspname, c.relname, tn.nspname, t.relname
  FROM pg_depend d
  JOIN pg_policy y ON d.classid = 'pg_policy'::regclass AND y.oid = d.objid
  JOIN pg_class c ON c.oid = y.polrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_class t ON d.refclassid = 'pg_class'::regclass AND t.oid = d.refobjid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE cn.nspname = ANY(%(s)s) AND tn.nspname = ANY(%(s)s) AND cn.nspname <> tn.nspname
UNION
SELECT 'column default', a.attname::text, cn.nspname, c.relname, rn.nspname,
       coalesce(rc.relname::text, rp.proname || '()')
  FROM pg_attrdef ad
  JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
  JOIN pg_class c ON c.oid = ad.adrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
  LEFT JOIN pg_class rc ON d.refclassid = 'pg_class'::regclass AND rc.oid = d.refobjid
  LEFT JOIN pg_proc rp ON d.refclassid = 'pg_proc'::regclass AND rp.oid = d.refobjid
  JOIN pg_namespace rn ON rn.oid = coalesce(rc.relnamespace, rp.pronamespace)
 WHERE cn.nspname = ANY(%(s)s) AND rn.nspname = ANY(%(s)s) AND cn.nspname <> rn.nspname
UNION
SELECT 'owned sequence', '', sn.nspname, s.relname, tn.nspname, t.relname
  FROM pg_depend d
  JOIN pg_class s ON d.classid = 'pg_class'::regclass AND s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_class t ON d.refclassid = 'pg_class'::regclass AND t.oid = d.refobjid
  JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE d.deptype IN ('a', 'i') AND sn.nspname = ANY(%(s)s) AND tn.nspname = ANY(%(s)s)
   AND sn.nspname <> tn.nspname
UNION
SELECT 'trigger', tg.tgname::text, cn.nspname, c.relname, pn.nspname, p.proname || '()'
  FROM pg_trigger tg
  JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = tg.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
 WHERE NOT tg.tgisinternal AND cn.nspname = ANY(%(s)s) AND pn.nspname = ANY(%(s)s)
   AND cn.nspname <> pn.nspname
"""

_FUNCTIONS_QUERY = """
SELECT n.nspname, p.proname,
       coalesce(p.prosrc, '') || ' ' || coalesce(array_to_string(p.proconfig, ' '), '')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY(%s)
"""

_TABLES_QUERY = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')
 ORDER BY 1, 2
"""


def find_cross_schema_references(
    conn: psycopg.Connection[Any], schemas: Sequence[str]
) -> list[SchemaReference]:
    """Catalog objects in one of ``schemas`` that reference another of ``schemas``.

    Foreign keys, views, rules (a rule on one tenant's table writing into another's), row level
    security policies, column defaults (sequences, functions), owned sequences and trigger
    functions are found through the dependency catalog; function bodies (which PostgreSQL does
    not track) by looking for another schema's name used as a qualifier in their source or
    settings. References to schemas outside ``schemas`` (the shared schema) are allowed.
    Sorted by message.
    """
    names = sorted(set(schemas))
    found = [
        SchemaReference(
            kind=str(kind),
            detail=str(detail),
            schema=str(schema),
            name=str(name),
            target_schema=str(target_schema),
            target=str(target),
        )
        for kind, detail, schema, name, target_schema, target in conn.execute(
            _REFERENCES_QUERY, {"s": names}
        ).fetchall()
    ]
    patterns = {
        name: re.compile(rf'(?<![\w$"]){re.escape(name)}\s*\.|"{re.escape(name)}"\s*\.', re.I)
        for name in names
    }
    for schema, function, body in conn.execute(_FUNCTIONS_QUERY, [names]).fetchall():
        for other, pattern in patterns.items():
            if other != schema and pattern.search(body):
                found.append(
                    SchemaReference(
                        kind="function body",
                        schema=str(schema),
                        name=str(function),
                        target_schema=other,
                    )
                )
    return sorted(found, key=lambda r: r.message)


# Values for required columns of a canary row, by type: constants and expressions only, so no
# user input ever reaches them.
_CANARY_VALUES = {
    "text": "'tenantkit-canary'",
    "character varying": "'canary'",
    "character": "'c'",
    "citext": "'tenantkit-canary'",
    "smallint": "(random() * 30000)::int2",
    "integer": "(random() * 2000000000)::int4",
    "bigint": "(random() * 9e18)::int8",
    "numeric": "(random() * 1000)::int",
    "real": "random()",
    "double precision": "random()",
    "boolean": "false",
    "json": "'{}'",
    "jsonb": "'{}'",
    "timestamp with time zone": "now()",
    "timestamp without time zone": "now()",
    "date": "current_date",
    "time without time zone": "current_time",
    "uuid": "md5(random()::text)::uuid",
    "bytea": "''",
    "inet": "'192.0.2.1'",
}

_REQUIRED_COLUMNS_QUERY = """
SELECT c.relname, a.attname, format_type(a.atttypid, NULL)
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attnotnull AND d.oid IS NULL AND a.attidentity = '' AND a.attgenerated = ''
"""


def _table_names(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[tuple[str, str]]:
    return [(str(s), str(t)) for s, t in conn.execute(_TABLES_QUERY, [list(schemas)]).fetchall()]


def _canary_inserts(
    conn: psycopg.Connection[Any], schema: str, tables: Sequence[str]
) -> dict[str, sql.Composed | None]:
    required: dict[str, list[tuple[str, str]]] = {t: [] for t in tables}
    for table, column, type_name in conn.execute(_REQUIRED_COLUMNS_QUERY, [schema]).fetchall():
        if table in required:
            required[table].append((column, type_name))
    statements: dict[str, sql.Composed | None] = {}
    for table in tables:
        columns = required[table]
        if any(type_name not in _CANARY_VALUES for _, type_name in columns):
            statements[table] = None  # a type we cannot invent a value for: no canary here
            continue
        target = sql.Identifier(table)  # unqualified on purpose: resolved by the search_path
        if not columns:
            statements[table] = sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING ctid").format(
                target
            )
            continue
        statements[table] = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING ctid").format(
            target,
            sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns),
            sql.SQL(", ").join(sql.SQL(_CANARY_VALUES[t]) for _, t in columns),
        )
    return statements


def _visible_counts(conn: psycopg.Connection[Any], tables: Sequence[str]) -> dict[str, int]:
    if not tables:
        return {}
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::text, count(*) FROM {}").format(sql.Literal(t), sql.Identifier(t))
        for t in tables
    )
    with conn.transaction():
        counts = {str(t): int(n) for t, n in conn.execute(query).fetchall()}
    return counts


def check_isolation(
    admin: psycopg.Connection[Any],
    schemas: Sequence[str],
    connect: TenantConnect,
    *,
    canaries: bool = True,
) -> IsolationReport:
    """Check that the tenants in ``schemas`` are isolated from each other.

    ``admin`` is any connection to the database (catalog reads). ``connect(schema)`` returns a
    context manager giving a connection bound to that tenant, the way the application gets one
    (``tenancy.connection``, or your own data layer's factory).

    First :func:`find_cross_schema_references`. Then, with ``canaries``, for each tenant A a
    canary row is inserted into each of its tables through A's connection (unqualified names,
    resolved by its ``search_path``) and committed; every other tenant B counts the same table
    names through B's connection before and after, and a count that grew means B sees A's rows.
    The canaries are deleted again, but they are committed rows for a moment: run this on test
    or development data, not on a production database under load.
    """
    names = sorted(set(schemas))
    references = tuple(find_cross_schema_references(admin, names))
    if not canaries or len(names) < 2:
        return IsolationReport(schemas=tuple(names), references=references)
    tables_by_schema: dict[str, set[str]] = {}
    for schema, table in _table_names(admin, names):
        tables_by_schema.setdefault(schema, set()).add(table)
    leaks: list[CanaryLeak] = []
    skipped: list[str] = []
    written_total = 0
    for writer in names:
        readers = [s for s in names if s != writer]
        shared = {
            r: sorted(tables_by_schema.get(writer, set()) & tables_by_schema.get(r, set()))
            for r in readers
        }
        writable = sorted(set().union(*shared.values())) if shared else []
        if not writable:
            continue
        inserts = _canary_inserts(admin, writer, writable)
        with contextlib.ExitStack() as stack:
            reader_conns = {r: stack.enter_context(connect(r)) for r in readers}
            before = {r: _visible_counts(reader_conns[r], shared[r]) for r in readers}
            written: list[tuple[str, Any]] = []
            with connect(writer) as wconn:
                with wconn.transaction():
                    for table in writable:
                        statement = inserts[table]
                        if statement is None:
                            skipped.append(f"{writer}.{table}")
                            continue
                        try:
                            with wconn.transaction():
                                row = wconn.execute(statement).fetchone()
                        except psycopg.Error:
                            # constraints we cannot satisfy generically: no canary here
                            skipped.append(f"{writer}.{table}")
                            continue
                        if row is not None:
                            written.append((table, row[0]))
                written_total += len(written)
                written_tables = {t for t, _ in written}
                try:
                    for reader in readers:
                        after = _visible_counts(reader_conns[reader], shared[reader])
                        for table, count in after.items():
                            grown = count - before[reader][table]
                            if grown > 0 and table in written_tables:
                                leaks.append(CanaryLeak(table, writer, reader, grown))
                finally:
                    with wconn.transaction():
                        for table, ctid in written:
                            wconn.execute(
                                sql.SQL("DELETE FROM {} WHERE ctid = %s").format(
                                    sql.Identifier(table)
                                ),
                                [ctid],
                            )
    return IsolationReport(
        schemas=tuple(names),
        references=references,
        leaks=tuple(leaks),
        canaries=written_total,
        skipped_tables=tuple(skipped),
    )
