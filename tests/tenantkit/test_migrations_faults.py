"""Failures: bad data in one tenant, a killed migrator, concurrent migrators, edited files."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
from _migrations_support import (  # noqa: F401 (fixtures)
    columns,
    history,
    mig_dir,
    mig_tenancy,
    shared_name,
    write,
)

from tenantkit import MigrationChecksumMismatch
from tenantkit.migrations import migrate, plan
from tenantkit.tenancy import Tenancy


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
