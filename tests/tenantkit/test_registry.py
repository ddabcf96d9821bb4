"""The registry tables: install, constraints, domains, NOTIFY, the public tenant."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tenantkit.core.storage import (
    NOTIFY_CHANNEL,
    count_tenants,
    domains_of,
    like_pattern,
    tenant_page,
)
from tenantkit.core.tenancy import Tenancy
from tenantkit.errors import (
    DomainExists,
    DomainNotFound,
    InvalidHostname,
    RegistryNotInstalled,
    TenantNotFound,
)


def uniq() -> str:
    return f"r_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tk(dsn: str, schema_name: str) -> Iterator[Tenancy]:
    with Tenancy(dsn, shared_schema=schema_name, max_size=4) as tenancy:
        tenancy.install()
        yield tenancy


def test_not_installed_says_what_to_do(dsn: str, schema_name: str) -> None:
    with Tenancy(dsn, shared_schema=schema_name) as tk:
        with pytest.raises(RegistryNotInstalled, match=r"install\(\)"):
            tk.tenants()
        with pytest.raises(RegistryNotInstalled):
            tk.create_tenant(uniq())


def test_install_is_idempotent_and_concurrent_safe(dsn: str, schema_name: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def install() -> None:
        try:
            with Tenancy(dsn, shared_schema=schema_name, min_size=1, max_size=1) as tk:
                barrier.wait()
                tk.install()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Tenancy(dsn, shared_schema=schema_name) as tk:
        tk.install()
        assert tk.tenants(include_public=True) == [tk.public_tenant]


def test_notify_on_every_change(tk: Tenancy, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        tenant = tk.create_tenant(uniq())
        tk.add_domain(tenant, "n.example.com")
        tk.remove_domain("n.example.com")
        tk.drop_tenant(tenant)
        payloads = [n.payload for n in listener.notifies(timeout=0.5, stop_after=8)]
    # Each payload names the changed entry, so routers reload just that (issue 17).
    assert set(payloads) == {f"tenantkit_tenants:{tenant.id}", "tenantkit_domains:n.example.com"}


def test_domains_normalised_unique_one_primary(tk: Tenancy, conn: psycopg.Connection[Any]) -> None:
    a = tk.create_tenant(uniq())
    b = tk.create_tenant(uniq())
    first = tk.add_domain(a, "WWW.Shop.Example.com.:8000")
    assert first.host == "www.shop.example.com"
    assert first.is_primary  # a tenant's first domain becomes primary
    second = tk.add_domain(a, "bücher.example")
    assert second.host == "xn--bcher-kva.example"
    assert not second.is_primary
    with pytest.raises(DomainExists, match="remove_domain"):
        tk.add_domain(b, "www.shop.example.com")
    with pytest.raises(InvalidHostname):
        tk.add_domain(b, "bad host")
    third = tk.add_domain(a, "[2001:DB8::1]:443", primary=True)
    assert third.host == "[2001:db8::1]"
    assert [d.host for d in tk.domains(a) if d.is_primary] == ["[2001:db8::1]"]
    assert tk.set_primary_domain("WWW.shop.example.com").is_primary
    assert [d.host for d in tk.domains(a) if d.is_primary] == ["www.shop.example.com"]
    # The database enforces one primary per tenant, whatever the client does.
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            f'UPDATE "{tk.shared_schema}".tenantkit_domains SET is_primary = true'
            " WHERE tenant_id = %s",
            (a.id,),
        )
    with pytest.raises(DomainNotFound):
        tk.remove_domain("nowhere.example.com")
    with pytest.raises(DomainNotFound):
        tk.set_primary_domain("nowhere.example.com")
    with pytest.raises(TenantNotFound):
        tk.add_domain("no_such_tenant", "x.example.com")


def test_domain_map_is_one_query_of_active_tenants(tk: Tenancy, dsn: str) -> None:
    a = tk.create_tenant(uniq(), domains=["a.example.com", "a2.example.com"])
    b = tk.create_tenant(uniq(), domains=["b.example.com"])
    tk.add_domain(tk.public_tenant, "example.com")
    assert tk.pool is not None
    with tk.pool.connection() as pooled:
        backend = pooled.info.backend_pid
    with psycopg.connect(dsn, autocommit=True) as other:
        before = other.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    mapping = tk.domain_map()
    assert mapping == {
        "a.example.com": a,
        "a2.example.com": a,
        "b.example.com": b,
        "example.com": tk.public_tenant,
    }
    assert mapping["a.example.com"] is mapping["a2.example.com"]
    assert backend > 0 and before is not None
    # Dropping a tenant removes its hosts (FK cascade).
    tk.drop_tenant(b)
    assert "b.example.com" not in tk.domain_map()


def test_get_tenant_by_each_key(tk: Tenancy) -> None:
    t = tk.create_tenant(uniq(), name="Display Name", domains=["k.example.com"])
    assert tk.get_tenant(t.schema) == t
    assert tk.get_tenant(id=t.id) == t
    assert tk.get_tenant(host="K.example.com") == t
    assert t.name == "Display Name"
    with pytest.raises(TenantNotFound, match="add_domain"):
        tk.get_tenant(host="unknown.example.com")


def test_like_pattern_wildcards_and_literals() -> None:
    assert like_pattern("acme") == "%acme%"
    assert like_pattern("ac*") == "ac%"
    assert like_pattern("a?c") == "a_c"
    # LIKE's own wildcards and escape stand for themselves.
    assert like_pattern("a_b%") == "%a\\_b\\%%"
    assert like_pattern("back\\slash") == "%back\\\\slash%"


def test_tenant_page_filters_and_pages_on_the_server(tk: Tenancy) -> None:
    prefix = uniq()
    made = [tk.create_tenant(f"{prefix}_{i}", name=f"Shop {i}") for i in range(5)]
    tk.add_domain(made[2], f"{prefix.replace('_', '-')}.example.org")
    tk.add_domain(made[2], f"www.{prefix.replace('_', '-')}.example.org", primary=True)
    reg = tk.registry
    with tk.admin_connection() as conn:

        def page(**kw: Any) -> list[str]:
            return [t.schema for t in tenant_page(conn, reg, **kw)]

        schemas = [t.schema for t in made]
        assert page() == schemas  # the public tenant is never listed
        assert page(limit=2) == schemas[:2]
        assert page(limit=2, after=made[1].id) == schemas[2:4]
        assert page(after=made[4].id) == []
        assert page(pattern="SHOP 3") == [schemas[3]]  # display name, any case
        assert page(pattern=f"{prefix}_?") == schemas  # whole-value pattern
        assert page(pattern=f"{prefix}_%") == []  # % is no wildcard
        assert page(pattern=f"*{prefix.replace('_', '-')}.example.org") == [schemas[2]]
        assert page(state="failed") == []
        assert count_tenants(conn, reg) == 5
        assert count_tenants(conn, reg, pattern="shop", after=made[2].id) == 2
        found = domains_of(conn, reg, [made[2].id, made[0].id])
    assert [d.host for d in found] == [
        f"www.{prefix.replace('_', '-')}.example.org",  # the primary one first
        f"{prefix.replace('_', '-')}.example.org",
    ]
    assert all(d.schema == made[2].schema for d in found)


def test_tenant_page_without_a_registry(dsn: str, schema_name: str) -> None:
    with (
        Tenancy(dsn, shared_schema=schema_name) as tk,
        tk.admin_connection() as conn,
        pytest.raises(RegistryNotInstalled),
    ):
        tenant_page(conn, tk.registry)
