"""Isolation assertions: prove that tenants do not see or change each other's data.

Two checks, both built on the system catalogs and plain connections (they need no ORM and no
knowledge of the application's tables):

* :class:`IsolationSnapshot` / :func:`assert_unchanged`: fingerprint the structure and the rows
  of a set of tenant schemas (and the table names of the shared schema) before some code runs,
  and fail if anything in them changed afterwards. This is what the ``assert_tenants_isolated``
  fixture does when used as a context manager around code acting as one tenant.
* :func:`check_between`: canary rows written through tenant A's connection must not be visible
  through tenant B's connection, and no foreign key, view, function body, trigger or column
  default in one tenant schema may reference another tenant's schema. The database work lives
  in :mod:`tenantkit.isolation` (usable without pytest); this module turns it into assertions.

Failures raise :class:`TenantIsolationError` (an ``AssertionError``) whose message names the
schema, the table and what leaked.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tenantkit.isolation import TenantConnect, check_isolation, find_cross_schema_references

__all__ = [
    "IsolationAsserter",
    "IsolationSnapshot",
    "TenantIsolationError",
    "assert_unchanged",
    "check_between",
    "compare_snapshots",
    "cross_schema_references",
    "take_snapshot",
]

#: Tables with at most this many rows have their rows recorded, so a failure can show them.
_SAMPLE_ROWS = 50

ConnectFn = TenantConnect


class TenantIsolationError(AssertionError):
    """Tenant isolation was violated; ``problems`` lists each leak found, one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"tenant isolation violated ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class TableState:
    """Row fingerprint of one table: count, order-independent hash, and rows when few."""

    count: int
    digest: str
    rows: tuple[str, ...] | None


@dataclass
class IsolationSnapshot:
    """Structure and row fingerprints of some tenant schemas, plus the shared schema's tables."""

    schemas: tuple[str, ...]
    shared_schema: str
    structure: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    tables: dict[tuple[str, str], TableState] = field(default_factory=dict)
    shared_tables: set[str] = field(default_factory=set)


_STRUCTURE_QUERY = """
SELECT n.nspname, 'relation', c.relname, c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I')
UNION ALL
SELECT n.nspname, 'column', c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT n.nspname, 'index', c.relname, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT n.nspname, 'constraint', c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT n.nspname, 'view', c.relname, pg_get_viewdef(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('v', 'm')
UNION ALL
SELECT n.nspname, 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(coalesce(p.prosrc, ''))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT n.nspname, 'trigger', c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND NOT t.tgisinternal
"""

_TABLES_QUERY = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')
 ORDER BY 1, 2
"""


def _table_names(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[tuple[str, str]]:
    return [(str(s), str(t)) for s, t in conn.execute(_TABLES_QUERY, [list(schemas)]).fetchall()]


def _row_states(
    conn: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], TableState]:
    if not tables:
        return {}
    parts = []
    for schema, table in tables:
        ident = sql.Identifier(schema, table)
        # One UNION ALL query for every table: one round trip however many tenants there are.
        parts.append(
            sql.SQL(
                "SELECT {s}::text, {t}::text, count(*),"
                " coalesce(sum(hashtextextended(x::text, 0)::numeric), 0)::text,"
                " (SELECT array_agg(y::text) FROM (SELECT y FROM {i} y LIMIT {n}) q)"
                " FROM {i} x"
            ).format(
                s=sql.Literal(schema),
                t=sql.Literal(table),
                i=ident,
                n=sql.Literal(_SAMPLE_ROWS + 1),
            )
        )
    query = sql.SQL(" UNION ALL ").join(parts)
    states: dict[tuple[str, str], TableState] = {}
    for schema, table, count, digest, sample in conn.execute(query).fetchall():
        rows = tuple(sorted(sample or ())) if int(count) <= _SAMPLE_ROWS else None
        states[(schema, table)] = TableState(int(count), str(digest), rows)
    return states


def take_snapshot(
    conn: psycopg.Connection[Any], schemas: Iterable[str], *, shared_schema: str = "public"
) -> IsolationSnapshot:
    """Fingerprint ``schemas`` (structure and rows) and the table names of ``shared_schema``."""
    names = tuple(sorted(set(schemas)))
    snap = IsolationSnapshot(schemas=names, shared_schema=shared_schema)
    with _reading(conn):
        for schema, kind, name, definition in conn.execute(
            _STRUCTURE_QUERY, {"schemas": list(names)}
        ).fetchall():
            snap.structure.setdefault(schema, set()).add((kind, name, definition))
        snap.tables = _row_states(conn, _table_names(conn, names))
        snap.shared_tables = {t for _, t in _table_names(conn, [shared_schema])}
    return snap


@contextlib.contextmanager
def _reading(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Run catalog reads in one repeatable-read snapshot when the connection allows it."""
    if conn.autocommit and not conn.info.transaction_status:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    else:
        yield


def _describe_rows(rows: Counter[str], verb: str) -> str:
    shown = ", ".join(sorted(rows.elements())[:3])
    more = sum(rows.values()) - min(3, sum(rows.values()))
    return f"{sum(rows.values())} row(s) {verb}: {shown}" + (f" (+{more} more)" if more else "")


def _diff_table(key: tuple[str, str], before: TableState, after: TableState) -> str:
    schema, table = key
    where = f"table {schema}.{table}"
    if before.rows is not None and after.rows is not None:
        added = Counter(after.rows) - Counter(before.rows)
        removed = Counter(before.rows) - Counter(after.rows)
        what = []
        if added:
            what.append(_describe_rows(added, "added"))
        if removed:
            what.append(_describe_rows(removed, "removed"))
        if what:
            return f"{where}: " + "; ".join(what)
    return f"{where}: rows changed ({before.count} row(s) before, {after.count} after)"


def compare_snapshots(
    before: IsolationSnapshot, after: IsolationSnapshot, *, tenant_tables: set[str] | None = None
) -> list[str]:
    """Describe every difference between two snapshots of the same schemas, one line each."""
    problems: list[str] = []
    for schema in before.schemas:
        old = before.structure.get(schema, set())
        new = after.structure.get(schema, set())
        for kind, name, definition in sorted(new - old):
            if (kind, name) in {(k, n) for k, n, _ in old}:
                problems.append(f"schema {schema}: {kind} {name} changed to: {definition}")
            else:
                problems.append(f"schema {schema}: {kind} {name} was created ({definition})")
        new_names = {(k, n) for k, n, _ in new}
        for kind, name, _ in sorted(old - new):
            if (kind, name) not in new_names:
                problems.append(f"schema {schema}: {kind} {name} was dropped")
    for key in sorted(set(before.tables) | set(after.tables)):
        old_state, new_state = before.tables.get(key), after.tables.get(key)
        if old_state is None or new_state is None:
            continue  # reported above as a created or dropped relation
        if old_state != new_state:
            problems.append(_diff_table(key, old_state, new_state))
    shaped = tenant_tables if tenant_tables is not None else {t for _, t in after.tables}
    for table in sorted((after.shared_tables - before.shared_tables) & shaped):
        problems.append(
            f"shared schema {after.shared_schema} gained table {table}, which is a tenant table "
            "name: a statement ran without a tenant on its search_path"
        )
    return problems


def assert_unchanged(
    conn: psycopg.Connection[Any], before: IsolationSnapshot, *, tenant_schemas: Iterable[str] = ()
) -> None:
    """Fail with :class:`TenantIsolationError` if anything ``before`` covers changed since.

    ``tenant_schemas`` are further tenant schemas (e.g. the ones allowed to change) whose table
    names also count as "tenant-shaped" when they appear in the shared schema.
    """
    after = take_snapshot(conn, before.schemas, shared_schema=before.shared_schema)
    extra = [s for s in tenant_schemas if s not in before.schemas]
    tenant_tables = {t for _, t in after.tables} | {t for _, t in _table_names(conn, extra)}
    problems = compare_snapshots(before, after, tenant_tables=tenant_tables)
    if problems:
        raise TenantIsolationError(problems)


def cross_schema_references(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[str]:
    """Catalog objects in one of ``schemas`` that reference another of ``schemas``, one line
    each (see :func:`tenantkit.isolation.find_cross_schema_references`)."""
    return [r.message for r in find_cross_schema_references(conn, schemas)]


def check_between(
    admin: psycopg.Connection[Any],
    schemas: Sequence[str],
    connect: ConnectFn,
    *,
    canaries: bool = True,
) -> list[str]:
    """Check that the tenants in ``schemas`` are isolated from each other; return the problems.

    ``admin`` is any connection to the database (catalog reads). ``connect(schema)`` returns a
    context manager giving a connection bound to that tenant, the way the application gets one
    (by default ``tenancy.connection``). Cross-schema references and canary rows, as
    :func:`tenantkit.isolation.check_isolation` does; one line per problem.
    """
    return list(check_isolation(admin, schemas, connect, canaries=canaries).problems)


def _schema(tenant: Any) -> str:
    return tenant if isinstance(tenant, str) else str(tenant.schema)


class _IsolationBlock:
    """The context manager returned by ``assert_tenants_isolated(*acting)``."""

    def __init__(self, asserter: IsolationAsserter, acting: tuple[str, ...]) -> None:
        self._asserter = asserter
        self._acting = acting
        self._conn: psycopg.Connection[Any] | None = None
        self._before: IsolationSnapshot | None = None

    def __enter__(self) -> _IsolationBlock:
        asserter = self._asserter
        others = [s for s in asserter.tenant_schemas() if s not in self._acting]
        self._conn = psycopg.connect(asserter.conninfo, autocommit=True)
        self._before = take_snapshot(self._conn, others, shared_schema=asserter.shared_schema)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn, before = self._conn, self._before
        assert conn is not None and before is not None
        try:
            if exc_type is None:
                assert_unchanged(conn, before, tenant_schemas=self._acting)
        finally:
            conn.close()


class IsolationAsserter:
    """What the ``assert_tenants_isolated`` fixture returns (see its docstring)."""

    def __init__(self, tenancy: Any, *, shared_schema: str = "public") -> None:
        self.tenancy = tenancy
        self.conninfo: str = tenancy.conninfo
        self.shared_schema = shared_schema

    def tenant_schemas(self) -> list[str]:
        """Schemas of every registered tenant (the public tenant excluded)."""
        return [t.schema for t in self.tenancy.tenants()]

    def __call__(self, *acting: Any) -> _IsolationBlock:
        """Context manager: code inside may change ``acting`` tenants, and nothing else."""
        return _IsolationBlock(self, tuple(_schema(t) for t in acting))

    def between(
        self, *tenants: Any, connect: ConnectFn | None = None, canaries: bool = True
    ) -> None:
        """Fail unless the given tenants (default: all registered) are isolated from each other.

        ``connect(schema)`` returns a context manager giving a connection bound to that tenant;
        default ``tenancy.connection``. Pass your application's own factory to test it.
        """
        schemas = [_schema(t) for t in tenants] or self.tenant_schemas()
        connect_fn: ConnectFn = connect if connect is not None else self.tenancy.connection
        with psycopg.connect(self.conninfo, autocommit=True) as admin:
            problems = check_between(admin, schemas, connect_fn, canaries=canaries)
        if problems:
            raise TenantIsolationError(problems)
