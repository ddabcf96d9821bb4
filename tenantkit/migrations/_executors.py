"""Executors: the workers that apply schemas (threads or processes), and how they stop.

Both executors hand out ``chunk_size`` schemas at a time to ``jobs`` workers, each with one
connection of its own, and give the results back to the calling thread one by one
(:meth:`next`), so the caller's progress callback needs no locking and the caller's thread
only waits: a ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM in the CLI) always lands there, never
in the middle of a worker's bookkeeping. The caller then calls :meth:`stop`: no schema is
started any more and the statements in progress are cancelled (their schemas roll back), and
the caller keeps calling :meth:`next` for what the workers report, which is the truth. A
``fail_fast`` failure halts the same way but lets the schemas in progress finish.

Process workers must not outlive the process that started them (a worker left behind keeps
its connection and goes on migrating, and nothing would record it). On Linux the kernel kills
them when their parent dies (``PR_SET_PDEATHSIG``); everywhere, a thread in each worker also
watches its parent process id, which changes exactly when the parent dies. Workers ignore
SIGINT and SIGTERM: a Ctrl-C reaches the whole process group, and the parent coordinates the
stop so that each schema is reported as it really ended.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import psycopg

from ._apply import INTERRUPTED, apply_schema
from ._loader import MigrationSet, load_migrations
from ._report import SchemaPlan, SchemaResult
from ._tracking import Target

__all__ = ["FAIL_FAST", "ProcessExecutor", "ThreadExecutor", "Worker", "connect"]

#: ``SchemaResult.error`` of the schemas a ``fail_fast`` stop skipped.
FAIL_FAST = "fail-fast stop"
#: Seconds between a process worker's checks of its parent (where the kernel cannot do it).
PARENT_POLL = 0.2
#: Ask the kernel to kill process workers with their parent (Linux). Tests turn it off to
#: check the portable parent watch alone.
PDEATHSIG = True
_PR_SET_PDEATHSIG = 1

Entry = tuple[str, Any, tuple[str, ...]]


def connect(conninfo: str) -> psycopg.Connection[Any]:
    """An autocommit connection for the engine.

    Server-side prepared statements stay off: behind a transaction pooler the next execution
    may reach a server connection that never saw the PREPARE.
    """
    return psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)


def _skipped(entry: SchemaPlan | Entry, reason: str) -> SchemaResult:
    schema, kind = (entry.schema, entry.kind) if isinstance(entry, SchemaPlan) else entry[:2]
    return SchemaResult(schema, kind, "skipped", error=reason)


class Worker:
    """One connection applying schemas; reconnects when its backend goes away.

    :meth:`cancel` (from another thread) cancels the statement in progress, except inside
    :meth:`shield`, where a non-transactional migration runs: cancelling ``CREATE INDEX
    CONCURRENTLY`` would leave an invalid index. The lock makes the two exclusive: a cancel
    request is sent and done before a shielded statement can start.
    """

    def __init__(
        self,
        target: Target,
        mset: MigrationSet,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        self.target = target
        self.mset = mset
        #: ``conn``, when given, is borrowed (the caller's, idle meanwhile) and not closed.
        self.conn = conn
        self._owned = conn is None
        self._lock = threading.Lock()
        self._shielded = False

    def apply(
        self, entry: SchemaPlan | Entry, stop: Callable[[], bool] | None = None
    ) -> SchemaResult:
        """Bring one schema to the head (see :func:`apply_schema`)."""
        if isinstance(entry, SchemaPlan):
            schema, kind, hint = entry.schema, entry.kind, entry.pending
        else:
            schema, kind, hint = entry
        t0 = time.perf_counter()
        try:
            if self.conn is None or self.conn.closed:
                self.conn = connect(self.target.conninfo)
                self._owned = True
            return apply_schema(
                self.conn,
                schema=schema,
                kind=kind,
                shared=self.target.shared_schema,
                migrations=self.mset.of("shared" if kind == "shared" else "tenant"),
                hint=hint,
                stop=stop,
                shield=self.shield,
            )
        except psycopg.OperationalError as exc:
            # The backend died (terminated, server restart): the open transaction was rolled
            # back, so the schema is at its old version. Report it; the next schema reconnects.
            self.close()
            return SchemaResult(
                schema,
                kind,
                "failed",
                duration=time.perf_counter() - t0,
                error=f"connection lost: {exc}".strip(),
            )

    def cancel(self) -> None:
        """Cancel the statement in progress, if any and not shielded (from another thread)."""
        with self._lock:
            conn = self.conn
            if self._shielded or conn is None or conn.closed:
                return
            # Nothing running, or the connection just went away: nothing to cancel.
            with contextlib.suppress(psycopg.Error, OSError):
                conn.cancel_safe(timeout=5.0)

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        """Statements in this block are not cancelled by :meth:`cancel`."""
        with self._lock:
            self._shielded = True
        try:
            yield
        finally:
            with self._lock:
                self._shielded = False

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and self._owned:
            conn.close()


def _chunks(work: Sequence[SchemaPlan], size: int) -> list[Sequence[SchemaPlan]]:
    return [work[i : i + size] for i in range(0, len(work), size)]


class ThreadExecutor:
    """``jobs`` threads, each with its own connection, pulling ``chunk_size`` schemas at a
    time (``jobs=1`` is the sequential executor; its thread may borrow the caller's idle
    ``conn``)."""

    def __init__(
        self,
        target: Target,
        mset: MigrationSet,
        work: Sequence[SchemaPlan],
        *,
        jobs: int,
        chunk_size: int,
        fail_fast: bool,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        self.fail_fast = fail_fast
        self._chunks: queue.SimpleQueue[Sequence[SchemaPlan]] = queue.SimpleQueue()
        for chunk in _chunks(work, chunk_size):
            self._chunks.put(chunk)
        self._results: queue.SimpleQueue[SchemaResult | None] = queue.SimpleQueue()
        self._reason: str | None = None  # set once: why no schema is started any more
        jobs = min(jobs, len(work))
        self._workers = [Worker(target, mset, conn if jobs == 1 else None) for _ in range(jobs)]
        self._running = len(self._workers)
        self._threads = [
            threading.Thread(target=self._loop, args=(w,), daemon=True, name="tenantkit-migrate")
            for w in self._workers
        ]
        for t in self._threads:
            t.start()

    def _interrupted(self) -> bool:
        return self._reason == INTERRUPTED

    def _loop(self, worker: Worker) -> None:
        try:
            while True:
                try:
                    chunk = self._chunks.get_nowait()
                except queue.Empty:
                    return
                for entry in chunk:
                    if self._reason is not None:
                        self._results.put(_skipped(entry, self._reason))
                        continue
                    result = worker.apply(entry, self._interrupted)
                    if self.fail_fast and result.status == "failed" and self._reason is None:
                        self._reason = FAIL_FAST
                    self._results.put(result)
        finally:
            worker.close()
            self._results.put(None)

    def next(self) -> SchemaResult | None:
        """The next schema's result, or None when every worker is done (blocks)."""
        while self._running:
            item = self._results.get()
            if item is not None:
                return item
            self._running -= 1
        return None

    def stop(self) -> None:
        """Start no other schema, cancel the statements in progress."""
        self._reason = INTERRUPTED
        for worker in self._workers:
            worker.cancel()

    def abandon(self) -> None:
        """Stop waiting for the workers: the schemas they did not report are read back from
        the database instead. Their statements are cancelled; the threads end by themselves."""
        self.stop()
        self._threads = []
        self._running = 0

    def close(self) -> None:
        for t in self._threads:
            t.join()


# -- process workers ---------------------------------------------------------------------------

#: Set in each process worker by its initializer.
_state: _ProcessState | None = None


class _ProcessState:
    def __init__(self, target: Target, stop: Any, halt: Any, fail_fast: bool) -> None:
        self.worker = Worker(target, load_migrations(target.migrations_dir))
        self.stop = stop
        self.halt = halt
        self.fail_fast = fail_fast


def die_with_parent(parent_pid: int | None, pdeathsig: bool = True) -> None:
    """Make the kernel kill this process (SIGKILL) when its parent dies (Linux), and exit now
    if the parent is already gone (``parent_pid``: the expected parent, when known)."""
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            prctl = None
        if prctl is not None:
            prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    # The parent may have died between our fork and the prctl above.
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _watch(stop: Any, ppid: int) -> None:
    """Worker thread: cancel the statement in progress on a stop; end the process as soon as
    its parent is gone (the portable half of :func:`die_with_parent`)."""
    cancelled = False
    while True:
        if cancelled:
            time.sleep(PARENT_POLL)
        elif stop.wait(PARENT_POLL):
            cancelled = True
            if _state is not None:
                _state.worker.cancel()
        if os.getppid() != ppid:
            os._exit(1)


def _proc_init(
    target: Target, stop: Any, halt: Any, fail_fast: bool, parent_pid: int | None, pdeathsig: bool
) -> None:
    global _state
    die_with_parent(parent_pid, pdeathsig)
    # The parent coordinates stops (see the module docstring); it dies with SIGKILL or not at all.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ppid = os.getppid()
    _state = _ProcessState(target, stop, halt, fail_fast)
    threading.Thread(target=_watch, args=(stop, ppid), daemon=True).start()


def _proc_chunk(chunk: Sequence[Entry]) -> list[SchemaResult]:
    state = _state
    assert state is not None
    out: list[SchemaResult] = []
    for entry in chunk:
        if state.stop.is_set():
            out.append(_skipped(entry, INTERRUPTED))
        elif state.halt.is_set():
            out.append(_skipped(entry, FAIL_FAST))
        else:
            result = state.worker.apply(entry, state.stop.is_set)
            if state.fail_fast and result.status == "failed":
                state.halt.set()
            out.append(result)
    return out


class ProcessExecutor:
    """``jobs`` worker processes, each keeping one connection and the loaded migrations for
    its life; chunks of ``chunk_size`` schemas are the unit of work.

    A worker process that dies (killed, out of memory) takes its chunk's results with it, and
    the pool then stops the others: the schemas never reported are for the caller to read
    back from the database.
    """

    def __init__(
        self,
        target: Target,
        work: Sequence[SchemaPlan],
        *,
        jobs: int,
        chunk_size: int,
        fail_fast: bool,
    ) -> None:
        self.fail_fast = fail_fast
        self._buffer: list[SchemaResult] = []
        self._abandoned = False
        ctx = multiprocessing.get_context()
        self._stop = ctx.Event()
        self._halt = ctx.Event()
        # Under fork and spawn the worker's parent is this process (forkserver: the server).
        method = ctx.get_start_method()
        parent = os.getpid() if method in ("fork", "spawn") else None
        chunks = _chunks(work, chunk_size)
        self._pool = ProcessPoolExecutor(
            max_workers=min(jobs, len(chunks)),
            mp_context=ctx,
            initializer=_proc_init,
            initargs=(target, self._stop, self._halt, fail_fast, parent, PDEATHSIG),
        )
        self._pending: dict[Future[list[SchemaResult]], Sequence[SchemaPlan]] = {}
        for chunk in chunks:
            entries = [(e.schema, e.kind, e.pending) for e in chunk]
            self._pending[self._pool.submit(_proc_chunk, entries)] = chunk

    def next(self) -> SchemaResult | None:
        """The next schema's result, or None when every chunk is done (blocks)."""
        while not self._buffer and self._pending:
            done, _ = cf.wait(list(self._pending), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                chunk = self._pending.pop(fut)
                self._collect(fut, chunk)
        return self._buffer.pop(0) if self._buffer else None

    def _collect(self, fut: Future[list[SchemaResult]], chunk: Sequence[SchemaPlan]) -> None:
        if fut.cancelled():
            reason = INTERRUPTED if self._stop.is_set() else FAIL_FAST
            self._buffer.extend(_skipped(e, reason) for e in chunk)
            return
        try:
            results = fut.result()
        except Exception:  # BrokenProcessPool: a worker died, the chunk's results with it
            return
        self._buffer.extend(results)
        if self.fail_fast and any(r.status == "failed" for r in results):
            self._halt.set()
            self._cancel_pending()

    def _cancel_pending(self) -> None:
        # Chunks not yet handed to a worker; those already queued see the stop flags.
        for fut in list(self._pending):
            fut.cancel()

    def stop(self) -> None:
        """Start no other schema, cancel the statements in progress (each worker's watcher
        thread sees the flag and cancels its own connection's statement)."""
        self._stop.set()
        self._cancel_pending()

    def abandon(self) -> None:
        """Stop waiting: kill the workers (their transactions roll back); the schemas they did
        not report are read back from the database instead."""
        self._stop.set()
        self._pending.clear()
        self._abandoned = True
        # No public API kills a pool's workers before Python 3.14.
        processes = getattr(self._pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=not self._abandoned, cancel_futures=True)
