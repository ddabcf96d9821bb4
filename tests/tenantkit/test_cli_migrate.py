"""`tenantkit migrate`, `plan` and `drift` through the real console script."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from _cli_support import tenantkit
from _migrations_support import mig_dir, mig_tenancy, shared_name, write  # noqa: F401

from tenantkit.tenancy import Tenancy


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


def test_drift_needs_migrations_or_a_reference(dsn: str, mig_tenancy: Tenancy) -> None:
    result = tenantkit("drift", "--shared-schema", mig_tenancy.shared_schema, dsn=dsn)
    assert result.returncode == 2
    assert "--reference TENANT" in result.stderr
