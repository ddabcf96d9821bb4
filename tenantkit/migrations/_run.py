"""Running a plan: shared migrations first under a global lock, then the tenant schemas
through an executor (sequential, threads or processes), with a journal and a report."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Literal

import psycopg
from psycopg import sql

from ._apply import apply_schema
from ._loader import MigrationSet, load_migrations
from ._plan import build_plan, normalize_schemas
from ._report import MigrationReport, Plan, ProgressEvent, SchemaPlan, SchemaResult
from ._tracking import GLOBAL_LOCK_KEY, LOCK_NAMESPACE, Target, resolve, template_schema_name

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
) -> Plan:
    """List what is pending where, from one query on the central summary.

    ``schemas`` limits the tenant part to those schemas (spares and the template are then left
    out). ``migrations`` overrides the tenancy's migrations directory. Raises
    ``MigrationChecksumMismatch`` naming the file when an applied migration was edited.
    """
    target = resolve(tenancy, migrations)
    mset = load_migrations(target.migrations_dir)
    only = normalize_schemas(schemas, target.shared_schema)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
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
) -> MigrationReport:
    """Bring the shared schema, then every tenant, spare and template schema, to the head.

    Each schema's pending migrations run in one transaction under a per-schema advisory lock;
    a failing schema is reported and the others continue unless ``fail_fast``. ``jobs`` workers
    (threads or processes, each with its own connection) take ``chunk_size`` schemas at a time.
    ``progress`` is called on the calling thread after each schema. A run killed halfway is
    resumed by running again: each schema's history says what is left, and the journal links
    the new run to the interrupted one (``MigrationReport.resumed_from``).
    """
    if executor not in ("sequential", "threads", "processes"):
        raise ValueError(f"unknown executor {executor!r}: use sequential, threads or processes")
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    if executor == "sequential":
        jobs = 1
    t0 = time.perf_counter()
    target = resolve(tenancy, migrations)
    mset = load_migrations(target.migrations_dir)
    only = normalize_schemas(schemas, target.shared_schema)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
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
        pending = the_plan.pending
        run_id, resumed_from = _start_run(conn, target.shared_schema, len(pending))
        results: list[SchemaResult] = []
        done = 0

        def report(result: SchemaResult) -> None:
            nonlocal done
            done += 1
            results.append(result)
            if progress is not None:
                progress(ProgressEvent(done, len(pending), result))

        work = [e for e in pending if e.kind != "shared"]
        shared_entry = next((e for e in pending if e.kind == "shared"), None)
        if shared_entry is not None:
            result = _migrate_shared(conn, target, mset, shared_entry.pending)
            report(result)
            if result.status == "failed":
                # Tenant migrations may rely on what the shared ones create: do not start them.
                for e in work:
                    report(
                        SchemaResult(e.schema, e.kind, "skipped", error="shared migrations failed")
                    )
                work = []
        if work:
            if executor == "sequential" or len(work) == 1:
                _run_sequential(conn, target, mset, work, fail_fast, report)
            elif executor == "threads":
                _run_threads(target, mset, work, fail_fast, report, jobs, chunk_size or 1)
            else:
                size = chunk_size or max(1, min(50, math.ceil(len(work) / (jobs * 4))))
                _run_processes(target, work, fail_fast, report, jobs, size)
        if conn.closed:
            # The sequential worker shares this connection, and its backend may have died.
            with psycopg.connect(target.conninfo, autocommit=True) as again:
                _finish_run(again, target.shared_schema, run_id, results)
        else:
            _finish_run(conn, target.shared_schema, run_id, results)
    order = {e.schema: i for i, e in enumerate(the_plan.entries)}
    everything = sorted([*current, *results], key=lambda r: order.get(r.schema, len(order)))
    return MigrationReport(
        tuple(everything), time.perf_counter() - t0, run_id, resumed_from, executor, jobs
    )


def _start_run(conn: psycopg.Connection[Any], shared: str, total: int) -> tuple[int, int | None]:
    """Open a journal entry; a run left "running" by a dead backend is marked interrupted."""
    ident = sql.Identifier(shared)
    row = conn.execute(
        sql.SQL(
            "with stale as (update {}.tenantkit_migration_runs set status = 'interrupted', "
            "finished_at = now() where status = 'running' and backend_pid not in "
            "(select pid from pg_stat_activity) returning id), "
            # Summary rows of schemas dropped or renamed since: planning never needs them.
            "gone as (delete from {}.tenantkit_migration_state st where not exists "
            "(select from pg_namespace n where n.nspname = st.schema)) "
            "insert into {}.tenantkit_migration_runs (total, resumed_from) "
            "select %s, (select max(id) from stale) returning id, resumed_from"
        ).format(ident, ident, ident),
        (total,),
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def _finish_run(
    conn: psycopg.Connection[Any], shared: str, run_id: int, results: Sequence[SchemaResult]
) -> None:
    """Close the journal entry and write its per-schema rows, in one statement.

    Written at the end rather than with each schema, to keep the per-schema transaction to the
    schema's own history and summary row; what a killed run did is in those histories.
    """
    failed = sum(r.status == "failed" for r in results)
    ident = sql.Identifier(shared)
    conn.execute(
        sql.SQL(
            "with r as (update {}.tenantkit_migration_runs set finished_at = now(), "
            "status = %(status)s, applied = %(applied)s, failed = %(failed)s "
            "where id = %(run)s) "
            "insert into {}.tenantkit_migration_journal "
            "(run_id, schema, status, migrations, error, duration_ms) "
            "select %(run)s, s, st, string_to_array(m, ','), e, d from unnest("
            "%(schemas)s::text[], %(statuses)s::text[], %(migs)s::text[], %(errors)s::text[], "
            "%(durs)s::float8[]) as u(s, st, m, e, d) "
            "on conflict (run_id, schema) do nothing"
        ).format(ident, ident),
        {
            "status": "failed" if failed else "done",
            "applied": sum(r.status == "applied" for r in results),
            "failed": failed,
            "run": run_id,
            "schemas": [r.schema for r in results],
            "statuses": [r.status for r in results],
            "migs": [",".join(r.applied) for r in results],
            "errors": [r.error for r in results],
            "durs": [r.duration * 1000 for r in results],
        },
    )


def _migrate_shared(
    conn: psycopg.Connection[Any],
    target: Target,
    mset: MigrationSet,
    hint: tuple[str, ...],
) -> SchemaResult:
    # Session-level global lock: two migrators run shared migrations one after the other, and
    # the second finds them applied.
    conn.execute("select pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, GLOBAL_LOCK_KEY))
    try:
        return apply_schema(
            conn,
            schema=target.shared_schema,
            kind="shared",
            shared=target.shared_schema,
            migrations=mset.shared,
            hint=hint,
        )
    finally:
        if not conn.closed:
            conn.execute("select pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, GLOBAL_LOCK_KEY))


class _Worker:
    """One connection applying schemas; reconnects when its backend goes away."""

    def __init__(
        self,
        target: Target,
        mset: MigrationSet,
        conn: psycopg.Connection[Any] | None = None,
    ):
        self.target = target
        self.mset = mset
        self.conn = conn
        self.owned = conn is None

    def apply(self, entry: SchemaPlan | tuple[str, Any, tuple[str, ...]]) -> SchemaResult:
        if isinstance(entry, SchemaPlan):
            schema, kind, hint = entry.schema, entry.kind, entry.pending
        else:
            schema, kind, hint = entry
        t0 = time.perf_counter()
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.target.conninfo, autocommit=True)
                self.owned = True
            return apply_schema(
                self.conn,
                schema=schema,
                kind=kind,
                shared=self.target.shared_schema,
                migrations=self.mset.tenant,
                hint=hint,
            )
        except psycopg.OperationalError as exc:
            # The backend died (terminated, server restart): the open transaction was rolled
            # back, so the schema is at its old version. Report it; the next schema reconnects.
            if self.conn is not None and self.owned:
                self.conn.close()
            self.conn = None
            return SchemaResult(
                schema,
                kind,
                "failed",
                duration=time.perf_counter() - t0,
                error=f"connection lost: {exc}".strip(),
            )

    def close(self) -> None:
        if self.conn is not None and self.owned:
            self.conn.close()


def _run_sequential(
    conn: psycopg.Connection[Any],
    target: Target,
    mset: MigrationSet,
    work: Sequence[SchemaPlan],
    fail_fast: bool,
    report: Callable[[SchemaResult], None],
) -> None:
    worker = _Worker(target, mset, conn)
    stop = False
    for entry in work:
        if stop:
            report(SchemaResult(entry.schema, entry.kind, "skipped", error="fail-fast stop"))
            continue
        result = worker.apply(entry)
        report(result)
        stop = fail_fast and result.status == "failed"
    worker.close()


def _run_threads(
    target: Target,
    mset: MigrationSet,
    work: Sequence[SchemaPlan],
    fail_fast: bool,
    report: Callable[[SchemaResult], None],
    jobs: int,
    chunk_size: int,
) -> None:
    chunks: queue.SimpleQueue[Sequence[SchemaPlan]] = queue.SimpleQueue()
    for i in range(0, len(work), chunk_size):
        chunks.put(work[i : i + chunk_size])
    results: queue.SimpleQueue[SchemaResult | None] = queue.SimpleQueue()
    stop = threading.Event()

    def loop() -> None:
        worker = _Worker(target, mset)
        try:
            while True:
                try:
                    chunk = chunks.get_nowait()
                except queue.Empty:
                    return
                for entry in chunk:
                    if stop.is_set():
                        results.put(
                            SchemaResult(
                                entry.schema, entry.kind, "skipped", error="fail-fast stop"
                            )
                        )
                        continue
                    result = worker.apply(entry)
                    if fail_fast and result.status == "failed":
                        stop.set()
                    results.put(result)
        finally:
            worker.close()
            results.put(None)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(min(jobs, len(work)))]
    for t in threads:
        t.start()
    running = len(threads)
    # Results are reported from the calling thread, so progress callbacks need no locking.
    while running:
        item = results.get()
        if item is None:
            running -= 1
        else:
            report(item)
    for t in threads:
        t.join()


# Process workers keep one connection and the loaded migrations for their whole life.
_proc_worker: _Worker | None = None


def _proc_init(target: Target) -> None:
    global _proc_worker
    _proc_worker = _Worker(target, load_migrations(target.migrations_dir))


def _proc_chunk(chunk: Sequence[tuple[str, Any, tuple[str, ...]]]) -> list[SchemaResult]:
    assert _proc_worker is not None
    return [_proc_worker.apply((schema, kind, hint)) for schema, kind, hint in chunk]


def _run_processes(
    target: Target,
    work: Sequence[SchemaPlan],
    fail_fast: bool,
    report: Callable[[SchemaResult], None],
    jobs: int,
    chunk_size: int,
) -> None:
    chunks = [
        [(e.schema, e.kind, e.pending) for e in work[i : i + chunk_size]]
        for i in range(0, len(work), chunk_size)
    ]
    kinds = {e.schema: e for e in work}
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(chunks)), initializer=_proc_init, initargs=(target,)
    ) as pool:
        futures: list[Future[list[SchemaResult]]] = [pool.submit(_proc_chunk, c) for c in chunks]
        pending_chunks = dict(zip(futures, chunks, strict=True))
        stopped = False
        for fut in futures:
            chunk = pending_chunks[fut]
            if stopped and fut.cancel():
                for schema, _kind, _hint in chunk:
                    report(
                        SchemaResult(schema, kinds[schema].kind, "skipped", error="fail-fast stop")
                    )
                continue
            for result in fut.result():
                report(result)
                if fail_fast and result.status == "failed" and not stopped:
                    # Chunks already running finish; the rest are cancelled.
                    stopped = True
                    for other in futures:
                        other.cancel()
