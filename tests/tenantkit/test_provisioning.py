"""Provisioning: migrations, template clone, spares; validity rules and concurrency."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import threading
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

from tenantkit.core.storage import RETIRED_PREFIX
from tenantkit.core.tenancy import AsyncTenancy, Tenancy
from tenantkit.errors import DomainExists, InvalidSchemaName, MigrationError, SchemaNotFound
from tenantkit.introspection.catalog import fingerprint
from tenantkit.provisioning import SPARE_PREFIX, MigrationProvisioner, Spares, Template

FULL = ["0001_items", "0002_orders"]


def test_paths_produce_the_same_schema(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    prov = mig_tenancy.provisioner
    assert isinstance(prov, MigrationProvisioner)
    s = mig_tenancy.shared_schema
    by_migrations = mig_tenancy.create_tenant(f"{s}_m").schema
    assert prov.last_path == "migrations"
    Template(mig_tenancy).ensure()
    by_template = mig_tenancy.create_tenant(f"{s}_t").schema
    assert prov.last_path == "template"
    assert mig_tenancy.spares.fill(2) == 2
    assert mig_tenancy.spares.fill(2) == 0  # already there
    by_spare = mig_tenancy.create_tenant(f"{s}_s").schema
    assert prov.last_path == "spare"
    assert mig_tenancy.spares.count() == 1
    prints = {fingerprint(conn, n) for n in (by_migrations, by_template, by_spare)}
    assert len(prints) == 1
    for name in (by_migrations, by_template, by_spare):
        assert history(conn, name) == FULL
        # Identity and serial sequences belong to the new schema and work.
        conn.execute(f"insert into \"{name}\".items (name) values ('x')")
        conn.execute(f'insert into "{name}".orders (item_id) values (1)')
    assert mig_tenancy.plan().is_empty
    assert mig_tenancy.drift().ok


def test_template_behind_head_falls_back_to_migrations(
    mig_tenancy: Tenancy, conn: psycopg.Connection, mig_dir: Path
) -> None:
    s = mig_tenancy.shared_schema
    mig_tenancy.spares.fill(1)
    write(mig_dir, "tenant/0003_note.sql", "alter table items add column note text;")
    name = mig_tenancy.create_tenant(f"{s}_a").schema
    assert mig_tenancy.provisioner.last_path == "migrations"  # neither spare nor template used
    assert "note" in columns(conn, name, "items")
    assert history(conn, name) == [*FULL, "0003_note"]
    # migrate() brings the template and the spare along with the tenants.
    report = mig_tenancy.migrate()
    kinds = {r.kind for r in report.applied}
    assert kinds == {"template", "spare"}
    other = mig_tenancy.create_tenant(f"{s}_b").schema
    assert mig_tenancy.provisioner.last_path == "spare"
    assert "note" in columns(conn, other, "items")
    third = mig_tenancy.create_tenant(f"{s}_c").schema
    assert mig_tenancy.provisioner.last_path == "template"
    assert fingerprint(conn, third) == fingerprint(conn, name)


def test_concurrent_claims_take_different_spares(
    mig_tenancy: Tenancy, conn: psycopg.Connection, dsn: str
) -> None:
    spares = Spares(mig_tenancy)
    spares.fill(2)
    s = mig_tenancy.shared_schema
    first = psycopg.connect(dsn)
    second = psycopg.connect(dsn)
    try:
        assert spares.claim(first, f"{s}_one")  # row locked, not yet committed
        assert spares.claim(second, f"{s}_two")  # skips the locked row, takes the other
        assert not Spares(mig_tenancy).claim(conn, f"{s}_three")
        first.commit()
        second.commit()
    finally:
        first.close()
        second.close()
    for name in (f"{s}_one", f"{s}_two"):
        assert history(conn, name) == FULL


def test_parallel_create_tenant_with_spares(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    mig_tenancy.spares.fill(4)
    s = mig_tenancy.shared_schema
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            mig_tenancy.create_tenant(f"{s}_p{i}")
        except BaseException as exc:  # surfaced in the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert mig_tenancy.spares.count() == 0
    assert all(history(conn, f"{s}_p{i}") == FULL for i in range(4))
    assert mig_tenancy.drift().ok


def test_failed_creation_leaves_nothing(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    s = mig_tenancy.shared_schema
    mig_tenancy.create_tenant(f"{s}_a", domains=["a.example.com"])
    mig_tenancy.spares.fill(1)
    # The domain insert fails after the spare was claimed and renamed: all of it rolls back.
    with pytest.raises(DomainExists):
        mig_tenancy.create_tenant(f"{s}_x", domains=["a.example.com"])
    assert mig_tenancy.spares.count() == 1  # the claim was rolled back with the rest
    exists = conn.execute(
        "select count(*) from pg_namespace where nspname = %s", (f"{s}_x",)
    ).fetchone()
    assert exists == (0,)


def test_spares_clear_and_template_drop(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    spares = Spares(mig_tenancy)
    spares.fill(2)
    assert spares.clear() == 2
    assert spares.count() == 0
    tpl = Template(mig_tenancy)
    tpl.drop()
    assert not tpl.is_current(conn)


def _nsp_oid(conn: psycopg.Connection, name: str) -> int | None:
    row = conn.execute(
        "select oid::bigint from pg_namespace where nspname = %s", (name,)
    ).fetchone()
    return None if row is None else int(row[0])


def _state_rows(conn: psycopg.Connection, shared: str, name: str) -> int:
    row = conn.execute(
        psycopg.sql.SQL(
            "select count(*) from {}.tenantkit_migration_state where schema = %s"
        ).format(psycopg.sql.Identifier(shared)),
        (name,),
    ).fetchone()
    return int(row[0]) if row else 0


def test_retired_tenant_is_adopted_as_a_spare(
    mig_tenancy: Tenancy, conn: psycopg.Connection
) -> None:
    """retire_tenant() frees the name and hosts, keeping the migrated schema; Spares.adopt()
    puts it in the pool, and the next tenant claims it by rename (no clone, no migrations)."""
    s = mig_tenancy.shared_schema
    spares = mig_tenancy.spares
    tenant = mig_tenancy.create_tenant(f"{s}_old", domains=["old.example.com"])
    oid = _nsp_oid(conn, tenant.schema)

    retired = mig_tenancy.retire_tenant(tenant)

    assert retired.schema.startswith(RETIRED_PREFIX)
    assert retired.oid == oid == _nsp_oid(conn, retired.schema)
    assert _nsp_oid(conn, tenant.schema) is None
    assert [t.schema for t in mig_tenancy.tenants()] == []
    assert mig_tenancy.domains() == []
    assert history(conn, retired.schema) == FULL
    assert _state_rows(conn, s, retired.schema) == 1  # the migration state followed
    assert _state_rows(conn, s, tenant.schema) == 0
    # The name and the host are free at once.
    again = mig_tenancy.create_tenant(f"{s}_old", domains=["old.example.com"])
    mig_tenancy.drop_tenant(again, cascade=True)

    spare = spares.adopt(retired.schema)

    assert spare.startswith(SPARE_PREFIX)
    assert spares.names() == [spare] == spares.names(conn)
    assert spares.count() == 1  # at the head: claimable
    assert _nsp_oid(conn, retired.schema) is None
    new = mig_tenancy.create_tenant(f"{s}_new")
    assert mig_tenancy.provisioner.last_path == "spare"
    assert _nsp_oid(conn, new.schema) == oid
    assert spares.count() == 0
    assert history(conn, new.schema) == FULL
    assert mig_tenancy.drift().ok


def test_adopt_refuses_what_is_not_a_migrated_schema(
    mig_tenancy: Tenancy, conn: psycopg.Connection
) -> None:
    s = mig_tenancy.shared_schema
    spares = mig_tenancy.spares
    with pytest.raises(SchemaNotFound, match="does not exist"):
        spares.adopt(f"{s}_missing")
    conn.execute(psycopg.sql.SQL("create schema {}").format(psycopg.sql.Identifier(f"{s}_bare")))
    with pytest.raises(MigrationError, match="no tenantkit migration state") as info:
        spares.adopt(f"{s}_bare")
    assert info.value.schema == f"{s}_bare"
    assert _nsp_oid(conn, f"{s}_bare") is not None  # rolled back: not renamed
    assert spares.names() == []


def test_drop_retired(mig_tenancy: Tenancy, conn: psycopg.Connection) -> None:
    s = mig_tenancy.shared_schema
    retired = mig_tenancy.retire_tenant(mig_tenancy.create_tenant(f"{s}_gone"))
    mig_tenancy.drop_retired(retired.schema, lock_timeout=5.0)
    assert _nsp_oid(conn, retired.schema) is None
    assert _state_rows(conn, s, retired.schema) == 0
    mig_tenancy.drop_retired(retired.schema)  # already gone: fine
    keep = mig_tenancy.create_tenant(f"{s}_keep")
    with pytest.raises(InvalidSchemaName, match="not a retired schema"):
        mig_tenancy.drop_retired(keep.schema)
    assert _nsp_oid(conn, keep.schema) is not None


async def test_async_tenancy_uses_the_same_paths(
    dsn: str, mig_dir: Path, shared_name: str, conn: psycopg.Connection
) -> None:
    async with AsyncTenancy(dsn, shared_schema=shared_name, migrations=mig_dir) as tenancy:
        await tenancy.install()
        sync_view = Tenancy(dsn, shared_schema=shared_name, migrations=mig_dir)
        try:
            assert sync_view.migrate().ok
            prov = tenancy.provisioner
            first = await tenancy.create_tenant(f"{shared_name}_m")
            assert prov.last_path == "migrations"
            Template(sync_view).ensure()
            second = await tenancy.create_tenant(f"{shared_name}_t")
            assert prov.last_path == "template"
            Spares(sync_view).fill(1)
            third = await tenancy.create_tenant(f"{shared_name}_s")
            assert prov.last_path == "spare"
            prints = {fingerprint(conn, t.schema) for t in (first, second, third)}
            assert len(prints) == 1
            assert history(conn, first.schema) == FULL
            assert sync_view.plan().is_empty
        finally:
            sync_view.close()
