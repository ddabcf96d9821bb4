"""factory-boy factories through the plugin, and the error without a running test."""

from __future__ import annotations

import pytest


def test_factory_boy(inner) -> None:
    """TenantFactory, DomainFactory and a TenantRowFactory subclass in an inner run."""
    inner.pytester.makepyfile(
        """
        import factory
        import pytest
        from tenantkit.core.context import tenant_context
        from pytest_pgtenants.factories import DomainFactory, TenantFactory, TenantRowFactory

        class OrderFactory(TenantRowFactory):
            class Meta:
                model = "shop_t0"
            name = factory.Sequence(lambda n: f"order-{n}")

        SEEN = []

        def test_tenant_and_domain(tenancy):
            acme = TenantFactory(schema="acme", name="Acme", metadata={"plan": "pro"})
            assert acme.schema == "acme" and acme.metadata["plan"] == "pro"
            assert [d.host for d in tenancy.domains(acme)] == ["acme.example.test"]
            extra = DomainFactory(tenant=acme, host="shop.acme.test")
            assert extra.host == "shop.acme.test" and not extra.is_primary
            made = DomainFactory()
            assert made.schema != "acme"
            SEEN.extend([acme.schema, made.schema])

        def test_cleaned_up(tenancy):
            assert not {t.schema for t in tenancy.tenants()} & set(SEEN)

        def test_rows(tenancy, tenant, tenant_factory):
            other = tenant_factory()
            with tenant_context(tenant):
                first = OrderFactory()
                OrderFactory(name="custom")
            OrderFactory(_tenant=other)
            assert first["name"].startswith("order-") and first["id"] >= 1
            with tenancy.connection(tenant) as conn:
                assert conn.execute("select count(*) from shop_t0").fetchone()[0] == 2
            with tenancy.connection(other) as conn:
                assert conn.execute("select count(*) from shop_t0").fetchone()[0] == 1
            assert OrderFactory.build(name="x") == {"name": "x"}

        def test_rows_need_a_tenant(tenancy):
            with pytest.raises(RuntimeError, match="needs a current tenant"):
                OrderFactory()
        """
    )
    inner.run().assert_outcomes(passed=4)


def test_factory_outside_a_test_fixture() -> None:
    """Without the tenancy fixture the factories say what to request."""
    from pytest_pgtenants.factories import TenantFactory

    with pytest.raises(RuntimeError, match="uses the `tenancy` fixture"):
        TenantFactory()


def test_missing_optional_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing optional dependency names the package and the extra to install."""
    import sys

    from pytest_pgtenants import _extras

    monkeypatch.setitem(sys.modules, "factory", None)
    with pytest.raises(
        ImportError, match=r"pip install 'factory-boy'.*pytest-pgtenants\[factories\]"
    ):
        _extras.require("factory")
