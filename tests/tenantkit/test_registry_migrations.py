"""The registry keeps the migration summary in step when tenants are dropped or renamed."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import psycopg
from _migrations_support import (  # noqa: F401 (fixtures)
    history,
    mig_dir,
    mig_tenancy,
    shared_name,
)

from tenantkit.core.tenancy import AsyncTenancy, Tenancy

FULL = ["0001_items", "0002_orders"]


def test_a_dropped_tenant_name_can_be_created_again(
    mig_tenancy: Tenancy, conn: psycopg.Connection, schema_name: str
) -> None:
    mig_tenancy.create_tenant(schema_name)
    mig_tenancy.drop_tenant(schema_name, cascade=True)
    # Used to fail with a unique violation on the summary row the drop left behind.
    mig_tenancy.create_tenant(schema_name)
    assert history(conn, schema_name) == FULL
    assert mig_tenancy.plan().is_empty


def test_a_renamed_tenant_stays_migrated(
    mig_tenancy: Tenancy, conn: psycopg.Connection, schema_name: str
) -> None:
    mig_tenancy.create_tenant(schema_name)
    renamed = schema_name + "_new"
    mig_tenancy.rename_tenant(schema_name, renamed)
    plan = mig_tenancy.plan()
    assert plan.is_empty, plan.pending
    assert renamed in {entry.schema for entry in plan.entries}
    assert schema_name not in {entry.schema for entry in plan.entries}
    report = mig_tenancy.migrate()
    assert report[renamed].status == "current"


async def test_async_drop_and_rename_keep_the_summary(
    mig_tenancy: Tenancy, conn: psycopg.Connection, schema_name: str
) -> None:
    mig_tenancy.create_tenant(schema_name)
    async with AsyncTenancy(
        mig_tenancy.conninfo,
        shared_schema=mig_tenancy.shared_schema,
        migrations=mig_tenancy.migrations_dir,
    ) as atenancy:
        await atenancy.rename_tenant(schema_name, schema_name + "_a")
        assert mig_tenancy.plan().is_empty
        await atenancy.drop_tenant(schema_name + "_a", cascade=True)
    mig_tenancy.create_tenant(schema_name + "_a")
    assert mig_tenancy.plan().is_empty
