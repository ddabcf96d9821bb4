"""The run journal, and how a run is known to be alive.

Each ``migrate()`` run with work to do gets a row in ``<shared>.tenantkit_migration_runs``
(``running``, then ``done``, ``failed`` or ``interrupted``) and, when it ends, one row per
schema in ``tenantkit_migration_journal``. A run stopped gracefully (Ctrl-C, SIGTERM) writes
``interrupted`` itself, with true counts. A run killed outright leaves ``running``: the next
run must tell it from a live one, mark it ``interrupted`` and resume it
(``MigrationReport.resumed_from``). A run's *owner* (:class:`RunOwner`, on a connection of its
own) shows that it is alive:

* connected to PostgreSQL directly, by a *lease*: an advisory lock keyed by the run id, taken
  before the row is written, in a transaction left open for the run's duration. Exact: the
  lock is free as soon as the owner's process is gone (its connection closes, the transaction
  with it). The transaction holds no transaction id and no snapshot, so it holds back neither
  vacuum nor ``CREATE INDEX CONCURRENTLY``;
* through a transaction pooler, by a *heartbeat*: ``alive_until``, pushed ahead every
  :data:`HEARTBEAT` seconds, which a dead run stops doing. An open transaction would hold a
  server connection of the pool for the whole run (a few concurrent runs would then starve the
  pool and each other), and a backend pid or session lock means nothing there. The price: a
  dead run is recognised :data:`GRACE` seconds after it died, not at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from ..core.storage import tables
from ._executors import connect
from ._report import SchemaResult
from ._tracking import LOCK_NAMESPACE, ensure_shared_tables

__all__ = [
    "GRACE",
    "HEARTBEAT",
    "RUN_LOCK_NAMESPACE",
    "RunOwner",
    "RunStatus",
    "finish_run",
    "start_run",
]

#: First key of the run leases (the second is a hash of the shared schema and the run id).
RUN_LOCK_NAMESPACE = LOCK_NAMESPACE + 1
#: Seconds between two heartbeats of a run through a pooler.
HEARTBEAT = 5.0
#: Seconds a heartbeat keeps a run alive: a few missed beats, not one slow statement.
GRACE = 30.0

RunStatus = Literal["done", "failed", "interrupted"]


def _run_key(shared: sql.Composable, run_id: sql.Composable) -> sql.Composed:
    """The second lock key of a run, computed by the server for both sides. Runs of other
    shared schemas in the same database have ids of their own, hence the schema's name."""
    return sql.SQL("pg_catalog.hashtext({} || ':' || {})").format(shared, run_id)


class RunOwner:
    """Draws the run's id and keeps the run visibly alive (a lease, or a heartbeat when
    ``pooled``) until :meth:`close`."""

    def __init__(self, conninfo: str, shared: str, *, pooled: bool) -> None:
        self.conninfo = conninfo
        self.shared = shared
        self.pooled = pooled
        self.conn = connect(conninfo)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        try:
            self.run_id = self._draw_id() if pooled else self._lease()
        except BaseException:
            self.conn.close()
            raise

    def _draw_id(self) -> int:
        table = tables(self.shared)["runs"].as_string(self.conn)
        row = self.conn.execute(
            "select nextval(pg_catalog.pg_get_serial_sequence(%s, 'id'))", (table,)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def _lease(self) -> int:
        while True:
            # The id is drawn before the transaction, and the lock statement has no parameters
            # (simple protocol): the open transaction then holds no xid and no snapshot.
            run_id = self._draw_id()
            self.conn.execute("begin")
            got = self.conn.execute(
                sql.SQL("select pg_catalog.pg_try_advisory_xact_lock({}, {})").format(
                    sql.Literal(RUN_LOCK_NAMESPACE),
                    _run_key(sql.Literal(self.shared), sql.Literal(run_id)),
                )
            ).fetchone()
            if got is not None and got[0]:
                return run_id
            # Held by another run's lease (a hash collision): draw the next id.
            self.conn.execute("rollback")

    def start_heartbeat(self) -> None:
        """Once the row exists: keep pushing its ``alive_until`` ahead (pooled runs)."""
        if self.pooled and self._beat is None:
            self._beat = threading.Thread(
                target=self._heartbeat, daemon=True, name="tenantkit-migrate-heartbeat"
            )
            self._beat.start()

    def _heartbeat(self) -> None:
        query = sql.SQL(
            "update {runs} set alive_until = now() + %s * interval '1 s' "
            "where id = %s and status = 'running'"
        ).format(**tables(self.shared))
        while not self._stop.wait(HEARTBEAT):
            # The server away for now: the next beat tries again.
            with contextlib.suppress(psycopg.Error):
                if self.conn.closed:
                    self.conn = connect(self.conninfo)
                self.conn.execute(query, (GRACE, self.run_id))

    def close(self) -> None:
        """End the lease (closing the connection rolls its transaction back) or heartbeat."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self.conn.close()

    def __enter__(self) -> RunOwner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_run(conn: psycopg.Connection[Any], owner: RunOwner, total: int) -> int | None:
    """Write the journal row of ``owner``'s run; returns the id of the interrupted run it
    resumes, if any.

    ``running`` rows of dead runs (a free lease, a heartbeat past due) become ``interrupted``
    first. The run resumed is the latest interrupted one that no other run has resumed yet.
    """
    query = sql.SQL(
        "with stale as (update {runs} "
        "set status = 'interrupted', finished_at = now() "
        # CASE: a WHERE clause has no evaluation order, and only the lock of a running row
        # without a heartbeat may be tried.
        "where case when status <> 'running' then false "
        "when alive_until is not null then alive_until < now() "
        "else pg_catalog.pg_try_advisory_xact_lock(%(ns)s, {key}) end "
        "returning id), "
        "earlier as (select r.id from {runs} r "
        "where r.status = 'interrupted' and not exists "
        "(select from {runs} n where n.resumed_from = r.id) "
        # Two runs starting together do not both resume the same one.
        "order by r.id desc limit 1 for update skip locked), "
        # Summary rows of schemas dropped or renamed since: planning never needs them.
        "gone as (delete from {state} st where not exists "
        "(select from pg_namespace n where n.nspname = st.schema)) "
        "insert into {runs} (id, total, resumed_from, alive_until) "
        "overriding system value select %(id)s, %(total)s, "
        "greatest((select max(id) from stale), (select id from earlier)), "
        "case when %(pooled)s then now() + %(grace)s * interval '1 s' end "
        "returning resumed_from"
    ).format(key=_run_key(sql.Placeholder("shared"), sql.Identifier("id")), **tables(owner.shared))
    params = {
        "ns": RUN_LOCK_NAMESPACE,
        "shared": owner.shared,
        "id": owner.run_id,
        "total": total,
        "pooled": owner.pooled,
        "grace": GRACE,
    }
    try:
        row = conn.execute(query, params).fetchone()
    except pg_errors.UndefinedColumn:
        # Tables made by an earlier development version: bring them up to date, once.
        ensure_shared_tables(conn, owner.shared)
        row = conn.execute(query, params).fetchone()
    assert row is not None
    owner.start_heartbeat()
    return None if row[0] is None else int(row[0])


def finish_run(
    conn: psycopg.Connection[Any],
    shared: str,
    run_id: int,
    results: Sequence[SchemaResult],
    status: RunStatus,
) -> None:
    """Close the journal entry and write its per-schema rows, in one statement.

    Written at the end rather than with each schema, to keep the per-schema transaction to the
    schema's own history and summary row; what a killed run did is in those histories.
    """
    conn.execute(
        sql.SQL(
            "with r as (update {runs} set finished_at = now(), "
            "status = %(status)s, applied = %(applied)s, failed = %(failed)s "
            "where id = %(run)s) "
            "insert into {journal} "
            "(run_id, schema, status, migrations, error, duration_ms) "
            "select %(run)s, s, st, string_to_array(m, ','), e, d from unnest("
            "%(schemas)s::text[], %(statuses)s::text[], %(migs)s::text[], %(errors)s::text[], "
            "%(durs)s::float8[]) as u(s, st, m, e, d) "
            "on conflict (run_id, schema) do nothing"
        ).format(**tables(shared)),
        {
            "status": status,
            "applied": sum(r.status == "applied" for r in results),
            "failed": sum(r.status == "failed" for r in results),
            "run": run_id,
            "schemas": [r.schema for r in results],
            "statuses": [r.status for r in results],
            "migs": [",".join(r.applied) for r in results],
            "errors": [r.error for r in results],
            "durs": [r.duration * 1000 for r in results],
        },
    )
