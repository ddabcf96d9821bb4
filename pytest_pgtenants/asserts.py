"""Isolation assertions: prove that tenants do not see or change each other's data.

Two checks, both built on the system catalogs and plain connections (they need no ORM and no
knowledge of the application's tables):

* :func:`take_snapshot` / :func:`assert_unchanged`: snapshot a set of tenant schemas before
  some code runs and fail if anything lasting changed in them afterwards: rows, sequence
  values, structure (relations, columns, indexes, constraints, views, functions, triggers,
  rules, row level security policies, types), owners and privileges, function security and
  settings, trigger and rule state. The spare and template schemas tenantkit builds new tenants
  from are covered too, and so is the rest of the database more thinly: a schema that appears
  and is not a tenant, or a relation that appears in the shared schema (or any other schema
  that is not a tenant's), is a failure. This is what the ``assert_tenants_isolated`` fixture
  does when used as a context manager around code acting as one tenant. The snapshot itself
  lives in :mod:`pytest_pgtenants._snapshot` (three queries whatever the number of tenants),
  the messages in :mod:`pytest_pgtenants._snapshot_diff`.
* :func:`check_between`: canary rows written through tenant A's connection must not be visible
  through tenant B's connection, and no foreign key, view, rule, function body, trigger or
  column default in one tenant schema may reference another tenant's schema. The database work
  lives in :mod:`tenantkit.introspection.isolation` (usable without pytest); this module
  turns it into assertions.

Failures raise :class:`TenantIsolationError` (an ``AssertionError``) whose message names the
schema, the object and what changed or leaked, one line each. A snapshot that cannot see
everything it must compare (row-level security hiding rows from the connection's role) raises
:class:`IsolationUnverifiable`, a :class:`TenantIsolationError`, instead of passing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from tenantkit.introspection.isolation import (
    TenantConnect,
    check_isolation,
    find_cross_schema_references,
)

from ._snapshot import (
    IsolationSnapshot,
    IsolationUnverifiable,
    TableState,
    TenantIsolationError,
    take_snapshot,
)
from ._snapshot_diff import compare_snapshots

__all__ = [
    "IsolationAsserter",
    "IsolationSnapshot",
    "IsolationUnverifiable",
    "TableState",
    "TenantIsolationError",
    "assert_unchanged",
    "check_between",
    "compare_snapshots",
    "cross_schema_references",
    "take_snapshot",
]

ConnectFn = TenantConnect


def assert_unchanged(
    conn: psycopg.Connection[Any], before: IsolationSnapshot, *, tenant_schemas: Iterable[str] = ()
) -> None:
    """Fail with :class:`TenantIsolationError` if anything ``before`` covers changed since.

    ``tenant_schemas`` are further tenant schemas (the ones allowed to change, tenants
    registered meanwhile): they may appear and change freely, and their table names also count
    as "tenant-shaped" when they appear in the shared schema.
    """
    after = take_snapshot(
        conn,
        before.schemas,
        shared_schema=before.shared_schema,
        reserved=before.include_reserved,
        since=before,
    )
    extra = [s for s in tenant_schemas if s not in before.schemas]
    problems = compare_snapshots(
        before,
        after,
        tenant_tables=after.table_names([*after.schemas, *extra]),
        tenant_schemas=extra,
    )
    if problems:
        raise TenantIsolationError(problems)


def cross_schema_references(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[str]:
    """Catalog objects in one of ``schemas`` that reference another of ``schemas``, one line
    each (see :func:`tenantkit.introspection.isolation.find_cross_schema_references`)."""
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
    :func:`tenantkit.introspection.isolation.check_isolation` does; one line per problem.
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
        try:
            self._before = take_snapshot(self._conn, others, shared_schema=asserter.shared_schema)
        except BaseException:
            self._conn.close()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn, before = self._conn, self._before
        assert conn is not None and before is not None
        try:
            if exc_type is None:
                # Tenants registered while the block ran may appear (and claim spares).
                allowed = [*self._acting, *self._asserter.tenant_schemas()]
                assert_unchanged(conn, before, tenant_schemas=allowed)
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
