"""`tenantkit migrate`, `plan` and `drift` through the real console script."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
from _cli_support import cli_env, tenantkit, tenantkit_command
from _migrations_support import (  # noqa: F401 (fixtures)
    children_of,
    kill_all,
    mig_dir,
    mig_tenancy,
    migrated,
    process_alive,
    runs,
    shared_name,
    sleeping,
    slow_migration,
    wait_for,
    write,
)

from tenantkit.core.tenancy import Tenancy


def _run(dsn: str, tenancy: Tenancy, *args: str) -> tuple[int, str]:
    result = tenantkit(
        *args[:1],
        "--migrations",
        str(tenancy.migrations_dir),
        "--shared-schema",
        tenancy.shared_schema,
        *args[1:],
        dsn=dsn,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


def start_migrate(dsn: str, tenancy: Tenancy, *args: str) -> subprocess.Popen[str]:
    """``tenantkit migrate ARGS...`` on ``tenancy``, running in the background."""
    return subprocess.Popen(
        [
            *tenantkit_command(),
            "--dsn",
            dsn,
            "migrate",
            "--migrations",
            str(tenancy.migrations_dir),
            "--shared-schema",
            tenancy.shared_schema,
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def test_plan_migrate_and_exit_codes(
    dsn: str, mig_tenancy: Tenancy, mig_dir: Path, conn: psycopg.Connection
) -> None:
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(3)]
    code, out = _run(dsn, mig_tenancy, "migrate", "--plan")
    assert code == 0 and "Nothing to migrate" in out
    write(mig_dir, "tenant/0003_qty.sql", "alter table items alter column qty set not null;")
    conn.execute(f"insert into \"{names[1]}\".items (name) values ('no qty')")
    code, out = _run(dsn, mig_tenancy, "migrate", "--plan", "--json")
    assert code == 0
    assert {p["schema"] for p in json.loads(out)["pending"]} == set(names)
    code, out = _run(dsn, mig_tenancy, "migrate", "--jobs", "2", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["counts"]["failed"] == 1 and report["executor"] == "threads"
    failed = [r for r in report["results"] if r["status"] == "failed"]
    assert failed[0]["schema"] == names[1] and failed[0]["migration"] == "0003_qty"
    conn.execute(f'delete from "{names[1]}".items')
    code, out = _run(dsn, mig_tenancy, "migrate", "--schema", names[1])
    assert code == 0, out
    assert "applied" in out


def test_shared_and_tenant_flags(dsn: str, mig_tenancy: Tenancy, mig_dir: Path) -> None:
    mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_a")
    write(mig_dir, "shared/0002_more.sql", "alter table plans add column price int;")
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")
    code, out = _run(dsn, mig_tenancy, "migrate", "--shared", "--json")
    assert code == 0
    assert [r["kind"] for r in json.loads(out)["results"] if r["status"] == "applied"] == ["shared"]
    code, out = _run(dsn, mig_tenancy, "migrate", "--tenant", "--json")
    assert [r["kind"] for r in json.loads(out)["results"] if r["status"] == "applied"] == ["tenant"]
    code, out = _run(dsn, mig_tenancy, "migrate", "--shared", "--tenant")
    assert code == 2


def test_checksum_error_is_reported(dsn: str, mig_tenancy: Tenancy, mig_dir: Path) -> None:
    mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_a")
    write(mig_dir, "tenant/0001_items.sql", "create table items (id int);")
    code, out = _run(dsn, mig_tenancy, "migrate")
    assert code == 1 and "0001_items.sql" in out


def test_drift_command(dsn: str, mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    name = mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_a").schema
    code, out = _run(dsn, mig_tenancy, "drift")
    assert code == 0 and "No drift" in out
    conn.execute(f'alter table "{name}".items add column extra int')
    code, out = _run(dsn, mig_tenancy, "drift", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["drifted"][0]["differences"] == [
        {"object": "column items.extra", "change": "extra", "expected": None, "actual": "integer"}
    ]


def test_plan_command_lists_pending_and_checks(
    dsn: str, mig_tenancy: Tenancy, mig_dir: Path
) -> None:
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(2)]
    code, out = _run(dsn, mig_tenancy, "plan", "--check")
    assert code == 0 and "Nothing to migrate" in out
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")
    code, out = _run(dsn, mig_tenancy, "plan")
    assert code == 0  # listing is not failing
    for name in names:
        line = next(row for row in out.splitlines() if row.split()[:1] == [name])
        assert "0003_note" in line
    code, out = _run(dsn, mig_tenancy, "plan", "--check", "--schema", names[0], "--json")
    assert code == 1  # --check: pending migrations fail a CI step
    assert [p["schema"] for p in json.loads(out)["pending"]] == [names[0]]


def test_plan_check_fails_when_applied_migrations_are_missing_from_disk(
    dsn: str, mig_tenancy: Tenancy, mig_dir: Path
) -> None:
    """Issue 16: code older than the database used to plan as "at the head", exit 0."""
    tenant = mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_old").schema
    applied = sorted(p.name for p in (mig_dir / "tenant").iterdir())
    newest = applied[-1]
    (mig_dir / "tenant" / newest).unlink()  # the deployed code lacks a migration the db has
    code, out = _run(dsn, mig_tenancy, "plan", "--check")
    assert code == 1, out
    assert "Nothing to migrate" not in out
    assert "older than the database" in out
    row = next(r for r in out.splitlines() if r.split()[:1] == [tenant])
    assert Path(newest).stem in row
    code, out = _run(dsn, mig_tenancy, "plan", "--json")
    assert code == 0  # listing is not failing
    assert json.loads(out)["unknown"][tenant] == [Path(newest).stem]


def test_empty_migrations_directory_is_refused(
    dsn: str, mig_tenancy: Tenancy, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    (empty / "shared").mkdir(parents=True)
    (empty / "tenant").mkdir()
    for command in ("plan", "migrate"):
        result = tenantkit(
            command,
            "--migrations",
            str(empty),
            "--shared-schema",
            mig_tenancy.shared_schema,
            dsn=dsn,
        )
        assert result.returncode == 2, result.stderr
        assert "no migrations in" in result.stderr


def test_migrate_without_registry_exits_3_with_the_init_hint(
    dsn: str, mig_dir: Path, shared_name: str
) -> None:
    result = tenantkit(
        "migrate", "--migrations", str(mig_dir), "--shared-schema", shared_name, dsn=dsn
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "tenantkit init" in result.stderr


def test_drift_needs_migrations_or_a_reference(dsn: str, mig_tenancy: Tenancy) -> None:
    result = tenantkit("drift", "--shared-schema", mig_tenancy.shared_schema, dsn=dsn)
    assert result.returncode == 2
    assert "--reference TENANT" in result.stderr


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
def test_sigterm_stops_with_a_true_journal_and_the_next_run_resumes(
    dsn: str, mig_tenancy: Tenancy, mig_dir: Path, conn: psycopg.Connection, executor: str
) -> None:
    shared = mig_tenancy.shared_schema
    names = [mig_tenancy.create_tenant(f"{shared}_{i}").schema for i in range(8)]
    mid = slow_migration(mig_dir, shared, 0.4)
    proc = start_migrate(
        dsn, mig_tenancy, "--executor", executor, "--jobs", "2", "--chunk-size", "1", "--json"
    )
    workers: list[int] = []
    try:
        # Stop it once a first tenant is migrated and others are in progress.
        assert wait_for(lambda: migrated(conn, names, mid) and sleeping(conn, shared), 30)
        workers = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert wait_for(lambda: not any(process_alive(w) for w in workers), 5), workers
    finally:
        kill_all(workers)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "again to resume" in err, err
    # The journal tells the truth: what the tenants' own histories say was done.
    done = migrated(conn, names, mid)
    run_id, status, applied, _ = runs(conn, shared)[-1]
    assert (status, applied) == ("interrupted", len(done))
    assert 0 < len(done) < len(names)
    journal = conn.execute(
        f'select schema, status, migrations from "{shared}".tenantkit_migration_journal '
        "where run_id = %s order by schema",
        (run_id,),
    ).fetchall()
    assert [s for s, st, m in journal if st == "applied" and m == [mid]] == done
    assert sorted(s for s, st, _ in journal if st == "skipped") == sorted(set(names) - set(done))
    report = json.loads(out)
    assert report["interrupted"] is True and report["counts"]["applied"] == len(done)
    # The schemas in progress were rolled back whole: no column without its history row.
    for name in names:
        cols = conn.execute(
            "select count(*) from information_schema.columns where table_schema = %s "
            "and table_name = 'items' and column_name = 'note'",
            (name,),
        ).fetchone()
        assert cols == ((1,) if name in done else (0,)), name

    again = mig_tenancy.migrate(executor="threads", jobs=4)
    assert again.ok and again.resumed_from == run_id
    assert sorted(r.schema for r in again.applied) == sorted(set(names) - set(done))
    assert migrated(conn, names, mid) == names
