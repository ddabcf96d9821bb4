"""Connection classes that apply a tenant's ``search_path`` with zero extra round trips.

How it works (the reasons behind :class:`TenantConnection`):

* A connection carries the path it *wants* (``_tk_want``, set by ``Tenancy.connection()`` or
  ``use_tenant()``). When psycopg starts a transaction it sends ``BEGIN``; we append
  ``SET LOCAL search_path TO ...`` to that same simple-query message, so the switch costs no
  extra round trip, and the path lasts exactly as long as the transaction.
* The path is set on **every** transaction; nothing is cached between transactions. A cached
  session path cannot be trusted: ``set_config('search_path', ..., false)`` with the name
  passed as a parameter, or inside a function, changes it without the query text saying so
  (PostgreSQL 15 does not report ``search_path`` changes to the client). A ``SET LOCAL``
  costs one short statement inside the message we send anyway; ``benchmarks/switch.py``
  measures it. The ``SET LOCAL`` sent with ``BEGIN`` precedes every savepoint of its
  transaction, so ``ROLLBACK TO SAVEPOINT`` cannot undo it. A switch in the middle of a
  transaction (``use_tenant()``) is sent with the next statement and may land inside a
  savepoint: after a ``ROLLBACK TO`` (psycopg's or in SQL) it is sent again.
* Autocommit statements have no transaction to ride on: each is preceded by a session-level
  ``SET search_path`` (one round trip) for the same reason.
* One exception, opted into by an integration that sees every statement of its connections
  (``tenantkit.django``'s backend: ``session_path=True``): the session path is remembered
  (``_tk_session``) and not sent again while it is known to hold. It is set at session level
  (in autocommit, or with ``BEGIN`` and known only once that ``COMMIT`` succeeded), and
  forgotten on a failure, a rollback that may undo it, and before any statement whose text
  may change it (:func:`may_change_path`: ``search_path``, ``set_config``, ``SET``, ``RESET``,
  ``DISCARD``, ``COPY`` or SQL it cannot read). What text cannot show is a server-side
  function whose body changes the session path: the first statement of each connection, and
  one a minute after (``SESSION_PATH_RECHECK``), asks for such functions in its own message
  (with the pooler check); if one exists, or the connection defines one, the connection
  leaves the mode for good and logs a warning. Off unless asked for, never with ``pgbouncer``.
* Temporary objects never pass from one borrower or tenant to the next, whatever created them
  (a function can create a temp table without the query text saying so). When a connection
  changes hands or tenants (pool return, ``use_tenant()``), ``_tk_discard`` is set and the next
  transaction's message carries ``DISCARD TEMP`` too; the flag is cleared only when that
  transaction commits (a rollback would restore the temp objects). In ``pgbouncer`` mode every
  transaction starts with ``DISCARD TEMP`` and every ``COMMIT`` is preceded by one, since the
  next transaction may run on a server connection another client used.
* Default mode is not safe behind a transaction pooler (temp objects and autocommit paths live
  on a server connection that changes between transactions). The first transaction of each
  connection also asks for ``pg_backend_pid()``, in the same message: a pooler hands the client
  a cancel key of its own, so a mismatch with the backend PID psycopg was told at connect time
  means a pooler sits in between, and the connection refuses to run
  (:class:`~tenantkit.errors.PoolerDetected`).
* A pooled connection that nobody bound wants the neutral path (shared schema, extras,
  ``pg_temp``); with ``strict`` it refuses to run anything instead
  (:class:`~tenantkit.errors.NoTenantSelected`).
* Prepared statements are keyed by query *and* path: PostgreSQL re-plans a prepared statement
  whenever the ``search_path`` differs from the one it was planned with, so one statement per
  tenant path keeps each tenant's plan cached (correctness never depends on this). ``pgbouncer``
  mode turns server-side prepared statements off (pgbouncer < 1.21 cannot route them).

The hooks override psycopg internals listed and checked in :mod:`tenantkit.core._psycopg_contract`
(``_start_query`` and ``_exec_command``, the only places where psycopg starts and ends
transactions). If psycopg ever starts a transaction without calling them, the first query
raises instead of running on an unknown path.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq, sql
from psycopg.abc import PQGen
from psycopg.pq.abc import PGconn, PGresult
from psycopg.rows import AsyncRowFactory, Row, RowFactory, tuple_row

from ..errors import HookNotRun, NoTenantSelected, PoolerDetected
from ._psycopg_contract import PostgresQuery, PrepareManager, check_instance, execute_gen

__all__ = ["AsyncTenantConnection", "AsyncTenantCursor", "TenantConnection", "TenantCursor"]

#: Prepared statements kept per connection (psycopg's default is 100). Statements are kept
#: per tenant path, so a connection serving many tenants needs room for more of them.
PREPARED_MAX = 512

_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_FATAL = pq.ExecStatus.FATAL_ERROR
_TUPLES_OK = pq.ExecStatus.TUPLES_OK

_SET_LOCAL = b"SET LOCAL search_path TO "
_SET_SESSION = b"SET search_path TO "
_DISCARD = b"DISCARD TEMP"
_PID = b"SELECT pg_catalog.pg_backend_pid()"
#: session_path mode, once per connection with the pooler check: functions whose body may
#: change the session's search_path (a SET clause on the function restores it on return).
_PATH_FUNCTIONS = (
    b"SELECT pg_catalog.string_agg(p.oid::pg_catalog.regprocedure::text, ', ') "
    b"FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
    b"WHERE l.lanname NOT IN ('internal', 'c') "
    b"AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace "
    b"AND p.prosrc OPERATOR(pg_catalog.~*) 'search_path|set_config' "
    b"AND NOT EXISTS (SELECT FROM pg_catalog.unnest(p.proconfig) AS c "
    b"WHERE c OPERATOR(pg_catalog.~~) 'search\\_path=%')"
)

#: session_path mode: seconds between two checks for such functions on one connection (one
#: created by another connection is found within this time).
SESSION_PATH_RECHECK = 60.0

logger = logging.getLogger("tenantkit.core")


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
    _tk_strict: bool = False
    _tk_pgbouncer: bool = False
    #: Temporary objects of another borrower or tenant may be on the connection: discard them
    #: before anything else runs.
    _tk_discard: bool = False
    #: The running transaction discarded them; its commit clears ``_tk_discard``.
    _tk_discard_inflight: bool = False
    #: The pooler check ran (default mode): the server PID matches the connect-time PID.
    _tk_verified: bool = False
    #: A pooler was detected: every further use raises.
    _tk_pooled: bool = False
    #: Our transaction-start hook ran for the query being started.
    _tk_began: bool = False
    #: Path to apply with SET LOCAL before the next query of the running transaction
    #: (a switch made by use_tenant() in the middle of a transaction).
    _tk_local: bytes | None = None
    #: This transaction switched paths after its start: the SET LOCAL may sit inside a
    #: savepoint, and a ``ROLLBACK TO`` would bring the previous tenant's path back.
    _tk_switched: bool = False
    #: A ``ROLLBACK TO`` ran after a switch: send the wanted path again before the next query.
    _tk_rearm: bool = False
    #: Remember the session path (``session_path=True``): a known path is not sent again.
    _tk_cache: bool = False
    #: The session's search_path as far as we know it for certain (None: unknown).
    _tk_session: bytes | None = None
    #: Session path the running transaction set: it holds once its COMMIT succeeds.
    _tk_pending: bytes | None = None
    #: The statement being started may change the session path: learn nothing from it.
    _tk_tainted: bool = False
    #: When the pooler and function checks run again (session_path mode; monotonic clock).
    _tk_recheck_at: float = 0.0
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

    def _tk_init(self) -> None:
        """The end of ``__init__``: check psycopg's internals, key prepared statements by path."""
        check_instance(self)
        self._prepared = _PathPrepareManager()
        self.prepared_max = PREPARED_MAX

    def _tk_configure(
        self,
        neutral: bytes,
        base: tuple[str, ...],
        *,
        strict: bool,
        pgbouncer: bool,
        prepare: bool | None = None,
        session_path: bool = False,
    ) -> None:
        self._tk_neutral = neutral
        self._tk_base = base
        self._tk_strict = strict
        self._tk_pgbouncer = pgbouncer
        # Behind a transaction pooler the session is not ours between transactions.
        self._tk_cache = session_path and not pgbouncer
        self._tk_session = self._tk_pending = None
        if prepare is None:
            prepare = not pgbouncer
        if not prepare:
            # pgbouncer < 1.21 routes each statement to any server connection: a statement
            # prepared on one is missing on the next ("prepared statement _pg3_N does not
            # exist"). pgbouncer 1.21+ with max_prepared_statements can keep them.
            self.prepare_threshold = None

    def _tk_bind(self, path: bytes | None) -> None:
        """Bind the connection to a path for the next transactions (None: unbind).

        A change of hands or tenant: temporary objects made so far must not be seen.
        """
        self._tk_want = path
        self._tk_discard = True
        if self.pgconn.transaction_status != _IDLE:
            self._tk_local = path or self._tk_neutral
        else:
            self._tk_local = None

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

    def _tk_refuse_pooled(self) -> None:
        if self._tk_pooled:
            raise PoolerDetected(
                "this connection goes through a connection pooler (pgbouncer or similar): "
                "tenantkit's default mode keeps temporary tables and autocommit paths on the "
                "server connection, which a transaction pooler swaps between transactions, "
                "and a client cannot tell the pooling modes apart. Build the tenancy with "
                "pgbouncer=True (safe in every pooling mode), or connect to PostgreSQL directly"
            )

    def _tk_exchange(self, message: bytes) -> PQGen[list[PGresult]]:
        """Send one simple-query message (several statements) and collect its results;
        raise the first error."""
        self._check_connection_ok()
        self.pgconn.send_query(message)
        results: list[PGresult] = yield from execute_gen(self.pgconn)
        for result in results:
            if result.status == _FATAL:
                raise pgerrors.error_from_result(result, encoding=self.info.encoding)
        return results

    def _tk_send(self, parts: list[bytes], check_pid: bool) -> PQGen[PGresult | None]:
        """Send ``parts`` as one simple-query message; check the pooler PID if asked.

        The first check of a connection in ``session_path`` mode also asks for the functions
        that would make a remembered path unsafe (see :meth:`_tk_guard`).
        """
        if self._pipeline:
            # Pipeline mode: queue each; they travel with the next sync anyway. No PID check
            # (its result would be discarded): it runs on the next non-pipeline transaction.
            for part in parts:
                yield from super()._exec_command(part)
            return None
        guard = check_pid and self._tk_cache
        if guard:
            parts = [*parts, _PATH_FUNCTIONS]
        results = yield from self._tk_exchange(b"; ".join(parts))
        if guard and results:
            self._tk_guard(results.pop())
        if check_pid and results and results[-1].status == _TUPLES_OK:
            value = results[-1].get_value(0, 0)
            if value is not None and int(value) != self.pgconn.backend_pid:
                self._tk_pooled = True
                self._tk_refuse_pooled()
            self._tk_verified = True
            self._tk_recheck_at = time.monotonic() + SESSION_PATH_RECHECK
        return results[0] if results else None

    def _tk_guard(self, result: PGresult) -> None:
        """Stop remembering the session path if a function could change it unseen."""
        found = result.get_value(0, 0) if result.status == _TUPLES_OK else b"?"
        if found:
            self._tk_forget_for_good(
                "functions whose body may change the session's search_path exist: "
                + bytes(found).decode("utf-8", "replace")
            )

    def _tk_forget_for_good(self, why: str) -> None:
        """Leave ``session_path`` mode on this connection: the path goes with every statement."""
        if self._tk_cache:
            self._tk_cache = False
            self._tk_session = self._tk_pending = None
            logger.warning(
                "tenantkit: this connection sends the tenant's search_path with every "
                "statement instead of remembering it (%s). Give such functions a "
                "'SET search_path' clause, which PostgreSQL restores on return.",
                why,
            )

    def _tk_around_query(self, start: PQGen[None]) -> PQGen[None]:
        """Run psycopg's query start (BEGIN...), check our hook ran, then our own steps."""
        idle = self.pgconn.transaction_status == _IDLE
        if idle:
            self._tk_began = False
        yield from start
        if idle and not self._tk_began:
            raise HookNotRun(
                f"psycopg {psycopg.__version__} started a transaction without tenantkit's "
                "hook, so the tenant's search_path is unknown: nothing was run. Install a "
                "psycopg release supported by tenantkit (see tenantkit.core._psycopg_contract)"
            )
        local = self._tk_local
        if local is not None and self.pgconn.transaction_status == _INTRANS:
            # A use_tenant() switch made in the middle of this transaction.
            self._tk_local = None
            self._tk_switched = True
            self._tk_active = local
            parts = [_SET_LOCAL + local]
            if self._tk_discard or self._tk_pgbouncer:
                parts.append(_DISCARD)
                self._tk_discard_inflight = True
            yield from self._tk_send(parts, check_pid=False)

    def _start_query(self) -> PQGen[None]:
        if self._autocommit and self.pgconn.transaction_status == _IDLE:
            return self._tk_autocommit_gen()
        return super()._start_query()

    def _tk_autocommit_gen(self) -> PQGen[None]:
        self._tk_began = True
        self._tk_refuse_pooled()
        if self._tk_pgbouncer:
            # No transaction to carry SET LOCAL, and a session SET would land on whichever
            # server connection the pooler picks: the statement's path would be unknown.
            self._tk_path()  # the strict check first, for its clearer message
            raise psycopg.ProgrammingError(
                "pgbouncer mode sets the search_path per transaction: use the connection with "
                "autocommit off or inside conn.transaction() (for statements that cannot run "
                "in a transaction, use a plain psycopg connection with qualified names)"
            )
        want = self._tk_path()
        self._tk_active = want
        if want is None:  # a plain, unconfigured connection
            return
        # Unless the session path is known to hold (session_path mode), it may have been
        # changed by anything since: set it every time.
        known = self._tk_cache and self._tk_session == want
        parts = [] if known else [_SET_SESSION + want]
        discard = self._tk_discard
        if discard:
            parts.append(_DISCARD)
        check = not self._tk_verified
        if check:
            parts.append(_PID)
        if not parts:
            return
        if not known:
            self._tk_session = None  # unknown until the SET is seen to succeed
        yield from self._tk_send(parts, check_pid=check)
        if not self._pipeline:
            if discard:
                self._tk_discard = False
            if self._tk_cache and not self._tk_tainted:
                self._tk_session = want

    def _exec_command(
        self, command: Any, result_format: pq.Format = pq.Format.TEXT
    ) -> PQGen[PGresult | None]:
        if isinstance(command, bytes):
            if command.startswith(b"BEGIN") and command == (
                self._begin_statement or self._get_tx_start_command()
            ):
                return self._tk_begin_gen(command)
            if command == b"COMMIT":
                if self._tk_pgbouncer:
                    return self._tk_commit_gen(command, discard=True)
                if self._tk_discard_inflight or self._tk_cache:
                    # Its outcome settles the discard, and a path set with BEGIN.
                    return self._tk_commit_gen(command, discard=False)
            elif command == b"ROLLBACK":
                self._tk_discard_inflight = False
                self._tk_pending = None
        if self._tk_switched and _rolls_back_to(command, self):
            # A savepoint rolled back (psycopg's transaction blocks send ROLLBACK TO here): it
            # may have held the switch's SET LOCAL.
            self._tk_rearm = True
        return super()._exec_command(command, result_format)

    def _tk_begin_gen(self, begin: bytes) -> PQGen[PGresult | None]:
        # The per-transaction hot path: one message, BEGIN and the path (and, when needed,
        # the temp-object discard and the one-time pooler check).
        self._tk_began = True
        self._tk_local = None  # the new transaction gets its path with BEGIN
        self._tk_switched = self._tk_rearm = False
        self._tk_refuse_pooled()
        want = self._tk_want
        if want is None:
            want = self._tk_path()
        self._prepared.path = want  # type: ignore[attr-defined]  # i.e. self._tk_active
        if want is None:  # a plain, unconfigured connection
            return super()._exec_command(begin)
        if self._tk_cache:
            # session_path mode: a known session path is not sent again; otherwise it is set
            # for the session, and known once this transaction's COMMIT succeeds.
            parts = [begin]
            if self._tk_session != want:
                parts.append(_SET_SESSION + want)
                self._tk_session = None
            self._tk_pending = None if self._tk_tainted else want
        else:
            parts = [begin, _SET_LOCAL + want]
        if self._tk_pgbouncer:
            parts.append(_DISCARD)
            return self._tk_send(parts, check_pid=False)
        if self._tk_discard:
            parts.append(_DISCARD)
            self._tk_discard_inflight = True
        check = not self._tk_verified
        if check:
            parts.append(_PID)
        if len(parts) == 1:
            return super()._exec_command(begin)
        return self._tk_send(parts, check_pid=check)

    def _tk_commit_gen(self, command: bytes, *, discard: bool) -> PQGen[PGresult | None]:
        inflight = self._tk_discard_inflight
        self._tk_discard_inflight = False
        if discard and self.pgconn.transaction_status == _INTRANS and not self._pipeline:
            # pgbouncer mode: temp objects must not outlive the transaction, as the next one
            # may run on another server connection. One message, no extra round trip.
            results = yield from self._tk_exchange(_DISCARD + b"; " + command)
            result = results[-1] if results else None
        else:
            result = yield from super()._exec_command(command)
        # A COMMIT of a failed transaction answers ROLLBACK: the discard was undone, and
        # a session path set with BEGIN too.
        pending = self._tk_pending
        self._tk_pending = None
        if result is not None and result.command_status == b"COMMIT":
            if inflight:
                self._tk_discard = False
            if pending is not None:
                self._tk_session = pending
        return result


#: ``ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`` sent as SQL.
_ROLLBACK_TO = re.compile(rb"\s*rollback\s+((work|transaction)\s+)?to\b", re.IGNORECASE)


def _rolls_back_to(query: Any, conn: psycopg.BaseConnection[Any]) -> bool:
    """Whether ``query`` is a ``ROLLBACK TO`` (as text, bytes or composed SQL)."""
    if isinstance(query, str):
        query = query.encode()
    elif isinstance(query, sql.Composable):
        query = query.as_bytes(conn)  # psycopg's own: ROLLBACK TO "_pg3_1"
    return isinstance(query, bytes) and _ROLLBACK_TO.match(query) is not None


#: Text that may change the session's search_path: the name itself, ``set_config``, and any
#: statement starting with SET, RESET or DISCARD (after ``;``, spaces or comments).
_MAY_CHANGE_PATH = re.compile(
    r"search_path|set_config|\bu&[\"']|(?:^|;)(?:\s|/\*.*?\*/|--[^\n]*\n)*(?:set|reset|discard)\b",
    re.IGNORECASE | re.DOTALL,
)


#: A statement that defines or alters a routine (tainted ones only are checked).
_DEFINES_ROUTINE = re.compile(r"\b(?:function|procedure)\b", re.IGNORECASE)


def may_change_path(query: Any) -> bool:
    """Whether running ``query`` may change the session's ``search_path``, as far as its text
    tells: deliberately broad (any ``SET``, ``RESET`` or ``DISCARD`` statement, any mention of
    ``search_path`` or ``set_config``, Unicode-escaped names, ``COPY`` or a query given as
    composed SQL). A false alarm costs one ``SET`` on the next statement, a miss a stale path.
    """
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    elif not isinstance(query, str):
        return True
    # On every statement of a remembered path: plain substring tests first (the regular
    # expression alone cost ~5 us on a typical ORM query); it decides the few that remain.
    lower = query.lower()
    if "search_path" in lower or "set_config" in lower or "u&" in lower:
        return True
    if ";" not in lower and not lower.lstrip().startswith(("set", "reset", "discard", "/*", "--")):
        return False
    return _MAY_CHANGE_PATH.search(lower) is not None


def note_statement(conn: Any, query: Any) -> None:
    """Before ``query`` runs on a connection in ``session_path`` mode: forget the remembered
    path if the query may change it (and leave the mode for good if it defines a routine that
    could); a recheck for such functions, when one is due, goes with this statement."""
    tk: _TenantState = conn
    if tk._tk_verified and time.monotonic() >= tk._tk_recheck_at:
        # Look for functions that could change the path unseen again (with the pooler
        # check, in the message of this statement's start).
        tk._tk_verified = False
    if may_change_path(query):
        tk._tk_tainted = True
        tk._tk_session = tk._tk_pending = None
        if _DEFINES_ROUTINE.search(query if isinstance(query, str) else str(query)):
            # A function that may change the path from now on, unseen by every later
            # statement that calls it.
            tk._tk_forget_for_good("this connection defined a routine that mentions it")
    else:
        tk._tk_tainted = False


def _checked_start(
    conn: psycopg.BaseConnection[Any], start: PQGen[None], query: Any = None
) -> PQGen[None]:
    """The query start of a tenant cursor (sync or async: it is a generator either way)."""
    tk: _TenantState = conn  # type: ignore[assignment]
    if tk._tk_cache:
        note_statement(tk, query)
    if tk._tk_rearm:
        # The statement before was a ROLLBACK TO after a switch: the switch may be undone.
        tk._tk_rearm = False
        if tk.pgconn.transaction_status == _INTRANS:
            tk._tk_local = tk._tk_want or tk._tk_neutral
    if tk._tk_switched and _rolls_back_to(query, conn):
        tk._tk_rearm = True  # after it ran: the SET LOCAL would be rolled back too
    # The common case, a query inside a running transaction: no extra generator layer.
    if tk._tk_local is None and tk.pgconn.transaction_status == _INTRANS:
        return start
    return tk._tk_around_query(start)


class TenantCursor(psycopg.Cursor[Row]):
    """Cursor of :class:`TenantConnection`: lets the connection check each transaction start."""

    def _start_query(self, query: Any = None) -> PQGen[None]:
        return _checked_start(self._conn, super()._start_query(query), query)


class AsyncTenantCursor(psycopg.AsyncCursor[Row]):
    """Cursor of :class:`AsyncTenantConnection`: lets the connection check each start."""

    def _start_query(self, query: Any = None) -> PQGen[None]:
        return _checked_start(self._conn, super()._start_query(query), query)


class TenantConnection(_TenantState, psycopg.Connection[Row]):
    """A ``psycopg.Connection`` that applies the bound tenant's path at transaction start.

    Pools built by :class:`~tenantkit.core.tenancy.Tenancy` use it; pass
    ``connection_class=TenantConnection`` to a pool of your own to get the same zero round
    trip switching.
    """

    def __init__(self, pgconn: PGconn, row_factory: RowFactory[Row] = tuple_row) -> None:  # type: ignore[assignment]
        super().__init__(pgconn, row_factory)
        self.cursor_factory = TenantCursor
        self._tk_init()


class AsyncTenantConnection(_TenantState, psycopg.AsyncConnection[Row]):
    """Async twin of :class:`TenantConnection` (used by ``AsyncTenancy``)."""

    def __init__(self, pgconn: PGconn, row_factory: AsyncRowFactory[Row] = tuple_row) -> None:  # type: ignore[assignment]
        super().__init__(pgconn, row_factory)
        self.cursor_factory = AsyncTenantCursor
        self._tk_init()
