"""Bringing one schema to the head: the unit every executor and the provisioner run.

Each run of consecutive transactional migrations commits in one transaction together with
the schema's history rows and its central summary row, under a per-schema
advisory lock taken before the history is read: a second migrator waits, then sees the rows
the first committed and applies nothing. A killed backend rolls the whole group back, so a
schema is always at its old or its new version.

Locks and settings are transaction-scoped (``pg_advisory_xact_lock``, ``set_config(..., true)``),
so the engine works through a transaction pooler (pgbouncer), which hands each transaction to
any server connection. The one exception is a non-transactional migration (``CREATE INDEX
CONCURRENTLY``): it must run outside a transaction, so its lock and search_path can only be
session-level, and it refuses to run through a pooler (``PoolerDetected``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus

from ..core.storage import HISTORY_TABLE, tables
from ..errors import MigrationChecksumMismatch, MigrationError, PoolerDetected
from ._loader import Kind, Migration, after_sql, migrations_digest
from ._report import SchemaKind, SchemaResult, Status
from ._tracking import LOCK_NAMESPACE, ensure_tracking_table, schema_lock_key

__all__ = [
    "INTERRUPTED",
    "apply_schema",
    "behind_pooler",
    "check_checksums",
    "hook_sql",
    "pooler_error",
    "record_applied",
    "record_sql",
    "search_path_value",
]

#: ``SchemaResult.error`` of a schema a graceful stop (Ctrl-C, SIGTERM) left unfinished.
INTERRUPTED = "interrupted"

#: Makes the context manager inside which a statement must not be cancelled.
Shield = Callable[[], AbstractContextManager[object]]


def behind_pooler(conn: psycopg.Connection[Any]) -> bool:
    """True when ``conn`` reaches PostgreSQL through a connection pooler (pgbouncer...).

    One query: the server process that answers is not the one the connection was opened
    with (a pooler hands out its own process id and cancel key at login).
    """
    row = conn.execute("select pg_catalog.pg_backend_pid()").fetchone()
    return row is not None and int(row[0]) != conn.pgconn.backend_pid


def pooler_error(migration: str) -> PoolerDetected:
    """The error for a non-transactional migration about to run through a pooler."""
    return PoolerDetected(
        f"migration {migration!r} is non-transactional and this connection goes through a "
        "connection pooler (pgbouncer or similar): it has to run outside a transaction, under "
        "a session-level lock and search_path, which a transaction pooler would leave on "
        "another server connection. Run the migrations over a direct connection to "
        "PostgreSQL: migrate(conninfo=<direct conninfo>), or `tenantkit --dsn <direct DSN> "
        "migrate` (PostgreSQL's own host and port, not the pooler's)"
    )


def search_path_value(conn: Any, schema: str, shared: str) -> str:
    """The search_path text for migrating ``schema``: the schema, the shared one, pg_temp.

    ``conn`` (sync or async) only serves for quoting.
    """
    if schema == shared:
        return sql.SQL("{}, pg_temp").format(sql.Identifier(schema)).as_string(conn)
    return (
        sql.SQL("{}, {}, pg_temp")
        .format(sql.Identifier(schema), sql.Identifier(shared))
        .as_string(conn)
    )


def check_checksums(
    schema: str, applied: Sequence[tuple[str, str]], migrations: Sequence[Migration]
) -> None:
    """Raise ``MigrationChecksumMismatch`` if an applied migration's file has changed."""
    by_id = {m.id: m for m in migrations}
    for mid, checksum in applied:
        m = by_id.get(mid)
        if m is not None and m.checksum != checksum:
            raise MigrationChecksumMismatch(
                f"migration {mid!r} ({m.path}) changed after it was applied to schema "
                f"{schema!r}: restore the file, or add a new migration instead of editing "
                "an applied one",
                schema=schema,
                migration=mid,
            )


def state_digest(applied_ids: Sequence[str], migrations: Sequence[Migration]) -> str:
    """Digest of what is applied, over the files that still exist, in file order."""
    done = set(applied_ids)
    return migrations_digest((m.id, m.checksum) for m in migrations if m.id in done)


def hook_sql(
    schema: str,
    kind: SchemaKind,
    migrations: Sequence[Migration],
    before_ids: Sequence[str],
    group: Sequence[Migration],
) -> sql.Composable | None:
    """The migration source's ``after_schema`` SQL for ``group`` just applied on top of
    ``before_ids`` in ``schema`` (None when the source has no hook, or nothing is new)."""
    if not group:
        return None
    source, hook_kind, applied = _hook_args(kind, migrations, before_ids, group)
    if source is None:
        return None
    return after_sql(source, hook_kind, schema, applied, [m.id for m in group])


def _hook_args(
    kind: SchemaKind,
    migrations: Sequence[Migration],
    before_ids: Sequence[str],
    group: Sequence[Migration],
) -> tuple[Any, Kind, tuple[str, ...]]:
    """The migration source, and the kind and applied IDs (in file order) its
    ``after_schema`` hook is called with once ``group`` is applied on top of ``before_ids``."""
    source = next((m.source for m in migrations if m.source is not None), None)
    done = {*before_ids, *(m.id for m in group)}
    applied = tuple(m.id for m in migrations if m.id in done)
    return source, "shared" if kind == "shared" else "tenant", applied


def record_sql(
    schema: str,
    shared: str,
    *,
    history: bool = True,
    values: Mapping[str, sql.Composable] | None = None,
) -> sql.Composed:
    """One statement writing the history rows and the summary row.

    Its values are the named parameters ``ids``, ``sums``, ``durs``, ``schema``, ``kind``,
    ``all_ids``, ``all_sums`` and ``digest``, or, given ``values``, those SQL fragments
    (literals rendered beforehand).
    """
    v: Mapping[str, sql.Composable] = values or _RECORD_PLACEHOLDERS
    parts: list[sql.Composable] = []
    if history:
        parts.append(
            sql.SQL(
                "h as (insert into {table} (id, checksum, duration_ms) "
                # A null duration (a migration sent in the same message as this statement)
                # is measured by the server: the message arrived at statement_timestamp().
                "select id, sum, coalesce(d, 1000 * extract(epoch from "
                "clock_timestamp() - statement_timestamp())::float8) "
                "from unnest({ids}::text[], {sums}::text[], {durs}::float8[]) "
                "as u(id, sum, d) returning duration_ms)"
            ).format(table=sql.Identifier(schema, HISTORY_TABLE), **v)
        )
    parts.append(
        sql.SQL(
            "s as (insert into {state} "
            "(schema, kind, applied, checksums, digest, updated_at) "
            "values ({schema}, {kind}, {all_ids}, {all_sums}, {digest}, now()) "
            "on conflict (schema) do update set kind = excluded.kind, "
            "applied = excluded.applied, checksums = excluded.checksums, "
            "digest = excluded.digest, updated_at = now())"
        ).format(state=tables(shared)["state"], **v)
    )
    return sql.SQL("with {} select 1").format(sql.SQL(", ").join(parts))


_RECORD_PLACEHOLDERS: dict[str, sql.Composable] = {
    name: sql.Placeholder(name)
    for name in ("ids", "sums", "durs", "schema", "kind", "all_ids", "all_sums", "digest")
}


class _Failure(Exception):
    """Carries the ID of the migration that was running when something raised."""

    def __init__(self, migration: str | None, cause: BaseException):
        self.migration = migration
        self.cause = cause
        super().__init__(str(cause))


def apply_schema(
    conn: psycopg.Connection[Any],
    *,
    schema: str,
    kind: SchemaKind,
    shared: str,
    migrations: Sequence[Migration],
    hint: Sequence[str] | None = None,
    stop: Callable[[], bool] | None = None,
    shield: Shield = contextlib.nullcontext,
) -> SchemaResult:
    """Apply what is pending in ``schema`` and return the outcome; never raises for a failure
    of the schema's own migrations (they are reported), only for a broken connection.

    ``conn`` must be in autocommit mode: transactional groups open their own transaction and
    non-transactional migrations need to run outside one. ``hint``, the IDs the plan found
    pending, enables the one-round-trip path. ``stop`` (a graceful stop, e.g. Ctrl-C) is asked
    before each transaction: once it is true no other transaction starts, and a statement
    cancelled for it (``conn.cancel_safe()`` from another thread) is reported with the error
    ``"interrupted"``, not as a failure. A non-transactional migration runs inside ``shield()``,
    during which whoever cancels must not (see :class:`~._executors.Worker`).
    """
    t0 = time.perf_counter()
    applied: list[str] = []

    def interrupted() -> SchemaResult:
        status: Status = "applied" if applied else "skipped"
        dur = time.perf_counter() - t0
        return SchemaResult(schema, kind, status, tuple(applied), dur, error=INTERRUPTED)

    try:
        # Spares need their pool row locked as well: they always take the careful path.
        slow = kind == "spare" or (
            _fast_step(conn, schema, kind, shared, migrations, applied, hint) is not None
        )
        while slow:
            if stop is not None and stop():
                return interrupted()
            step = _apply_step(conn, schema, kind, shared, migrations, applied, stop, shield)
            if step is None:
                break
            if step == "vanished":
                return SchemaResult(
                    schema,
                    kind,
                    "skipped",
                    tuple(applied),
                    time.perf_counter() - t0,
                    error="the schema no longer exists (dropped, or a spare that was claimed)",
                )
    except _Failure as exc:
        cause = exc.cause
        if isinstance(cause, psycopg.OperationalError) and conn.closed:
            raise cause from None
        if isinstance(cause, pg_errors.QueryCanceled) and stop is not None and stop():
            return interrupted()
        return SchemaResult(
            schema,
            kind,
            "failed",
            tuple(applied),
            time.perf_counter() - t0,
            error=f"{type(cause).__name__}: {cause}".strip(),
            migration=exc.migration,
        )
    return SchemaResult(
        schema, kind, "applied" if applied else "current", tuple(applied), time.perf_counter() - t0
    )


def _fast_step(
    conn: psycopg.Connection[Any],
    schema: str,
    kind: SchemaKind,
    shared: str,
    migrations: Sequence[Migration],
    applied: list[str],
    hint: Sequence[str] | None,
) -> str | None:
    """The common case in one round trip; returns None when done, "slow" to hand over to
    :func:`_apply_step`, which also re-runs a failed attempt to say which migration failed.

    ``hint`` is what the plan found pending. One message carries ``BEGIN``, the advisory lock
    and search_path, a guard statement, every pending migration, the bookkeeping statement and
    ``COMMIT``. The guard runs after the lock is granted (each statement of a message takes its
    own snapshot) and aborts the transaction unless the schema's history is exactly what the
    plan expected, so a concurrent migrator or a stale summary only costs a retry on the
    careful path. Sending the bare DDL in its own transaction takes three round trips.
    """
    if not hint:
        return "slow"
    batch = _batch(conn, kind, shared, migrations, hint)
    if batch is None:
        return "slow"
    head = sql.SQL(
        "begin;\n"
        "select pg_advisory_xact_lock({ns}, {key}), set_config('search_path', {path}, true);\n"
        # clock_timestamp() keeps the planner from folding the failing cast into every plan.
        "select case when coalesce((select array_agg(id || ':' || checksum order by id "
        "collate \"C\") from {history}), '{{}}') = {expected}::text[] then null "
        "else ({marker} || clock_timestamp())::int end;\n"
    ).format(
        ns=_LOCK_NAMESPACE,
        key=sql.Literal(schema_lock_key(schema)),
        path=sql.Literal(search_path_value(conn, schema, shared)),
        history=sql.Identifier(schema, HISTORY_TABLE),
        expected=batch.expected,
        marker=_GUARD_MARKER_SQL,
    )
    record = record_sql(schema, shared, values={**batch.values, "schema": sql.Literal(schema)})
    hook = after_sql(batch.source, batch.hook_kind, schema, batch.hook_applied, batch.pending_ids)
    message = b"".join(
        [
            head.as_bytes(conn),
            batch.ddl,
            record.as_bytes(conn),
            b";\n" + hook.as_bytes(conn) if hook is not None else b"",
            b";\ncommit",
        ]
    )
    try:
        conn.execute(message)
    except psycopg.Error as exc:
        if conn.closed:
            raise _Failure(
                batch.pending_ids[0] if len(batch.pending_ids) == 1 else None, exc
            ) from exc
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        elif _committed(conn, schema, batch.pending_ids):
            applied.extend(batch.pending_ids)
            return None
        return "slow"
    applied.extend(batch.pending_ids)
    return None


def _committed(conn: psycopg.Connection[Any], schema: str, ids: Sequence[str]) -> bool:
    """After an error that left no transaction open: whether the transaction that applied
    ``ids`` committed anyway. The error came before its ``BEGIN`` took effect, at a
    ``COMMIT`` that failed (a deferred constraint), or after the ``COMMIT`` succeeded: a
    cancel (Ctrl-C, ``stop()``) that reached the server as it committed is reported on the
    statement it interrupted. The schema's history tells which, so the run reports the
    truth."""
    try:
        row = conn.execute(
            sql.SQL("select count(*) from {} where id = any(%s)").format(
                sql.Identifier(schema, HISTORY_TABLE)
            ),
            (list(ids),),
        ).fetchone()
    except psycopg.Error:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        return False
    return row is not None and row[0] == len(ids)


@dataclass(frozen=True)
class _Batch:
    """What :func:`_fast_step` sends alike to every schema with the same migrations applied
    and pending, rendered once: per schema only its names are filled in. (Adapting the lists
    of IDs and checksums to literals cost more than everything else in the message.)"""

    migrations: Sequence[Migration]
    pending_ids: tuple[str, ...]
    #: The guard's expected history, as a literal.
    expected: sql.Composable
    #: The pending migrations' SQL, encoded.
    ddl: bytes
    #: :func:`record_sql`'s values but ``schema``, as literals.
    values: dict[str, sql.Composable]
    #: The migration source, and its ``after_schema`` hook's kind and applied IDs.
    source: Any
    hook_kind: Kind
    hook_applied: tuple[str, ...]


#: Batches by (id of the migration list, kind, shared schema, encoding, pending IDs). A worker
#: applies one plan, so a handful at most (cleared when it grows past ``_BATCHES``).
_batches: dict[tuple[int, str, str, str, tuple[str, ...]], _Batch] = {}
_BATCHES = 64


def _batch(
    conn: psycopg.Connection[Any],
    kind: SchemaKind,
    shared: str,
    migrations: Sequence[Migration],
    hint: Sequence[str],
) -> _Batch | None:
    """The batch for ``hint`` pending in ``migrations``, or None when the pending ones cannot
    go in one message (a non-transactional one, or one that only runs from Python)."""
    key = (id(migrations), kind, shared, conn.info.encoding, tuple(hint))
    found = _batches.get(key)
    # The batch holds the list, so its id cannot be reused while cached.
    if found is not None and found.migrations is migrations:
        return found
    wanted = set(hint)
    pending = [m for m in migrations if m.id in wanted]
    if not pending or any(not m.transactional or m.sql is None for m in pending):
        return None
    before = [m for m in migrations if m.id not in wanted]
    before_ids = [m.id for m in before]
    encoding = conn.info.encoding
    params = _record_params(kind, migrations, before_ids, pending, [None] * len(pending))
    source, hook_kind, hook_applied = _hook_args(kind, migrations, before_ids, pending)

    def literal(value: Any) -> sql.Composable:
        return sql.SQL(sql.Literal(value).as_string(conn))

    batch = _Batch(
        migrations=migrations,
        pending_ids=tuple(m.id for m in pending),
        expected=literal(sorted(f"{m.id}:{m.checksum}" for m in before)),
        ddl=b"".join(m.sql.encode(encoding) + b"\n;\n" for m in pending if m.sql is not None),
        values={name: literal(value) for name, value in params.items()},
        source=source,
        hook_kind=hook_kind,
        hook_applied=hook_applied,
    )
    if len(_batches) >= _BATCHES:
        _batches.clear()
    _batches[key] = batch
    return batch


_LOCK_NAMESPACE = sql.Literal(LOCK_NAMESPACE)
#: Text of the guard's deliberate error (see _fast_step).
_GUARD_MARKER = "tenantkit: history changed since planning "
_GUARD_MARKER_SQL = sql.Literal(_GUARD_MARKER)


def _apply_step(
    conn: psycopg.Connection[Any],
    schema: str,
    kind: SchemaKind,
    shared: str,
    migrations: Sequence[Migration],
    applied: list[str],
    stop: Callable[[], bool] | None,
    shield: Shield,
) -> str | None:
    """Apply the next group of pending migrations; None when nothing is left."""
    current: str | None = None
    non_tx: Migration | None = None
    pending: list[Migration] = []
    group: list[Migration] = []
    try:
        with conn.transaction():
            done = _lock_and_read(conn, schema, kind, shared, xact=True)
            if done is None:
                return "vanished"
            check_checksums(schema, done, migrations)
            ids = [mid for mid, _ in done]
            pending = [m for m in migrations if m.id not in set(ids)]
            for m in pending:
                if not m.transactional:
                    break
                group.append(m)
            durs: list[float] = []
            for m in group:
                current = m.id
                t = time.perf_counter()
                m.run(conn)
                durs.append((time.perf_counter() - t) * 1000)
            # From here on (recording, and deferred constraints checked at COMMIT) a failure is
            # charged to the group's last migration.
            if group or not pending:
                _record(conn, schema, kind, shared, migrations, ids, group, durs)
                hook = hook_sql(schema, kind, migrations, ids, group)
                if hook is not None:
                    conn.execute(hook.as_string(conn).encode())
            if not group and pending:
                non_tx = pending[0]
        if group:
            # Counted only once committed.
            applied.extend(m.id for m in group)
            # Only come back (another transaction) when a non-transactional one follows.
            return "more" if len(group) < len(pending) else None
        if non_tx is None:
            return None
    except MigrationError as exc:
        raise _Failure(exc.migration or current, exc) from exc
    except psycopg.Error as exc:
        # The group committed and then the cancel landed (see _committed): it is applied.
        if (
            group
            and not conn.closed
            and conn.info.transaction_status == TransactionStatus.IDLE
            and _committed(conn, schema, [m.id for m in group])
        ):
            applied.extend(m.id for m in group)
            return "more" if len(group) < len(pending) else None
        raise _Failure(current, exc) from exc
    except Exception as exc:
        raise _Failure(current, exc) from exc
    try:
        ran = _run_non_transactional(conn, schema, kind, shared, migrations, non_tx, stop, shield)
    except Exception as exc:
        raise _Failure(non_tx.id, exc) from exc
    if ran:
        applied.append(non_tx.id)
    return "more"


def _lock_and_read(
    conn: psycopg.Connection[Any], schema: str, kind: SchemaKind, shared: str, *, xact: bool
) -> list[tuple[str, str]] | None:
    """Take the schema's advisory lock, set the search_path, read the schema's history.

    Returns None when the schema is gone, or is a spare that has been claimed meanwhile.
    """
    lock = "pg_advisory_xact_lock" if xact else "pg_advisory_lock"
    row = conn.execute(
        sql.SQL(
            "select {}(%s, %s), set_config('search_path', %s, {}), "
            "exists (select from pg_namespace where nspname = %s), "
            "to_regclass(%s) is not null"
        ).format(sql.Identifier(lock), sql.Literal(xact)),
        (
            LOCK_NAMESPACE,
            schema_lock_key(schema),
            search_path_value(conn, schema, shared),
            schema,
            sql.Identifier(schema, HISTORY_TABLE).as_string(conn),
        ),
    ).fetchone()
    assert row is not None
    if not row[2]:
        return None
    if kind == "spare":
        # The row lock makes a concurrent claim (FOR UPDATE SKIP LOCKED) pass this spare by
        # while it is being migrated; a spare already claimed has no row any more.
        spare = conn.execute(
            sql.SQL("select 1 from {spares} where schema = %s for update").format(**tables(shared)),
            (schema,),
        ).fetchone()
        if spare is None:
            return None
    if not row[3]:
        ensure_tracking_table(conn, schema)
        return []
    cur = conn.execute(
        sql.SQL("select id, checksum from {} order by applied_at, id").format(
            sql.Identifier(schema, HISTORY_TABLE)
        )
    )
    return [(r[0], r[1]) for r in cur]


def _record_params(
    kind: SchemaKind,
    migrations: Sequence[Migration],
    before_ids: Sequence[str],
    group: Sequence[Migration],
    durs: Sequence[float | None],
) -> dict[str, Any]:
    """:func:`record_sql`'s values for ``group`` applied on top of ``before_ids``, all but
    the schema's name (the same for every schema with that history)."""
    by_id = {m.id: m for m in migrations}
    all_ids = [*before_ids, *(m.id for m in group)]
    done = set(all_ids)
    ordered = [m for m in migrations if m.id in done]
    return {
        "ids": [m.id for m in group],
        "sums": [m.checksum for m in group],
        "durs": list(durs),
        "kind": kind,
        "all_ids": [m.id for m in ordered],
        "all_sums": [by_id[m.id].checksum for m in ordered],
        "digest": state_digest(all_ids, migrations),
    }


def _record(
    conn: psycopg.Connection[Any],
    schema: str,
    kind: SchemaKind,
    shared: str,
    migrations: Sequence[Migration],
    before_ids: Sequence[str],
    group: Sequence[Migration],
    durs: Sequence[float | None],
) -> None:
    params = _record_params(kind, migrations, before_ids, group, durs)
    conn.execute(record_sql(schema, shared, history=bool(group)), {**params, "schema": schema})


def record_applied(
    conn: psycopg.Connection[Any],
    schema: str,
    kind: SchemaKind,
    shared: str,
    migrations: Sequence[Migration],
    ids: Sequence[str],
) -> None:
    """Record ``ids`` as applied in ``schema`` (history rows and summary row) without running
    them: for adopting schemas migrated by another tool. Call inside a transaction holding
    the schema's advisory lock; the history table must exist."""
    wanted = set(ids)
    group = [m for m in migrations if m.id in wanted]
    _record(conn, schema, kind, shared, migrations, [], group, [0.0] * len(group))


def _run_non_transactional(
    conn: psycopg.Connection[Any],
    schema: str,
    kind: SchemaKind,
    shared: str,
    migrations: Sequence[Migration],
    migration: Migration,
    stop: Callable[[], bool] | None,
    shield: Shield,
) -> bool:
    """Run one non-transactional migration alone, under the session-level schema lock;
    False when it did not run (done meanwhile by another migrator, schema gone, a stop).

    Session-level state is only safe on a connection of its own: through a transaction pooler
    the lock, the search_path and the migration itself would each land on any server
    connection (the migration in another schema, the lock never released), so this refuses.
    """
    if behind_pooler(conn):
        raise pooler_error(migration.id)
    done = _lock_and_read(conn, schema, kind, shared, xact=False)
    try:
        if done is None:
            return False
        ids = [mid for mid, _ in done]
        if migration.id in ids:
            return False
        # Once started it is not cancelled by a stop: a cancelled CREATE INDEX CONCURRENTLY
        # leaves an invalid index behind, which "if not exists" then takes for done.
        with shield():
            if stop is not None and stop():
                return False
            t = time.perf_counter()
            migration.run(conn)
            dur = (time.perf_counter() - t) * 1000
            # Not atomic with the migration itself (it cannot be): a crash right here leaves
            # it applied but unrecorded, and it runs again next time, so such migrations must
            # be idempotent (CREATE INDEX CONCURRENTLY IF NOT EXISTS ...), as
            # docs/migrations.md says.
            with conn.transaction():
                _record(conn, schema, kind, shared, migrations, ids, [migration], [dur])
                hook = hook_sql(schema, kind, migrations, ids, [migration])
                if hook is not None:
                    conn.execute(hook.as_string(conn).encode())
        return True
    finally:
        if not conn.closed:
            conn.execute(
                "select pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, schema_lock_key(schema))
            )
            conn.execute("reset search_path")
