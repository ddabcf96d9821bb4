"""Tenancy lifecycle and atomic tenant creation (issue 3, acceptance 4)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from tenantkit.errors import (
    DomainExists,
    InvalidHostname,
    InvalidSchemaName,
    NoTenantSelected,
    SchemaExists,
    SchemaNotEmpty,
    TenantExists,
    TenantkitError,
    TenantNotFound,
)
from tenantkit.models import Tenant, TenantState
from tenantkit.search_path import current_tenant, tenant_context
from tenantkit.tenancy import AsyncTenancy, SchemaProvisioner, Tenancy


def uniq(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tk(dsn: str, schema_name: str) -> Iterator[Tenancy]:
    """A tenancy with its own shared schema (xdist-safe), installed."""
    with Tenancy(dsn, shared_schema=schema_name, min_size=1, max_size=4) as tenancy:
        tenancy.install()
        yield tenancy


@pytest.fixture
async def atk(dsn: str, schema_name: str) -> AsyncIterator[AsyncTenancy]:
    async with AsyncTenancy(dsn, shared_schema=schema_name, max_size=4) as tenancy:
        await tenancy.install()
        yield tenancy


def leftovers(conn: psycopg.Connection[Any], tk: Tenancy, schema: str) -> list[str]:
    """What a failed creation could have left: the schema, registry rows, domains."""
    found = []
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
        found.append("schema")
    if any(t.schema == schema for t in tk.tenants()):
        found.append("tenant row")
    if any(d.schema == schema for d in tk.domains()):
        found.append("domain row")
    return found


def test_lifecycle(tk: Tenancy) -> None:
    name = uniq()
    tenant = tk.create_tenant(
        name, domains=["Shop.Example.COM.", "b.example.com:8080"], metadata={"plan": "pro"}
    )
    assert tenant.state is TenantState.ACTIVE
    assert tenant.metadata == {"plan": "pro"}
    assert tk.get_tenant(name) == tenant
    assert tk.get_tenant(id=tenant.id) == tenant
    assert tk.get_tenant(host="SHOP.example.com:443") == tenant
    assert [d.host for d in tk.domains(tenant)] == ["shop.example.com", "b.example.com"]
    assert tk.domains(name)[0].is_primary
    renamed = tk.rename_tenant(tenant, uniq())
    assert renamed.id == tenant.id
    with pytest.raises(TenantNotFound):
        tk.get_tenant(name)
    with tk.connection(renamed) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with pytest.raises(SchemaNotEmpty, match="cascade=True"):
        tk.drop_tenant(renamed)
    tk.drop_tenant(renamed, cascade=True)
    assert tk.tenants() == []
    with pytest.raises(TenantNotFound):
        tk.get_tenant(host="shop.example.com")


def test_name_derived_from_display_name(tk: Tenancy) -> None:
    first = tk.create_tenant(name="Ünïcode Café, Inc.")
    second = tk.create_tenant(name="Ünïcode Café, Inc.")
    assert first.schema == "unicode_cafe_inc"
    assert second.schema == "unicode_cafe_inc_2"
    assert first.name == "Ünïcode Café, Inc."
    for t in (first, second):
        tk.drop_tenant(t)


def test_public_tenant(tk: Tenancy) -> None:
    public = tk.public_tenant
    assert public.is_public
    assert public.schema == tk.shared_schema
    assert tk.get_tenant(tk.shared_schema) == public
    assert public not in tk.tenants()
    assert public in tk.tenants(include_public=True)
    tk.add_domain(public, "www.example.org")
    assert tk.domain_map()["www.example.org"] == public
    with pytest.raises(TenantkitError, match="public tenant"):
        tk.drop_tenant(public)
    with tk.connection(public) as conn:
        row = conn.execute("SHOW search_path").fetchone()
        assert row is not None
        assert row[0].startswith(tk.shared_schema)


def test_connection_uses_current_tenant(tk: Tenancy) -> None:
    tenant = tk.create_tenant(uniq())
    with pytest.raises(NoTenantSelected, match="tenant_context"), tk.connection():
        pass
    with tenant_context(tenant), tk.connection() as conn:
        row = conn.execute("SELECT current_schemas(false)").fetchone()
        assert row is not None
        assert row[0][0] == tenant.schema
        assert current_tenant() == tenant
    assert current_tenant() is None


def test_tenants_filter_by_state(tk: Tenancy) -> None:
    tenant = tk.create_tenant(uniq())
    assert tk.tenants(state="active") == [tenant]
    assert tk.tenants(state=TenantState.FAILED) == []
    with pytest.raises(ValueError, match="is not a valid TenantState"):
        tk.tenants(state="bogus")


def test_errors_name_the_fix(tk: Tenancy) -> None:
    tenant = tk.create_tenant(uniq())
    with pytest.raises(TenantExists, match="pick another"):
        tk.create_tenant(tenant.schema)
    with pytest.raises(TypeError, match="exactly one"):
        tk.get_tenant(tenant.schema, id=tenant.id)
    with pytest.raises(TenantNotFound, match=r"tenants\(\)"):
        tk.get_tenant(id=10**12)


# -- atomic creation under injected failures -------------------------------------------------


class Boom(Exception):
    pass


class FailingProvisioner(SchemaProvisioner):
    def provision(self, conn: psycopg.Connection[Any], schema: str) -> None:
        super().provision(conn, schema)
        conn.execute("CREATE TABLE half_done (x int)")
        raise Boom("provisioning failed half way")


class TerminatingProvisioner(SchemaProvisioner):
    """Creates the schema, then has the server kill this very backend mid-transaction."""

    def __init__(self, shared: str, dsn: str) -> None:
        super().__init__(shared)
        self.dsn = dsn

    def provision(self, conn: psycopg.Connection[Any], schema: str) -> None:
        super().provision(conn, schema)
        with psycopg.connect(self.dsn, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        conn.execute("SELECT 1")


@pytest.mark.parametrize("failure", ["provisioner", "terminated", "duplicate_domain"])
def test_create_tenant_is_atomic(
    tk: Tenancy, conn: psycopg.Connection[Any], dsn: str, failure: str
) -> None:
    schema = uniq()
    if failure == "provisioner":
        tk.provisioner = FailingProvisioner(tk.shared_schema)
        expected: type[Exception] = Boom
    elif failure == "terminated":
        tk.provisioner = TerminatingProvisioner(tk.shared_schema, dsn)
        expected = psycopg.OperationalError
    else:
        other = tk.create_tenant(uniq(), domains=["taken.example.com"])
        assert other.state is TenantState.ACTIVE
        expected = DomainExists
    with pytest.raises(expected):
        tk.create_tenant(schema, domains=["ok.example.com", "taken.example.com"])
    assert leftovers(conn, tk, schema) == []
    tk.provisioner = SchemaProvisioner(tk.shared_schema)
    # The pool recovered (terminated connection replaced) and the name is free again.
    assert tk.create_tenant(schema).schema == schema


def test_create_tenant_existing_schema(tk: Tenancy, conn: psycopg.Connection[Any]) -> None:
    schema = uniq()
    conn.execute(f'CREATE SCHEMA "{schema}"')
    with pytest.raises(SchemaExists, match="already exists"):
        tk.create_tenant(schema, domains=["x.example.com"])
    assert all(t.schema != schema for t in tk.tenants())
    assert tk.domains() == []


@pytest.mark.parametrize(
    ("schema", "domains", "error"),
    [
        ("Bad;Name", (), InvalidSchemaName),
        ("ok_name", ("bad host",), InvalidHostname),
        ("ok_name", ("a.example.com", "A.example.com"), DomainExists),
    ],
)
def test_create_tenant_rejects_before_sql(
    dsn: str, schema: str, domains: tuple[str, ...], error: type[Exception]
) -> None:
    tenancy = Tenancy(dsn, min_size=0)
    tenancy.close()  # a closed pool: any attempt to talk to the server would fail differently
    with pytest.raises(error):
        tenancy.create_tenant(schema, domains=domains)


def test_without_psycopg_pool(dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    with Tenancy(dsn, shared_schema=schema_name) as tenancy:
        assert tenancy.pool is None
        tenancy.install()
        tenant = tenancy.create_tenant(uniq())
        with tenancy.connection(tenant) as conn:
            row = conn.execute("SELECT current_schema()").fetchone()
            assert row == (tenant.schema,)
            assert not conn.closed
        assert conn.closed


def test_given_pool_must_use_tenant_connections(dsn: str) -> None:
    with (
        ConnectionPool(dsn, min_size=0, max_size=1, open=True) as pool,
        pytest.raises(TypeError, match="connection_class"),
    ):
        Tenancy(pool=pool)
    with pytest.raises(TypeError, match="exactly one"):
        Tenancy()


def test_given_pool(dsn: str, schema_name: str) -> None:
    from tenantkit.search_path import TenantConnection

    with ConnectionPool(dsn, min_size=1, connection_class=TenantConnection, open=True) as pool:
        tenancy = Tenancy(pool=pool, shared_schema=schema_name)
        tenancy.install()
        tenant = tenancy.create_tenant(uniq())
        with tenancy.connection(tenant.schema) as conn:
            assert conn.execute("SELECT current_schema()").fetchone() == (tenant.schema,)
        tenancy.close()
        assert not pool.closed


def test_delegations_import_lazily(tk: Tenancy, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("tenantkit.migrations")
    fake.plan = lambda tenancy, **kw: calls.append(("plan", kw))  # type: ignore[attr-defined]
    fake.migrate = lambda tenancy, **kw: calls.append(("migrate", kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tenantkit.migrations", fake)
    tk.plan(target="x")
    tk.migrate(fail_fast=True)
    assert calls == [("plan", {"target": "x"}), ("migrate", {"fail_fast": True})]


# -- async ------------------------------------------------------------------------------------


async def test_async_lifecycle(atk: AsyncTenancy) -> None:
    name = uniq()
    tenant = await atk.create_tenant(name, domains=["a.example.net"])
    assert isinstance(tenant, Tenant)
    assert (await atk.get_tenant(host="A.EXAMPLE.NET")) == tenant
    assert atk.public_tenant.is_public
    assert (await atk.domain_map()) == {"a.example.net": tenant}
    async with atk.connection(tenant) as conn:
        await conn.execute("CREATE TABLE t (x int)")
        cur = await conn.execute("SELECT current_schema()")
        assert await cur.fetchone() == (name,)
    dom = await atk.add_domain(tenant, "b.example.net", primary=True)
    assert dom.is_primary
    assert [d.host for d in await atk.domains(tenant)] == ["b.example.net", "a.example.net"]
    await atk.set_primary_domain("a.example.net")
    await atk.remove_domain("b.example.net")
    renamed = await atk.rename_tenant(tenant, uniq())
    with pytest.raises(SchemaNotEmpty):
        await atk.drop_tenant(renamed)
    await atk.drop_tenant(renamed, cascade=True)
    assert await atk.tenants() == []


async def test_async_create_is_atomic(atk: AsyncTenancy, conn: psycopg.Connection[Any]) -> None:
    class Failing:
        async def provision(self, aconn: psycopg.AsyncConnection[Any], schema: str) -> None:
            await aconn.execute(f'CREATE SCHEMA "{schema}"')
            raise Boom

    schema = uniq()
    atk.provisioner = Failing()
    with pytest.raises(Boom):
        await atk.create_tenant(schema, domains=["c.example.net"])
    assert (
        conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None
    )
    assert await atk.tenants() == []
    assert await atk.domains() == []


@pytest.mark.parametrize("index", [0, 1], ids=["sync", "async"])
def test_docs_examples_run(dsn: str, index: int) -> None:
    """The sync and async examples of docs/tenants.md run as written."""
    import os
    import re
    import subprocess
    from pathlib import Path

    page = Path(__file__).parents[2] / "docs" / "tenants.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)
    env = dict(os.environ, PGTENANTS_DSN=dsn)
    done = subprocess.run(
        [sys.executable, "-c", blocks[index]], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
