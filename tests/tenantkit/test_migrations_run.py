"""Loading, planning and running migrations (happy paths and options)."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

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

from tenantkit import MigrationError
from tenantkit.core.tenancy import Tenancy
from tenantkit.migrations import load_migrations, migrate, plan


def test_load_orders_by_name_and_reads_markers(tmp_path: Path) -> None:
    write(tmp_path, "tenant/0002_b.sql", "-- tenantkit: no-transaction\ncreate index x on t (a);")
    write(tmp_path, "tenant/0001_a.sql", "create table t (a int);")
    write(tmp_path, "tenant/0003_c.py", "TRANSACTIONAL = True\ndef upgrade(conn):\n    pass\n")
    write(tmp_path, "tenant/notes.txt", "ignored")
    mset = load_migrations(tmp_path)
    assert [m.id for m in mset.tenant] == ["0001_a", "0002_b", "0003_c"]
    assert [m.transactional for m in mset.tenant] == [True, False, True]
    assert mset.shared == ()
    assert len(mset.tenant[0].checksum) == 64
    assert mset.digest("tenant") != mset.digest("shared")


def test_load_rejects_duplicate_ids_and_missing_upgrade(tmp_path: Path) -> None:
    write(tmp_path, "tenant/0001_a.sql", "select 1")
    write(tmp_path, "tenant/0001_a.py", "def upgrade(conn):\n    pass\n")
    with pytest.raises(MigrationError, match="share the ID"):
        load_migrations(tmp_path)
    (tmp_path / "tenant/0001_a.py").write_text("x = 1\n")
    (tmp_path / "tenant/0001_a.py").rename(tmp_path / "tenant/0002_b.py")
    with pytest.raises(MigrationError, match="upgrade"):
        load_migrations(tmp_path)


def test_plan_then_migrate_then_noop(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(3)]
    assert plan(mig_tenancy).is_empty  # created at the head
    # A tenant registered without its migrations (e.g. created by an older release).
    bare = f"{mig_tenancy.shared_schema}_bare"
    conn.execute(f'create schema "{bare}"')
    conn.execute(
        f'insert into "{mig_tenancy.shared_schema}".tenantkit_tenants (schema, name) '
        "values (%s, %s)",
        (bare, bare),
    )
    p = plan(mig_tenancy)
    assert [(e.schema, e.pending) for e in p.pending] == [(bare, ("0001_items", "0002_orders"))]
    seen = []
    report = migrate(mig_tenancy, progress=seen.append)
    assert report.ok and report[bare].status == "applied"
    assert report[bare].applied == ("0001_items", "0002_orders")
    assert {report[n].status for n in names} == {"current"}
    assert [e.done for e in seen] == [1] and seen[0].total == 1
    assert history(conn, bare) == ["0001_items", "0002_orders"]
    again = migrate(mig_tenancy)
    assert again.run_id is None and not again.applied  # no-op: no journal entry either


def test_schemas_at_different_versions_in_one_run(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    # The one-message path renders what schemas with the same history share once: each schema
    # must still get its own name, lock, history check and summary row.
    shared = mig_tenancy.shared_schema
    current = [mig_tenancy.create_tenant(f"{shared}_c{i}").schema for i in range(3)]
    bare = [f"{shared}_b{i}" for i in range(3)]
    for name in bare:  # registered without any migration
        conn.execute(psycopg.sql.SQL("create schema {}").format(psycopg.sql.Identifier(name)))
        conn.execute(
            f'insert into "{shared}".tenantkit_tenants (schema, name) values (%s, %s)',
            (name, name),
        )
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")
    report = migrate(mig_tenancy)
    assert report.ok
    assert {n: report[n].applied for n in current} == dict.fromkeys(current, ("0003_note",))
    everything = ("0001_items", "0002_orders", "0003_note")
    assert {n: report[n].applied for n in bare} == dict.fromkeys(bare, everything)
    for name in [*current, *bare]:
        assert history(conn, name) == list(everything)
        assert "note" in columns(conn, name, "items")
    summary = dict(
        conn.execute(
            f'select schema, applied from "{shared}".tenantkit_migration_state '
            "where schema = any(%s)",
            ([*current, *bare],),
        ).fetchall()
    )
    assert summary == {n: list(everything) for n in [*current, *bare]}
    assert plan(mig_tenancy).is_empty


@pytest.mark.parametrize(("executor", "jobs"), [("threads", 3), ("processes", 2)])
def test_parallel_executors(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path, executor: str, jobs: int
) -> None:
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(6)]
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")
    seen = []
    report = mig_tenancy.migrate(executor=executor, jobs=jobs, chunk_size=2, progress=seen.append)
    assert report.ok
    assert {r.schema for r in report.applied} == set(names)
    assert sorted(e.done for e in seen) == list(range(1, 7))
    for name in names:
        assert "note" in columns(conn, name, "items")


def test_scope_options(mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path) -> None:
    a, b = (mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{x}").schema for x in "ab")
    write(mig_dir, "shared/0002_more.sql", "alter table plans add column price int;")
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")
    only_shared = migrate(mig_tenancy, tenants=False)
    assert [r.schema for r in only_shared.applied] == [mig_tenancy.shared_schema]
    only_b = migrate(mig_tenancy, schemas=[b])
    assert [r.schema for r in only_b.applied] == [b]
    assert "note" not in columns(conn, a, "items")
    assert [e.schema for e in plan(mig_tenancy).pending] == [a]


def test_non_transactional_and_python_migrations(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    name = mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_a").schema
    write(
        mig_dir,
        "tenant/0003_concurrently.sql",
        "-- tenantkit: no-transaction\ncreate index concurrently if not exists items_qty_idx "
        "on items (qty);\n",
    )
    write(
        mig_dir,
        "tenant/0004_seed.py",
        "def upgrade(conn):\n    conn.execute(\"insert into items (name) values ('seed')\")\n",
    )
    report = migrate(mig_tenancy)
    assert report.ok, report.failed
    assert report[name].applied == ("0003_concurrently", "0004_seed")
    idx = conn.execute(
        "select count(*) from pg_indexes where schemaname = %s and indexname = 'items_qty_idx'",
        (name,),
    ).fetchone()
    assert idx == (1,)
    assert conn.execute(f'select name from "{name}".items').fetchall() == [("seed",)]
    # A new tenant cannot run CONCURRENTLY inside its creating transaction: it is cloned
    # from the template, which migrate() built outside one.
    other = mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_b").schema
    assert history(conn, other) == ["0001_items", "0002_orders", "0003_concurrently", "0004_seed"]


def test_fail_fast_skips_the_rest(mig_tenancy: Tenancy, mig_dir: Path) -> None:
    names = [mig_tenancy.create_tenant(f"{mig_tenancy.shared_schema}_{i}").schema for i in range(4)]
    write(mig_dir, "tenant/0003_broken.sql", "alter table nope add column x int;")
    report = migrate(mig_tenancy, fail_fast=True)
    assert len(report.failed) == 1 and report.failed[0].migration == "0003_broken"
    assert len(report.skipped) == len(names) - 1
    assert "nope" in (report.failed[0].error or "")
