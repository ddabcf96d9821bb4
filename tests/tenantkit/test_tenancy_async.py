"""Tenancy lifecycle and atomic tenant creation (issue 3, acceptance 4).

One source for both APIs: the async test module of this pair is written by hand, and
``tools/async_to_sync.py`` generates the sync one from it, so ``Tenancy`` and its asyncio
twin get the same tests. Sync-only tests live in ``test_tenancy.py``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tenantkit import AsyncTenantConnection
from tenantkit.core.context import current_tenant, tenant_context
from tenantkit.core.models import Tenant, TenantState
from tenantkit.core.storage import RETIRED_PREFIX
from tenantkit.core.tenancy import AsyncSchemaProvisioner, AsyncTenancy
from tenantkit.errors import (
    DomainExists,
    InvalidHostname,
    InvalidSchemaName,
    NoTenantSelected,
    RegistryNotInstalled,
    SchemaExists,
    SchemaNotEmpty,
    TenantExists,
    TenantkitError,
    TenantNotFound,
)


def uniq(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def atk(dsn: str, schema_name: str) -> AsyncIterator[AsyncTenancy]:
    """A tenancy with its own shared schema (xdist-safe), installed."""
    async with AsyncTenancy(dsn, shared_schema=schema_name, min_size=1, max_size=4) as tenancy:
        await tenancy.install()
        yield tenancy


async def leftovers(conn: psycopg.Connection[Any], atk: AsyncTenancy, schema: str) -> list[str]:
    """What a failed creation could have left: the schema, registry rows, domains.

    ``conn`` is the plain sync connection of tests/conftest.py in both modules: a witness
    outside the tenancy under test.
    """
    found = []
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
        found.append("schema")
    if any(t.schema == schema for t in await atk.tenants()):
        found.append("tenant row")
    if any(d.schema == schema for d in await atk.domains()):
        found.append("domain row")
    return found


async def test_lifecycle(atk: AsyncTenancy) -> None:
    name = uniq()
    tenant = await atk.create_tenant(
        name, domains=["Shop.Example.COM.", "b.example.com:8080"], metadata={"plan": "pro"}
    )
    assert isinstance(tenant, Tenant)
    assert tenant.state is TenantState.ACTIVE
    assert tenant.metadata == {"plan": "pro"}
    assert await atk.get_tenant(name) == tenant
    assert await atk.get_tenant(id=tenant.id) == tenant
    assert await atk.get_tenant(host="SHOP.example.com:443") == tenant
    assert [d.host for d in await atk.domains(tenant)] == ["shop.example.com", "b.example.com"]
    assert (await atk.domains(name))[0].is_primary
    renamed = await atk.rename_tenant(tenant, uniq())
    assert renamed.id == tenant.id
    with pytest.raises(TenantNotFound):
        await atk.get_tenant(name)
    async with atk.connection(renamed) as conn:
        await conn.execute("CREATE TABLE t (x int)")
        row = await (await conn.execute("SELECT current_schema()")).fetchone()
        assert row == (renamed.schema,)
    with pytest.raises(SchemaNotEmpty, match="cascade=True"):
        await atk.drop_tenant(renamed)
    await atk.drop_tenant(renamed, cascade=True)
    assert await atk.tenants() == []
    with pytest.raises(TenantNotFound):
        await atk.get_tenant(host="shop.example.com")


async def test_retire_tenant(atk: AsyncTenancy, conn: psycopg.Connection[Any]) -> None:
    """The registry rows go and the schema stays, tables intact, under a reserved name."""
    acme = await atk.create_tenant(uniq("acme"), domains=["acme.example.com", "acme.example.org"])
    conn.execute(
        psycopg.sql.SQL("CREATE TABLE {} (id int)").format(psycopg.sql.Identifier(acme.schema, "t"))
    )
    oid = conn.execute(
        "SELECT oid::bigint FROM pg_namespace WHERE nspname = %s", (acme.schema,)
    ).fetchone()

    retired = await atk.retire_tenant(acme.schema)

    assert retired.schema.startswith(RETIRED_PREFIX)
    assert oid == (retired.oid,)
    assert conn.execute(
        psycopg.sql.SQL("SELECT count(*) FROM {}").format(
            psycopg.sql.Identifier(retired.schema, "t")
        )
    ).fetchone() == (0,)
    assert await leftovers(conn, atk, acme.schema) == []
    with pytest.raises(TenantNotFound):
        await atk.get_tenant(host="acme.example.org")
    # Name and hosts are free again at once.
    again = await atk.create_tenant(acme.schema, domains=["acme.example.com"])
    assert again.id != acme.id
    with pytest.raises(TenantNotFound):
        await atk.retire_tenant(uniq("nobody"))
    with pytest.raises(TenantkitError, match="cannot be retired"):
        await atk.retire_tenant(atk.shared_schema)
    await atk.drop_retired(retired.schema)
    assert not conn.execute(
        "SELECT 1 FROM pg_namespace WHERE nspname = %s", (retired.schema,)
    ).fetchone()
    with pytest.raises(InvalidSchemaName):
        await atk.drop_retired(again.schema)


async def test_retire_tenant_lock_timeout(atk: AsyncTenancy, dsn: str) -> None:
    """A transaction left open on the tenant's row makes retire_tenant give up, not hang."""
    acme = await atk.create_tenant(uniq("acme"))
    with psycopg.connect(dsn) as other:
        other.execute(
            psycopg.sql.SQL("SELECT 1 FROM {} WHERE schema = %s FOR UPDATE").format(
                psycopg.sql.Identifier(atk.shared_schema, "tenantkit_tenants")
            ),
            (acme.schema,),
        )
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await atk.retire_tenant(acme, lock_timeout=0.05)
        other.rollback()
    assert (await atk.get_tenant(acme.schema)).id == acme.id  # nothing changed
    await atk.retire_tenant(acme, lock_timeout=5)


async def test_update_metadata(atk: AsyncTenancy) -> None:
    acme = await atk.create_tenant(uniq("acme"), metadata={"plan": "free", "seats": 3})
    updated = await atk.update_metadata(acme, {"plan": "pro", "note": "x"})
    assert dict(updated.metadata) == {"plan": "pro", "seats": 3, "note": "x"}
    assert dict((await atk.get_tenant(acme.schema)).metadata) == dict(updated.metadata)
    with pytest.raises(TenantNotFound):
        await atk.update_metadata(uniq("nobody"), {})


async def test_domain_changes(atk: AsyncTenancy) -> None:
    tenant = await atk.create_tenant(uniq(), domains=["a.example.net"])
    assert await atk.domain_map() == {"a.example.net": tenant}
    dom = await atk.add_domain(tenant, "B.example.net.", primary=True)
    assert dom.host == "b.example.net"
    assert dom.is_primary
    assert [d.host for d in await atk.domains(tenant)] == ["b.example.net", "a.example.net"]
    primary = await atk.set_primary_domain("a.example.net")
    assert primary.is_primary
    assert [(d.host, d.is_primary) for d in await atk.domains(tenant)] == [
        ("a.example.net", True),
        ("b.example.net", False),
    ]
    await atk.remove_domain("b.example.net")
    assert await atk.domain_map() == {"a.example.net": tenant}
    with pytest.raises(TenantNotFound):
        await atk.get_tenant(host="b.example.net")


async def test_name_derived_from_display_name(atk: AsyncTenancy) -> None:
    first = await atk.create_tenant(name="Ünïcode Café, Inc.")
    second = await atk.create_tenant(name="Ünïcode Café, Inc.")
    assert first.schema == "unicode_cafe_inc"
    assert second.schema == "unicode_cafe_inc_2"
    assert first.name == "Ünïcode Café, Inc."
    for t in (first, second):
        await atk.drop_tenant(t)


async def test_public_tenant(atk: AsyncTenancy) -> None:
    public = atk.public_tenant
    assert public.is_public
    assert public.schema == atk.shared_schema
    assert await atk.get_tenant(atk.shared_schema) == public
    assert public not in await atk.tenants()
    assert public in await atk.tenants(include_public=True)
    await atk.add_domain(public, "www.example.org")
    assert (await atk.domain_map())["www.example.org"] == public
    with pytest.raises(TenantkitError, match="public tenant"):
        await atk.drop_tenant(public)
    async with atk.connection(public) as conn:
        row = await (await conn.execute("SHOW search_path")).fetchone()
        assert row is not None
        assert row[0].startswith(atk.shared_schema)


async def test_public_tenant_before_it_is_loaded(atk: AsyncTenancy) -> None:
    async with AsyncTenancy(atk.conninfo, shared_schema=atk.shared_schema, max_size=1) as fresh:
        if True:  # ASYNC
            # A property cannot wait for the database: asyncio code loads it explicitly.
            with pytest.raises(RegistryNotInstalled, match="await install"):
                _ = fresh.public_tenant
            await fresh.get_public_tenant()
        # The sync API loads it on first access; both then agree with the installed row.
        assert fresh.public_tenant == atk.public_tenant


async def test_connection_uses_current_tenant(atk: AsyncTenancy) -> None:
    tenant = await atk.create_tenant(uniq())
    with pytest.raises(NoTenantSelected, match="tenant_context"):
        async with atk.connection():
            pass
    with tenant_context(tenant):
        async with atk.connection() as conn:
            row = await (await conn.execute("SELECT current_schemas(false)")).fetchone()
            assert row is not None
            assert row[0][0] == tenant.schema
            assert current_tenant() == tenant
    assert current_tenant() is None


async def test_tenants_filter_by_state(atk: AsyncTenancy) -> None:
    tenant = await atk.create_tenant(uniq())
    assert await atk.tenants(state="active") == [tenant]
    assert await atk.tenants(state=TenantState.FAILED) == []
    with pytest.raises(ValueError, match="is not a valid TenantState"):
        await atk.tenants(state="bogus")


async def test_errors_name_the_fix(atk: AsyncTenancy) -> None:
    tenant = await atk.create_tenant(uniq())
    with pytest.raises(TenantExists, match="pick another"):
        await atk.create_tenant(tenant.schema)
    with pytest.raises(TypeError, match="exactly one"):
        await atk.get_tenant(tenant.schema, id=tenant.id)
    with pytest.raises(TenantNotFound, match=r"tenants\(\)"):
        await atk.get_tenant(id=10**12)


# -- atomic creation under injected failures -------------------------------------------------


class Boom(Exception):
    pass


class FailingProvisioner(AsyncSchemaProvisioner):
    async def provision(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        await super().provision(conn, schema)
        await conn.execute("CREATE TABLE half_done (x int)")
        raise Boom("provisioning failed half way")


class TerminatingProvisioner(AsyncSchemaProvisioner):
    """Creates the schema, then has the server kill this very backend mid-transaction."""

    def __init__(self, shared: str, dsn: str) -> None:
        super().__init__(shared)
        self.dsn = dsn

    async def provision(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        await super().provision(conn, schema)
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as killer:
            await killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        await conn.execute("SELECT 1")


@pytest.mark.parametrize("failure", ["provisioner", "terminated", "duplicate_domain"])
async def test_create_tenant_is_atomic(
    atk: AsyncTenancy, conn: psycopg.Connection[Any], dsn: str, failure: str
) -> None:
    schema = uniq()
    if failure == "provisioner":
        atk.provisioner = FailingProvisioner(atk.shared_schema)
        expected: type[Exception] = Boom
    elif failure == "terminated":
        atk.provisioner = TerminatingProvisioner(atk.shared_schema, dsn)
        expected = psycopg.OperationalError
    else:
        other = await atk.create_tenant(uniq(), domains=["taken.example.com"])
        assert other.state is TenantState.ACTIVE
        expected = DomainExists
    with pytest.raises(expected):
        await atk.create_tenant(schema, domains=["ok.example.com", "taken.example.com"])
    assert await leftovers(conn, atk, schema) == []
    atk.provisioner = AsyncSchemaProvisioner(atk.shared_schema)
    # The pool recovered (terminated connection replaced) and the name is free again.
    assert (await atk.create_tenant(schema)).schema == schema


async def test_create_tenant_existing_schema(
    atk: AsyncTenancy, conn: psycopg.Connection[Any]
) -> None:
    schema = uniq()
    conn.execute(f'CREATE SCHEMA "{schema}"')
    with pytest.raises(SchemaExists, match="already exists"):
        await atk.create_tenant(schema, domains=["x.example.com"])
    assert all(t.schema != schema for t in await atk.tenants())
    assert await atk.domains() == []


@pytest.mark.parametrize(
    ("schema", "domains", "error"),
    [
        ("Bad;Name", (), InvalidSchemaName),
        ("ok_name", ("bad host",), InvalidHostname),
        ("ok_name", ("a.example.com", "A.example.com"), DomainExists),
    ],
)
async def test_create_tenant_rejects_before_sql(
    dsn: str, schema: str, domains: tuple[str, ...], error: type[Exception]
) -> None:
    tenancy = AsyncTenancy(dsn, min_size=0)
    await tenancy.open()
    await tenancy.close()  # a closed pool: any attempt to talk to the server would fail differently
    with pytest.raises(error):
        await tenancy.create_tenant(schema, domains=domains)


async def test_without_psycopg_pool(
    dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    async with AsyncTenancy(dsn, shared_schema=schema_name) as tenancy:
        assert tenancy.pool is None
        await tenancy.install()
        tenant = await tenancy.create_tenant(uniq())
        async with tenancy.connection(tenant) as conn:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            assert row == (tenant.schema,)
            assert not conn.closed
        assert conn.closed


async def test_given_pool_must_use_tenant_connections(dsn: str) -> None:
    async with AsyncConnectionPool(dsn, min_size=0, max_size=1, open=False) as pool:
        with pytest.raises(TypeError, match="connection_class"):
            AsyncTenancy(pool=pool)
    with pytest.raises(TypeError, match="exactly one"):
        AsyncTenancy()


async def test_given_pool(dsn: str, schema_name: str) -> None:
    async with AsyncConnectionPool(
        dsn, min_size=1, connection_class=AsyncTenantConnection, open=False
    ) as pool:
        tenancy = AsyncTenancy(pool=pool, shared_schema=schema_name)
        await tenancy.install()
        tenant = await tenancy.create_tenant(uniq())
        async with tenancy.connection(tenant.schema) as conn:
            row = await (await conn.execute("SELECT current_schema()")).fetchone()
            assert row == (tenant.schema,)
        await tenancy.close()
        assert not pool.closed


@pytest.mark.parametrize("name", ["plan", "migrate", "drift"])
def test_delegations_mirror_the_functions_they_call(name: str) -> None:
    """``plan`` / ``migrate`` / ``drift`` take exactly the keyword parameters and defaults of
    the functions they call (minus the tenancy), so a new option cannot be left out."""
    import inspect

    from tenantkit import migrations
    from tenantkit.introspection import catalog

    target = getattr(catalog if name == "drift" else migrations, name)
    expected = list(inspect.signature(target).parameters.values())[1:]
    actual = list(inspect.signature(getattr(AsyncTenancy, name)).parameters.values())[1:]
    assert [(p.name, p.kind, p.default) for p in actual] == [
        (p.name, p.kind, p.default) for p in expected
    ]
