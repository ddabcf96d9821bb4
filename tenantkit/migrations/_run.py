"""Running a plan: the shared schema first, then the tenant schemas through an executor
(sequential, threads or processes), with a journal and a report.

The calling thread only plans, keeps the journal and waits for results; the schemas are
migrated by workers (:mod:`._executors`). An interrupt (Ctrl-C, SIGTERM in the CLI) or an
error from the progress callback therefore always reaches it while it waits: it stops the
workers, collects what they really did, writes the journal as ``interrupted`` and raises
``MigrationInterrupted`` (or the error).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol

import psycopg
from psycopg import sql

from ..core.storage import tables
from ._apply import INTERRUPTED, behind_pooler, pooler_error
from ._executors import ProcessExecutor, ThreadExecutor, connect
from ._journal import RunOwner, RunStatus, finish_run, start_run
from ._loader import MigrationSet, load_migrations
from ._plan import build_plan, normalize_schemas
from ._report import (
    MigrationInterrupted,
    MigrationReport,
    Plan,
    ProgressEvent,
    SchemaPlan,
    SchemaResult,
    Status,
)
from ._tracking import Target, resolve, template_schema_name

__all__ = ["ExecutorName", "migrate", "plan"]

ExecutorName = Literal["sequential", "threads", "processes"]
Progress = Callable[[ProgressEvent], None]


def plan(
    tenancy: Any,
    *,
    shared: bool = True,
    tenants: bool = True,
    schemas: Iterable[str] | str | None = None,
    migrations: Any = None,
    conninfo: str | None = None,
) -> Plan:
    """List what is pending where, from one query on the central summary.

    ``schemas`` limits the tenant part to those schemas (spares and the template are then left
    out). ``migrations`` overrides the tenancy's migrations: a directory or a
    :class:`~tenantkit.migrations.MigrationSource` (e.g. ``tenantkit.alembic.AlembicSource``);
    ``conninfo`` overrides its conninfo. Raises ``MigrationChecksumMismatch`` naming the file
    when an applied migration was edited.
    """
    target = _target(tenancy, migrations, conninfo)
    mset = load_migrations(target.migrations_dir)
    only = normalize_schemas(schemas, target.shared_schema)
    with connect(target.conninfo) as conn:
        return build_plan(conn, target, mset, shared=shared, tenants=tenants, schemas=only)


def migrate(
    tenancy: Any,
    *,
    shared: bool = True,
    tenants: bool = True,
    schemas: Iterable[str] | str | None = None,
    jobs: int = 1,
    executor: ExecutorName = "sequential",
    chunk_size: int | None = None,
    fail_fast: bool = False,
    progress: Progress | None = None,
    migrations: Any = None,
    conninfo: str | None = None,
) -> MigrationReport:
    """Bring the shared schema, then every tenant, spare and template schema, to the head.

    Each schema's pending migrations run in one transaction under a per-schema advisory lock;
    a failing schema is reported and the others continue unless ``fail_fast`` (the schemas in
    progress then finish, the others are skipped). ``jobs`` workers (threads or processes, each
    with its own connection) take ``chunk_size`` schemas at a time. ``progress`` is called on
    the calling thread after each schema.

    A ``KeyboardInterrupt`` (Ctrl-C; SIGTERM in the CLI) stops the run gracefully: no schema
    starts after it, the statements in progress are cancelled (those schemas stay at their old
    version), the journal is written as ``interrupted``, and ``MigrationInterrupted`` is raised
    with the report. The next run resumes it; so it does a run killed outright, whose journal
    row still says ``running``: each schema's history says what is left, and the dead run's
    lease is free (``MigrationReport.resumed_from``).

    Locks and settings are transaction-scoped, so migrations run through pgbouncer in
    transaction mode; a non-transactional migration cannot, and raises ``PoolerDetected``
    before anything runs: give ``conninfo``, a direct connection to PostgreSQL, which replaces
    the tenancy's. ``migrations`` overrides the tenancy's migrations: a directory or a
    :class:`~tenantkit.migrations.MigrationSource` (e.g. ``tenantkit.alembic.AlembicSource``).
    """
    if executor not in ("sequential", "threads", "processes"):
        raise ValueError(f"unknown executor {executor!r}: use sequential, threads or processes")
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    if executor == "sequential":
        jobs = 1
    t0 = time.perf_counter()
    target = _target(tenancy, migrations, conninfo)
    mset = load_migrations(target.migrations_dir)
    only = normalize_schemas(schemas, target.shared_schema)
    with connect(target.conninfo) as conn:
        if tenants and only is None and not all(m.transactional for m in mset.tenant):
            # New tenants cannot run a non-transactional migration inside their creating
            # transaction, so they are cloned from the template: keep one at the head.
            conn.execute(
                sql.SQL("create schema if not exists {}").format(
                    sql.Identifier(template_schema_name(target.shared_schema))
                )
            )
        the_plan = build_plan(conn, target, mset, shared=shared, tenants=tenants, schemas=only)
        current = [
            SchemaResult(e.schema, e.kind, "current") for e in the_plan.entries if not e.pending
        ]
        if the_plan.is_empty:
            return MigrationReport(
                tuple(current), time.perf_counter() - t0, executor=executor, jobs=jobs
            )
        pooled = behind_pooler(conn)
        if pooled:
            _refuse_non_transactional(mset, the_plan.pending)
        with RunOwner(target.conninfo, target.shared_schema, pooled=pooled) as owner:
            run = _Run(conn, target, mset, owner, the_plan.pending, progress)
            run.execute(executor, jobs, chunk_size, fail_fast)
    order = {e.schema: i for i, e in enumerate(the_plan.entries)}
    everything = sorted([*current, *run.results], key=lambda r: order.get(r.schema, len(order)))
    report = MigrationReport(
        tuple(everything),
        time.perf_counter() - t0,
        run.run_id,
        run.resumed_from,
        executor,
        jobs,
        interrupted=run.stopped is not None,
    )
    if isinstance(run.stopped, KeyboardInterrupt):
        raise MigrationInterrupted(report) from run.stopped
    if run.stopped is not None:
        raise run.stopped
    return report


def _target(tenancy: Any, migrations: Any, conninfo: str | None) -> Target:
    target = resolve(tenancy, migrations)
    return target if conninfo is None else replace(target, conninfo=str(conninfo))


def _refuse_non_transactional(mset: MigrationSet, pending: Sequence[SchemaPlan]) -> None:
    """Through a pooler: raise ``PoolerDetected`` before anything runs when a
    non-transactional migration is pending."""
    non_tx = {
        kind: {m.id for m in mset.of(kind) if not m.transactional} for kind in ("shared", "tenant")
    }
    hit = next(
        (
            mid
            for e in pending
            for mid in e.pending
            if mid in non_tx["shared" if e.kind == "shared" else "tenant"]
        ),
        None,
    )
    if hit is not None:
        raise pooler_error(hit)


class _Executor(Protocol):
    def next(self) -> SchemaResult | None: ...
    def stop(self) -> None: ...
    def abandon(self) -> None: ...
    def close(self) -> None: ...


#: ``SchemaResult.error`` of schemas whose worker process died before reporting them.
_WORKER_DIED = "the worker process died before reporting this schema"


class _Run:
    """One run with work to do: its journal row, its results, and how it stopped."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        target: Target,
        mset: MigrationSet,
        owner: RunOwner,
        pending: Sequence[SchemaPlan],
        progress: Progress | None,
    ) -> None:
        self.conn = conn
        self.target = target
        self.mset = mset
        self.run_id = owner.run_id
        self.pending = pending
        self.progress = progress
        self.results: list[SchemaResult] = []
        self._seen: set[str] = set()
        self._replaced = False
        self._lent = False
        #: The interrupt (or the progress callback's error) that stopped the run early.
        self.stopped: BaseException | None = None
        self.resumed_from = start_run(conn, owner, len(pending))

    def execute(
        self, executor: ExecutorName, jobs: int, chunk_size: int | None, fail_fast: bool
    ) -> None:
        """The shared schema, then the others. The journal is written however this ends; an
        interrupt or error is kept in :attr:`stopped` for the caller to raise."""
        try:
            work = [e for e in self.pending if e.kind != "shared"]
            first = next((e for e in self.pending if e.kind == "shared"), None)
            if first is not None:
                self._phase(
                    ThreadExecutor(
                        self.target,
                        self.mset,
                        [first],
                        jobs=1,
                        chunk_size=1,
                        fail_fast=False,
                        conn=self.conn,
                    ),
                    [first],
                )
                if self.results[-1].status == "failed":
                    # Tenant migrations may rely on what the shared ones create.
                    for e in work:
                        self._report(_skip(e, "shared migrations failed"))
                    work = []
            if work and self.stopped is None:
                self._phase(self._executor(executor, work, jobs, chunk_size, fail_fast), work)
        except BaseException as exc:  # outside a phase's wait: still a stop, still journaled
            if self.stopped is None:
                self.stopped = exc
        for e in self.pending:  # what no executor was given: a stop came first
            if e.schema not in self._seen:
                self._report(_skip(e, INTERRUPTED), quiet=True)
        self._finish()

    def _executor(
        self,
        name: ExecutorName,
        work: Sequence[SchemaPlan],
        jobs: int,
        chunk_size: int | None,
        fail_fast: bool,
    ) -> _Executor:
        if name == "processes" and len(work) > 1:
            size = chunk_size or max(1, min(50, math.ceil(len(work) / (jobs * 4))))
            return ProcessExecutor(
                self.target, work, jobs=jobs, chunk_size=size, fail_fast=fail_fast
            )
        jobs = jobs if name == "threads" else 1
        return ThreadExecutor(
            self.target,
            self.mset,
            work,
            jobs=jobs,
            chunk_size=chunk_size or 1,
            fail_fast=fail_fast,
            conn=self.conn,
        )

    def _report(self, result: SchemaResult, *, quiet: bool = False) -> None:
        self._seen.add(result.schema)
        self.results.append(result)
        if self.progress is not None and not quiet:
            self.progress(ProgressEvent(len(self.results), len(self.pending), result))

    def _phase(self, executor: _Executor, entries: Sequence[SchemaPlan]) -> None:
        """Collect ``executor``'s results. On an interrupt (or an error from the progress
        callback) stop it and collect what its workers finish or roll back; on a second one,
        stop waiting. Schemas never reported are read back from the database."""
        abandoned = False
        try:
            while (result := executor.next()) is not None:
                self._report(result)
        except BaseException as exc:
            self.stopped = exc
            try:
                executor.stop()
                while (result := executor.next()) is not None:
                    self._report(result, quiet=True)
            except BaseException:
                abandoned = True
                executor.abandon()
                # A worker still running may hold the connection it borrowed from us.
                self._lent = True
        finally:
            executor.close()
        missing = [e for e in entries if e.schema not in self._seen]
        if missing:
            status: Status = "skipped" if abandoned else "failed"
            error = INTERRUPTED if abandoned else _WORKER_DIED
            for result in self._read_back(missing, status, error):
                self._report(result, quiet=True)

    def _read_back(
        self, entries: Sequence[SchemaPlan], status: Status, error: str
    ) -> list[SchemaResult]:
        """Results for schemas whose worker never said how they ended, from their summary
        rows (written in the same transaction as their history)."""
        try:
            rows = self._connection().execute(
                sql.SQL("select schema, applied from {state} where schema = any(%s)").format(
                    **tables(self.target.shared_schema)
                ),
                ([e.schema for e in entries],),
            )
            applied = {r[0]: set(r[1]) for r in rows}
        except psycopg.Error:
            applied = {}
        out = []
        for e in entries:
            done = tuple(m for m in e.pending if m in applied.get(e.schema, ()))
            if done:
                out.append(SchemaResult(e.schema, e.kind, "applied", done))
            else:
                out.append(SchemaResult(e.schema, e.kind, status, error=error))
        return out

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn.closed or self._lent:
            # Its backend died (terminated, server restart) while the workers ran, or an
            # abandoned worker may still use it. The caller closes the first connection,
            # this one closes the replacement.
            self.conn = connect(self.target.conninfo)
            self._replaced = True
            self._lent = False
        return self.conn

    def _finish(self) -> None:
        status: RunStatus = "done"
        if self.stopped is not None:
            status = "interrupted"
        elif any(r.status == "failed" for r in self.results):
            status = "failed"
        try:
            finish_run(
                self._connection(), self.target.shared_schema, self.run_id, self.results, status
            )
        finally:
            if self._replaced:
                self.conn.close()


def _skip(entry: SchemaPlan, reason: str) -> SchemaResult:
    return SchemaResult(entry.schema, entry.kind, "skipped", error=reason)
