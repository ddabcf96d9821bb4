"""Failures: bad data in one tenant, a killed migrator, concurrent migrators, edited files."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from _cli_support import cli_env, tenantkit_command
from _migrations_support import (  # noqa: F401 (fixtures)
    children_of,
    columns,
    history,
    kill_all,
    mig_dir,
    mig_tenancy,
    migrated,
    other_backends,
    process_alive,
    runs,
    shared_name,
    sleeping,
    slow_migration,
    wait_for,
    write,
)

from tenantkit.core.tenancy import Tenancy
from tenantkit.errors import MigrationChecksumMismatch, PoolerDetected
from tenantkit.migrations import MigrationInterrupted, migrate, plan


def _tenants(tenancy: Tenancy, n: int) -> list[str]:
    return [tenancy.create_tenant(f"{tenancy.shared_schema}_{i}").schema for i in range(n)]


def test_one_tenant_with_bad_data_fails_alone(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    names = _tenants(mig_tenancy, 5)
    bad = names[2]
    conn.execute(f"insert into \"{bad}\".items (name, qty) values ('broken', null)")
    write(
        mig_dir,
        "tenant/0003_qty.sql",
        "alter table items add column note text;\nalter table items alter column qty set not null;",
    )
    report = migrate(mig_tenancy)
    assert [r.schema for r in report.failed] == [bad]
    assert report[bad].migration == "0003_qty"
    assert "qty" in (report[bad].error or "")
    assert {r.schema for r in report.applied} == set(names) - {bad}
    # Rolled back as a whole: not even the first statement of the migration stayed.
    assert "note" not in columns(conn, bad, "items")
    assert "0003_qty" not in history(conn, bad)

    conn.execute(f'update "{bad}".items set qty = 0')
    rerun = migrate(mig_tenancy)
    assert rerun.ok
    assert [r.schema for r in rerun.applied] == [bad]
    assert "note" in columns(conn, bad, "items")


def test_terminated_migrator_leaves_old_or_new_and_rerun_completes(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    names = _tenants(mig_tenancy, 6)
    write(
        mig_dir,
        "tenant/0003_slow.sql",
        "alter table items add column note text;\nselect pg_sleep(0.15);\n"
        "create index items_note_idx on items (note);",
    )
    box: dict[str, object] = {}
    runner = threading.Thread(target=lambda: box.update(report=migrate(mig_tenancy)))
    runner.start()
    killed = None
    deadline = time.monotonic() + 10
    while killed is None and time.monotonic() < deadline:
        row = conn.execute(
            "select pid from pg_stat_activity where datname = current_database() "
            "and query like '%%pg_sleep(0.15)%%' and pid <> pg_backend_pid() limit 1"
        ).fetchone()
        if row:
            conn.execute("select pg_terminate_backend(%s)", (row[0],))
            killed = row[0]
        else:
            time.sleep(0.005)
    runner.join(30)
    assert killed is not None
    report = box["report"]
    assert len(report.failed) == 1  # type: ignore[attr-defined]
    for name in names:
        has_col = "note" in columns(conn, name, "items")
        recorded = "0003_slow" in history(conn, name)
        assert has_col == recorded, name  # old or new, never in between
    rerun = migrate(mig_tenancy)
    assert rerun.ok
    assert plan(mig_tenancy).is_empty
    assert all("0003_slow" in history(conn, n) for n in names)


def test_two_migrators_apply_each_migration_once(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    names = _tenants(mig_tenancy, 8)
    shared = mig_tenancy.shared_schema
    conn.execute(f'create table "{shared}".applied_log (schema text not null)')
    write(
        mig_dir,
        "tenant/0003_log.sql",
        "select pg_sleep(0.01);\ninsert into applied_log select current_schema();\n",
    )
    reports: list[object] = []
    start = threading.Barrier(2)

    def run(executor: str) -> None:
        start.wait()
        reports.append(migrate(mig_tenancy, executor=executor, jobs=2))  # type: ignore[arg-type]

    threads = [threading.Thread(target=run, args=(e,)) for e in ("sequential", "threads")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r.ok for r in reports)  # type: ignore[attr-defined]
    rows = conn.execute(
        f'select schema, count(*) from "{shared}".applied_log group by 1 order by 1'
    ).fetchall()
    assert rows == [(n, 1) for n in sorted(names)]
    applied = [r.schema for rep in reports for r in rep.applied]  # type: ignore[attr-defined]
    assert sorted(applied) == sorted(names)


def test_edited_applied_migration_is_refused(mig_tenancy: Tenancy, mig_dir: Path) -> None:
    _tenants(mig_tenancy, 2)
    path = mig_dir / "tenant" / "0001_items.sql"
    path.write_text(path.read_text() + "\ncreate index items_qty_idx on items (qty);\n")
    with pytest.raises(MigrationChecksumMismatch, match=r"0001_items\.sql") as info:
        migrate(mig_tenancy)
    assert info.value.migration == "0001_items"
    with pytest.raises(MigrationChecksumMismatch):
        plan(mig_tenancy)


def test_killed_run_is_resumed(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    names = _tenants(mig_tenancy, 3)
    shared = mig_tenancy.shared_schema
    # Simulate a run whose process died halfway: its journal row stays "running", one tenant
    # got the new migration, the others did not.
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")
    first = migrate(mig_tenancy, schemas=[names[0]])
    conn.execute(
        f"update \"{shared}\".tenantkit_migration_runs set status = 'running', "
        "backend_pid = 0, finished_at = null where id = %s",
        (first.run_id,),
    )
    report = migrate(mig_tenancy)
    assert report.resumed_from == first.run_id
    assert sorted(r.schema for r in report.applied) == sorted(names[1:])
    status = conn.execute(
        f'select status from "{shared}".tenantkit_migration_runs where id = %s', (first.run_id,)
    ).fetchone()
    assert status == ("interrupted",)
    journal = conn.execute(
        f'select schema, status, migrations from "{shared}".tenantkit_migration_journal '
        "where run_id = %s order by schema",
        (report.run_id,),
    ).fetchall()
    assert journal == [(n, "applied", ["0003_note"]) for n in sorted(names[1:])]


def test_deferred_constraint_failing_at_commit(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    (name,) = _tenants(mig_tenancy, 1)
    write(
        mig_dir,
        "tenant/0003_refs.sql",
        "create table refs (id int primary key,\n"
        "    parent int references refs (id) deferrable initially deferred);\n"
        "insert into refs values (1, 42);\n",
    )
    report = migrate(mig_tenancy)
    result = report[name]
    assert (result.status, result.applied, result.migration) == ("failed", (), "0003_refs")
    assert "refs" not in [
        r[0]
        for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = %s", (name,)
        )
    ]


# migrate() with the processes executor, in a process of its own (argv: conninfo, shared
# schema, migrations directory), with the kernel's parent-death signal off: the workers' own
# watch of their parent must do.
_NO_PDEATHSIG = """
import sys
from types import SimpleNamespace
from tenantkit.migrations import _executors, migrate
_executors.PDEATHSIG = False
conninfo, shared, directory = sys.argv[1:4]
tenancy = SimpleNamespace(conninfo=conninfo, shared_schema=shared, migrations_dir=directory)
migrate(tenancy, executor="processes", jobs=2, chunk_size=1)
"""


@pytest.mark.parametrize("how", ["cli", "no-pdeathsig"])
def test_kill_9_takes_the_process_workers_along_and_the_next_run_resumes(
    dsn: str, mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path, how: str
) -> None:
    shared = mig_tenancy.shared_schema
    names = _tenants(mig_tenancy, 6)
    mid = slow_migration(mig_dir, shared, 0.5)
    before = other_backends(conn)
    if how == "cli":
        command = [
            *tenantkit_command(),
            *("--dsn", dsn, "migrate", "--migrations", str(mig_dir), "--shared-schema", shared),
            *("--executor", "processes", "--jobs", "2", "--chunk-size", "1"),
        ]
    else:
        command = [sys.executable, "-c", _NO_PDEATHSIG, dsn, shared, str(mig_dir)]
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=cli_env()
    )
    workers: list[int] = []
    try:
        assert wait_for(lambda: len(children_of(proc.pid)) >= 2 and sleeping(conn, shared) >= 2)
        workers = children_of(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        assert wait_for(lambda: not any(process_alive(w) for w in workers), 5), "workers live on"
        # Their connections and the run's own are closed: no backend is left behind.
        assert wait_for(lambda: other_backends(conn) == before, 5)
    finally:
        kill_all(workers)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = migrated(conn, names, mid)
    run_id, status, _, _ = runs(conn, shared)[-1]
    assert status == "running"  # nobody left to say otherwise
    report = migrate(mig_tenancy, executor="threads", jobs=3)
    assert report.ok and report.resumed_from == run_id
    assert runs(conn, shared)[-2][1] == "interrupted"
    assert sorted(r.schema for r in report.applied) == sorted(set(names) - set(done))
    assert migrated(conn, names, mid) == names


def test_live_runs_are_not_taken_for_dead(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    """A run starting while another runs neither marks it interrupted nor resumes it."""
    shared = mig_tenancy.shared_schema
    names = _tenants(mig_tenancy, 4)
    mid = slow_migration(mig_dir, shared, 0.3)
    box: dict[str, object] = {}
    first = threading.Thread(target=lambda: box.update(first=migrate(mig_tenancy)))
    first.start()
    try:
        assert wait_for(lambda: sleeping(conn, shared) >= 1)
        # The second waits on the schema the first is migrating, then finds the rest.
        second = migrate(mig_tenancy, executor="threads", jobs=2)
    finally:
        first.join(30)
    assert second.ok and second.resumed_from is None
    report = box["first"]
    assert report.ok and report.resumed_from is None  # type: ignore[attr-defined]
    assert [r[1] for r in runs(conn, shared)[-2:]] == ["done", "done"]
    assert migrated(conn, names, mid) == names


def test_interrupt_from_progress_callback_leaves_a_true_journal(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    """A KeyboardInterrupt reaching migrate() (here from its progress callback) stops it
    gracefully: MigrationInterrupted carries the report, the journal agrees with the
    schemas' own histories, and the next run resumes."""
    shared = mig_tenancy.shared_schema
    # Enough tenants, taken one at a time, that some are left when the stop lands: the
    # workers may finish a few more before the calling thread sees the second result.
    names = _tenants(mig_tenancy, 16)
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")

    def progress(event: object) -> None:
        if event.done == 2:  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    with pytest.raises(MigrationInterrupted) as info:
        migrate(mig_tenancy, executor="threads", jobs=2, chunk_size=1, progress=progress)
    report = info.value.report
    assert report.interrupted and not report.ok
    done = migrated(conn, names, "0003_note")
    assert 2 <= len(done) < len(names)
    assert sorted(r.schema for r in report.applied) == sorted(done)
    assert len(report.results) == len(names) + 1  # every schema accounted for
    assert runs(conn, shared)[-1][:3] == (report.run_id, "interrupted", len(done))
    again = migrate(mig_tenancy)
    assert again.ok and again.resumed_from == report.run_id
    assert sorted(r.schema for r in again.applied) == sorted(set(names) - set(done))


def test_stop_lets_a_non_transactional_migration_finish(
    dsn: str, mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    """Ctrl-C during CREATE INDEX CONCURRENTLY waits for it: cancelled, it would leave an
    invalid index, which "if not exists" takes for done next time."""
    names = _tenants(mig_tenancy, 2)
    write(
        mig_dir,
        "tenant/0003_concurrently.sql",
        "-- tenantkit: no-transaction\n"
        "create index concurrently if not exists items_qty_idx on items (qty);\n",
    )
    waiting = (
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
        "and query like '%%create index concurrently%%' and datname = current_database()"
    )

    def interrupt_once_waiting(blocker: psycopg.Connection) -> None:
        if wait_for(lambda: conn.execute(waiting).fetchone() == (1,)):
            # Ctrl-C, to the thread running migrate() (a real signal, to wake its wait).
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            time.sleep(0.3)  # time enough for a cancel to land, were one sent
        blocker.commit()

    # An open write transaction on the first tenant's table makes its CREATE INDEX
    # CONCURRENTLY wait: the stop arrives while it runs.
    with psycopg.connect(dsn) as blocker:
        blocker.execute(f"insert into \"{names[0]}\".items (name, qty) values ('x', 1)")
        helper = threading.Thread(target=interrupt_once_waiting, args=(blocker,))
        helper.start()
        try:
            with pytest.raises(MigrationInterrupted) as info:
                migrate(mig_tenancy)
        finally:
            helper.join()
    report = info.value.report
    assert report[names[0]].applied == ("0003_concurrently",)
    assert (report[names[1]].status, report[names[1]].error) == ("skipped", "interrupted")
    valid = conn.execute(
        "select indisvalid from pg_index where indexrelid = %s::regclass",
        (f'"{names[0]}".items_qty_idx',),
    ).fetchone()
    assert valid == (True,)
    again = migrate(mig_tenancy)
    assert again.resumed_from == report.run_id
    assert [r.schema for r in again.applied if r.kind == "tenant"] == [names[1]]


def test_killed_process_worker_is_read_back(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    """A worker process killed mid-run takes its chunk's results with it: the parent reads
    the outcome of every unreported schema back from the database."""
    shared = mig_tenancy.shared_schema
    names = _tenants(mig_tenancy, 6)
    mid = slow_migration(mig_dir, shared, 0.3)
    killed: list[int] = []

    def kill_a_worker() -> None:
        if wait_for(lambda: sleeping(conn, shared) >= 2 and migrated(conn, names, mid)):
            pid = children_of(os.getpid())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    try:
        report = migrate(mig_tenancy, executor="processes", jobs=2, chunk_size=3)
    finally:
        killer.join()
    assert killed
    done = migrated(conn, names, mid)
    assert sorted(r.schema for r in report.applied) == sorted(done)
    lost = [r for r in report.results if r.status == "failed"]
    assert lost and all("worker process died" in (r.error or "") for r in lost)
    assert sorted(r.schema for r in lost) == sorted(set(names) - set(done))
    assert runs(conn, shared)[-1][1:3] == ("failed", len(done))
    assert migrate(mig_tenancy).ok and migrated(conn, names, mid) == names


# -- through pgbouncer (transaction pooling, 3 server connections) ------------------------------


def _advisory_locks(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """Advisory locks held or awaited in ``conn``'s database, by any server connection."""
    return conn.execute(
        "select pid, classid, objid, objsubid, granted from pg_locks where locktype = "
        "'advisory' and database = (select oid from pg_database where datname = "
        "current_database())"
    ).fetchall()


class _Traffic:
    """Application traffic through the pooler while migrations run: short transactions on
    three client connections, so that the pooler hands each of the migrators' transactions to
    whichever server connection is free, as it does in production."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(3)]

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None) as c:
            while not self.stop.is_set():
                c.execute("select pg_sleep(0.003)")
                time.sleep(0.001)

    def __enter__(self) -> _Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def test_concurrent_migrators_through_pgbouncer(
    pgbouncer: Any, mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    """Three runs start together (shared migrations included), a fourth joins while they
    migrate tenants (it then finds schemas migrated behind its plan and takes the careful
    path), all through pgbouncer with 3 server connections, with application traffic."""
    shared = mig_tenancy.shared_schema
    names = _tenants(mig_tenancy, 20)
    # Each migration logs where it really ran: its schema and search_path.
    conn.execute(f'create table "{shared}".applied_log (schema text not null, path text)')
    log = "insert into applied_log select current_schema(), current_setting('search_path');\n"
    write(
        mig_dir,
        "shared/0002_price.sql",
        "alter table plans add column price int;\nselect pg_sleep(0.2);\n" + log,
    )
    mid = slow_migration(mig_dir, shared, 0.1)
    write(mig_dir, "tenant/0004_log.sql", log)
    command = [
        *tenantkit_command(),
        *("--dsn", pgbouncer.dsn, "migrate", "--migrations", str(mig_dir)),
        *("--shared-schema", shared, "--json"),
    ]

    def start(*executor: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*command, *executor],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )

    traffic = _Traffic(pgbouncer.dsn).__enter__()
    procs = [
        start("--executor", "threads", "--jobs", "3"),
        start("--executor", "processes", "--jobs", "2", "--chunk-size", "2"),
        start("--executor", "sequential"),
    ]
    outputs = []
    try:
        assert wait_for(lambda: sleeping(conn, shared) >= 1, 30)
        procs.append(start("--executor", "sequential"))
        for proc in procs:
            # A lock left on a pooled server connection hangs the others: fail, not wait.
            outputs.append(proc.communicate(timeout=60))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        traffic.__exit__()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
        assert json.loads(out)["ok"] is True
    rows = conn.execute(
        f'select schema, path, count(*) from "{shared}".applied_log group by 1, 2'
    ).fetchall()
    expected = [(shared, f'"{shared}", pg_temp', 1)]
    expected += [(n, f'"{n}", "{shared}", pg_temp', 1) for n in names]
    assert sorted(rows) == sorted(expected)
    # Recorded exactly where it ran, and each schema by one run.
    assert migrated(conn, names, mid) == names
    assert all("note" in columns(conn, n, "items") for n in names)
    applied = [r for out, _ in outputs for r in json.loads(out)["results"]]
    assert sorted(r["schema"] for r in applied if r["status"] == "applied") == sorted(
        [shared, *names]
    )
    assert _advisory_locks(conn) == []
    # None of them took another for dead.
    assert [(r[1], r[3]) for r in runs(conn, shared)[-4:]] == [("done", None)] * 4


def test_non_transactional_migration_refuses_pgbouncer(
    pgbouncer: Any, mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    names = _tenants(mig_tenancy, 2)
    write(mig_dir, "tenant/0003_tx.sql", "alter table items add column note text;")
    write(
        mig_dir,
        "tenant/0004_concurrently.sql",
        "-- tenantkit: no-transaction\n"
        "create index concurrently if not exists items_note_idx on items (note);\n",
    )
    through = SimpleNamespace(
        conninfo=pgbouncer.dsn, shared_schema=mig_tenancy.shared_schema, migrations_dir=mig_dir
    )
    with pytest.raises(PoolerDetected, match=r"0004_concurrently.*conninfo=.*--dsn"):
        migrate(through)
    # Refused before anything ran.
    assert migrated(conn, names, "0003_tx") == []
    assert _advisory_locks(conn) == []
    # Directly, it runs; and whatever is transactional runs through pgbouncer.
    report = migrate(mig_tenancy)
    assert report.ok and migrated(conn, names, "0004_concurrently") == names
    write(mig_dir, "tenant/0005_more.sql", "alter table items add column more text;")
    through = migrate(mig_tenancy, conninfo=pgbouncer.dsn, executor="threads", jobs=2)
    assert through.ok and migrated(conn, names, "0005_more") == names


# migrate() through a pooler, in a process of its own (argv: conninfo, shared schema,
# migrations directory), with a fast heartbeat so that its death shows within a second.
_FAST_HEARTBEAT = """
import sys
from types import SimpleNamespace
from tenantkit.migrations import _journal, migrate
_journal.HEARTBEAT, _journal.GRACE = 0.1, 0.5
conninfo, shared, directory = sys.argv[1:4]
tenancy = SimpleNamespace(conninfo=conninfo, shared_schema=shared, migrations_dir=directory)
migrate(tenancy, executor="threads", jobs=2)
"""


def test_killed_run_through_pgbouncer_is_resumed(
    pgbouncer: Any, mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    """Through a pooler a run shows it is alive by its heartbeat, which stops with it."""
    shared = mig_tenancy.shared_schema
    names = _tenants(mig_tenancy, 6)
    mid = slow_migration(mig_dir, shared, 0.5)
    proc = subprocess.Popen(
        [sys.executable, "-c", _FAST_HEARTBEAT, pgbouncer.dsn, shared, str(mig_dir)],
        stdin=subprocess.DEVNULL,
        env=cli_env(),
    )
    try:
        assert wait_for(lambda: sleeping(conn, shared) >= 1)
        run_id = runs(conn, shared)[-1][0]
        # Alive: a run starting now (with other work) neither marks it interrupted nor
        # resumes it.
        write(mig_dir, "shared/0002_price.sql", "alter table plans add column price int;")
        alive = migrate(mig_tenancy, conninfo=pgbouncer.dsn, tenants=False)
        assert alive.ok and alive.run_id is not None and alive.resumed_from is None
        assert runs(conn, shared)[-2][:2] == (run_id, "running")
    finally:
        proc.kill()
        proc.wait()

    def past_due() -> bool:
        row = conn.execute(
            f'select alive_until < now() from "{shared}".tenantkit_migration_runs where id = %s',
            (run_id,),
        ).fetchone()
        return bool(row and row[0])

    assert wait_for(past_due, 5)
    report = migrate(mig_tenancy, conninfo=pgbouncer.dsn, executor="threads", jobs=2)
    assert report.ok and report.resumed_from == run_id
    assert runs(conn, shared)[-3][:2] == (run_id, "interrupted")
    assert migrated(conn, names, mid) == names
    assert _advisory_locks(conn) == []
