"""Connection classes that apply a tenant's ``search_path`` with zero extra round trips.

How it works (the reasons behind :class:`TenantConnection`):

* A connection carries the path it *wants* (``_tk_want``, set by ``Tenancy.connection()`` or
  ``use_tenant()``) and, in the default mode, the session-level path it is *known* to have
  (``_tk_confirmed``).
* When psycopg starts a transaction it sends ``BEGIN``. If the wanted path differs from the
  known one, we append ``SET search_path TO ...`` to that same simple-query message: the
  switch costs no extra round trip. When they match nothing is added, not even a statement.
* A session-level ``SET`` inside a transaction is undone by ``ROLLBACK``, so the new path is
  only *confirmed* once we saw our own ``COMMIT`` succeed; any other ending (rollback, error,
  a ``COMMIT`` sent as a plain query, pipeline mode) leaves the path unknown and the next
  transaction sets it again. The ``SET`` precedes every savepoint of its transaction, so
  ``ROLLBACK TO SAVEPOINT`` cannot undo it (django-tenants' cache went stale exactly there).
* Queries that may change the path behind our back (``search_path``, ``DISCARD ALL``,
  ``RESET ALL``) drop the cache; queries mentioning temporary objects flag the connection so
  ``Tenancy`` discards them before it goes back to the pool.
* A pooled connection that nobody bound wants the neutral path (shared schema, extras,
  ``pg_temp``), so a tenant's path set earlier is never used by the next borrower; with
  ``strict`` it refuses to run anything instead (:class:`~tenantkit.errors.NoTenantSelected`).
* Prepared statements are keyed by query *and* path: psycopg prepares a query after a few
  runs, and PostgreSQL re-plans a prepared statement whenever the ``search_path`` differs from
  the one it was planned with. One statement per tenant path keeps each tenant's plan cached
  (correctness never depends on this: the server revalidates plans on every path change).
* ``pgbouncer`` mode keeps no per-connection knowledge: every transaction starts with
  ``BEGIN; SET LOCAL search_path TO ...`` (one message), valid under transaction pooling.

The hooks override two private psycopg generators (``_start_query`` and ``_exec_command``,
stable since psycopg 3.0); they are the only places where psycopg starts and ends
transactions, for ``Connection`` and ``AsyncConnection`` alike.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq
from psycopg._preparing import PrepareManager
from psycopg._queries import PostgresQuery
from psycopg.abc import PQGen
from psycopg.pq.abc import PGconn, PGresult
from psycopg.rows import AsyncRowFactory, Row, RowFactory, tuple_row
from psycopg.sql import Composable

from .errors import NoTenantSelected

__all__ = ["AsyncTenantConnection", "AsyncTenantCursor", "TenantConnection", "TenantCursor"]

#: Prepared statements kept per connection (psycopg's default is 100). Statements are kept
#: per tenant path, so a connection serving many tenants needs room for more of them.
PREPARED_MAX = 512

_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_FATAL = pq.ExecStatus.FATAL_ERROR
_QUICK_RE = re.compile(r"temp|search_path|discard|reset", re.IGNORECASE)
_PATH_RE = re.compile(r"search_path|discard\s+all|reset\s+all", re.IGNORECASE)
_TEMP_RE = re.compile(r"\btemp(orary)?\b|pg_temp", re.IGNORECASE)


_FLAG_PATH = 1
_FLAG_TEMP = 2
_NOTE_CACHE: dict[object, int] = {}
_NOTE_CACHE_MAX = 10_000


def _scan(query: object, conn: psycopg.BaseConnection[Any]) -> int:
    if isinstance(query, str):
        text = query
    elif isinstance(query, bytes):
        text = query.decode("utf-8", "replace")
    elif isinstance(query, Composable):
        text = query.as_string(conn)
    else:
        return 0
    if not _QUICK_RE.search(text):
        return 0
    return (_FLAG_PATH if _PATH_RE.search(text) else 0) | (
        _FLAG_TEMP if _TEMP_RE.search(text) else 0
    )


class _PathPrepareManager(PrepareManager):
    """psycopg's prepared-statement cache, keyed by the path of the running transaction."""

    #: Path of the running transaction, pushed by the connection (its ``_tk_active``).
    path: bytes | None = None

    def key(self, query: PostgresQuery) -> Any:  # type: ignore[override]
        return (query.query, query.types, self.path)


class _TenantState(psycopg.BaseConnection[Any]):
    """Search-path bookkeeping shared by the sync and async connection classes."""

    #: Path wanted for the next transaction (an SQL fragment); None: nothing bound.
    _tk_want: bytes | None = None
    #: Path used when nothing is bound (shared schema, extras, pg_temp).
    _tk_neutral: bytes | None = None
    #: Session-level path known to be in effect outside a transaction (default mode).
    _tk_confirmed: bytes | None = None
    #: Session-level path set by the running transaction, pending its commit.
    _tk_inflight: bytes | None = None
    _tk_strict: bool = False
    _tk_pgbouncer: bool = False
    #: The connection may hold temporary objects.
    _tk_temp: bool = False
    #: Path to apply with SET LOCAL before the next query of the running transaction
    #: (a switch made by use_tenant() in the middle of a transaction).
    _tk_local: bytes | None = None
    _prepared: PrepareManager

    @property
    def _tk_active(self) -> bytes | None:
        """Path of the running transaction as far as we know (keys prepared statements)."""
        return getattr(self._prepared, "path", None)

    @_tk_active.setter
    def _tk_active(self, path: bytes | None) -> None:
        self._prepared.path = path  # type: ignore[attr-defined]

    #: Shared schema and extras of the configuring tenancy (for use_tenant()).
    _tk_base: tuple[str, ...] = ("public",)

    def _tk_configure(
        self, neutral: bytes, base: tuple[str, ...], *, strict: bool, pgbouncer: bool
    ) -> None:
        self._tk_neutral = neutral
        self._tk_base = base
        self._tk_strict = strict
        self._tk_pgbouncer = pgbouncer

    def _tk_path(self) -> bytes | None:
        want = self._tk_want
        if want is None:
            if self._tk_strict:
                raise NoTenantSelected(
                    "this tenancy connection is strict and no tenant is bound to it: use "
                    "tenancy.connection(tenant), use_tenant(conn, tenant) or "
                    "tenancy.admin_connection() for shared-schema work"
                )
            want = self._tk_neutral
        return want

    def _tk_settle(self) -> None:
        # The previous transaction set a path but we did not see it commit: unknown.
        if self._tk_inflight is not None:
            self._tk_inflight = None
            self._tk_confirmed = None

    @staticmethod
    def _tk_flags(query: object, conn: psycopg.BaseConnection[Any]) -> int:
        """What a user query may do to the session: change the path, create temp objects."""
        # Cached per query text: applications repeat the same few query strings, so the
        # regexes run once per string rather than once per execution.
        key: object = query if isinstance(query, (str, bytes)) else None
        flags = _NOTE_CACHE.get(key) if key is not None else None
        if flags is None:
            flags = _scan(query, conn)
            if key is not None:
                if len(_NOTE_CACHE) > _NOTE_CACHE_MAX:
                    _NOTE_CACHE.clear()
                _NOTE_CACHE[key] = flags
        return flags

    def _tk_around_query(self, start: PQGen[None], flags: int) -> PQGen[None]:
        """Run psycopg's query start (BEGIN...), then our own steps, before the query."""
        yield from start
        local = self._tk_local
        if local is not None and self.pgconn.transaction_status == _INTRANS:
            # A use_tenant() switch made in the middle of this transaction.
            self._tk_local = None
            self._tk_active = local
            yield from super()._exec_command(b"SET LOCAL search_path TO " + local)
        # After the transaction start, so a SET ridden on this BEGIN is not confirmed later.
        if flags & _FLAG_PATH:
            self._tk_confirmed = None
            self._tk_inflight = None
            self._tk_active = None
        if flags & _FLAG_TEMP:
            self._tk_temp = True

    def _start_query(self) -> PQGen[None]:
        if self._autocommit and self.pgconn.transaction_status == _IDLE:
            return self._tk_autocommit_gen()
        return super()._start_query()

    def _tk_autocommit_gen(self) -> PQGen[None]:
        if self._tk_pgbouncer:
            if self._tk_want is not None:
                raise psycopg.ProgrammingError(
                    "pgbouncer mode sets the tenant path per transaction: use the "
                    "connection with autocommit off or inside conn.transaction()"
                )
            self._tk_active = self._tk_path()  # also the strict check
            return
        want = self._tk_path()
        self._tk_active = want
        self._tk_settle()
        if want is None or want == self._tk_confirmed:
            return
        yield from super()._exec_command(b"SET search_path TO " + want)
        # In pipeline mode the SET is only queued and may still fail: stay pessimistic.
        self._tk_confirmed = None if self._pipeline else want

    def _exec_command(
        self, command: Any, result_format: pq.Format = pq.Format.TEXT
    ) -> PQGen[PGresult | None]:
        if isinstance(command, bytes):
            if command.startswith(b"BEGIN") and command == (
                self._begin_statement or self._get_tx_start_command()
            ):
                extra = self._tk_begin_extra()
                if extra is not None:
                    return self._tk_begin_gen(command + b"; " + extra, command, extra)
            elif command == b"COMMIT" and self._tk_inflight is not None:
                return self._tk_commit_gen(command)
        return super()._exec_command(command, result_format)

    def _tk_begin_extra(self) -> bytes | None:
        # The per-transaction hot path: kept free of calls for a bound tenant.
        self._tk_local = None  # the new transaction gets its path with BEGIN
        want = self._tk_want
        if want is None:
            want = self._tk_path()
        self._prepared.path = want  # type: ignore[attr-defined]  # i.e. self._tk_active
        if want is None:
            return None
        if self._tk_pgbouncer:
            return b"SET LOCAL search_path TO " + want
        if self._tk_inflight is not None:  # self._tk_settle(), inlined
            self._tk_inflight = None
            self._tk_confirmed = None
        if want == self._tk_confirmed:
            return None
        self._tk_inflight = want
        return b"SET search_path TO " + want

    def _tk_begin_gen(self, message: bytes, begin: bytes, extra: bytes) -> PQGen[PGresult | None]:
        if self._pipeline:
            # Pipeline mode: queue both; they travel with the next sync anyway.
            yield from super()._exec_command(begin)
            yield from super()._exec_command(extra)
            return None
        self._check_connection_ok()
        # One simple-query message, two statements: the path switch rides on BEGIN.
        self.pgconn.send_query(message)
        results: list[PGresult] = yield from generators.execute(self.pgconn)
        for result in results:
            if result.status == _FATAL:
                raise pgerrors.error_from_result(result, encoding=self.info.encoding)
        return results[0] if results else None

    def _tk_commit_gen(self, command: bytes) -> PQGen[PGresult | None]:
        inflight = self._tk_inflight
        result = yield from super()._exec_command(command)
        self._tk_inflight = None
        # A COMMIT of a failed transaction answers ROLLBACK: the SET was undone.
        committed = result is not None and result.command_status == b"COMMIT"
        self._tk_confirmed = inflight if committed else None
        return result


class TenantCursor(psycopg.Cursor[Row]):
    """Cursor of :class:`TenantConnection`: lets the connection look at each query."""

    def _start_query(self, query: Any = None) -> PQGen[None]:
        conn: _TenantState = self._conn  # type: ignore[assignment]
        # A query string seen before: its flags straight from the cache, no call.
        flags = _NOTE_CACHE.get(query) if query.__class__ is str else None
        if flags is None:
            flags = conn._tk_flags(query, conn) if query is not None else 0
        start = super()._start_query(query)
        if not flags and conn._tk_local is None:  # the common case: no extra generator layer
            return start
        return conn._tk_around_query(start, flags)


class AsyncTenantCursor(psycopg.AsyncCursor[Row]):
    """Cursor of :class:`AsyncTenantConnection`: lets the connection look at each query."""

    def _start_query(self, query: Any = None) -> PQGen[None]:
        conn: _TenantState = self._conn  # type: ignore[assignment]
        # A query string seen before: its flags straight from the cache, no call.
        flags = _NOTE_CACHE.get(query) if query.__class__ is str else None
        if flags is None:
            flags = conn._tk_flags(query, conn) if query is not None else 0
        start = super()._start_query(query)
        if not flags and conn._tk_local is None:  # the common case: no extra generator layer
            return start
        return conn._tk_around_query(start, flags)


class TenantConnection(_TenantState, psycopg.Connection[Row]):
    """A ``psycopg.Connection`` that applies the bound tenant's path at transaction start.

    Pools built by :class:`~tenantkit.tenancy.Tenancy` use it; pass
    ``connection_class=TenantConnection`` to a pool of your own to get the same zero round
    trip switching.
    """

    def __init__(
        self,
        pgconn: PGconn,
        row_factory: RowFactory[Row] = tuple_row,  # type: ignore[assignment]
    ) -> None:
        super().__init__(pgconn, row_factory)
        self.cursor_factory = TenantCursor
        self._prepared = _PathPrepareManager()
        self.prepared_max = PREPARED_MAX


class AsyncTenantConnection(_TenantState, psycopg.AsyncConnection[Row]):
    """Async twin of :class:`TenantConnection` (used by ``AsyncTenancy``)."""

    def __init__(
        self,
        pgconn: PGconn,
        row_factory: AsyncRowFactory[Row] = tuple_row,  # type: ignore[assignment]
    ) -> None:
        super().__init__(pgconn, row_factory)
        self.cursor_factory = AsyncTenantCursor
        self._prepared = _PathPrepareManager()
        self.prepared_max = PREPARED_MAX
