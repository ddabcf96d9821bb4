"""``TenantTestCase`` / ``FastTenantTestCase``: Django test cases running in a tenant.

Same hooks and behaviour as django-tenants': the class creates a tenant (row, schema,
migrations) and its domain, makes it current for the tests, and drops it at the end;
``FastTenantTestCase`` keeps its tenant between classes and runs. The tenant is current
through tenantkit.django's ContextVar, restored exactly at the end of the class.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections
from django.test import TestCase

from .. import _state
from ..utils import (
    get_public_schema_name,
    get_tenant_database_alias,
    get_tenant_domain_model,
    get_tenant_model,
)

__all__ = ["FastTenantTestCase", "SubfolderTenantTestCase", "TenantTestCase"]


class TenantTestCase(TestCase):
    """Each class gets a fresh tenant (``get_test_schema_name()``) with a domain
    (``get_test_tenant_domain()``), current during its tests, dropped afterwards."""

    tenant: Any = None
    domain: Any = None
    _tenant_token: Any = None

    @classmethod
    def setup_tenant(cls, tenant: Any) -> None:
        """Set required fields of the tenant before it is saved."""

    @classmethod
    def setup_domain(cls, domain: Any) -> None:
        """Set required fields of the domain before it is saved."""

    @classmethod
    def setUpClass(cls) -> None:
        """Create the tenant and its domain and make the tenant current."""
        cls.sync_shared()
        cls.add_allowed_test_domain()
        cls.tenant = get_tenant_model()(schema_name=cls.get_test_schema_name())
        cls.setup_tenant(cls.tenant)
        cls.tenant.save(verbosity=cls.get_verbosity())
        cls.domain = get_tenant_domain_model()(
            tenant=cls.tenant, domain=cls.get_test_tenant_domain()
        )
        cls.setup_domain(cls.domain)
        cls.domain.save()
        cls._tenant_token = _state.set_current(cls.tenant)

    @classmethod
    def tearDownClass(cls) -> None:
        """Back to the previous tenant; drop the tenant, its schema and its domain."""
        cls._restore()
        cls.domain.delete()
        cls.tenant.delete(force_drop=True)
        cls.remove_allowed_test_domain()

    @classmethod
    def _restore(cls) -> None:
        token, cls._tenant_token = cls._tenant_token, None
        if token is not None:
            try:
                _state.reset_current(token)
            except ValueError:  # set in another context (a runner's thread): go public
                connections[get_tenant_database_alias()].set_schema_to_public()
        else:
            connections[get_tenant_database_alias()].set_schema_to_public()

    @classmethod
    def get_verbosity(cls) -> int:
        """Verbosity of the tenant's migrations."""
        return 0

    @classmethod
    def add_allowed_test_domain(cls) -> None:
        """Add the test domain to ``ALLOWED_HOSTS``."""
        domain = cls.get_test_tenant_domain()
        if domain not in settings.ALLOWED_HOSTS:
            settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, domain]

    @classmethod
    def remove_allowed_test_domain(cls) -> None:
        """Remove the test domain from ``ALLOWED_HOSTS``."""
        domain = cls.get_test_tenant_domain()
        if domain in settings.ALLOWED_HOSTS:
            settings.ALLOWED_HOSTS = [h for h in settings.ALLOWED_HOSTS if h != domain]

    @classmethod
    def sync_shared(cls) -> None:
        """Migrate the public schema (nothing to do when it is migrated already)."""
        from .._migrate import migrate_schema

        migrate_schema(get_public_schema_name(), verbosity=0)

    @classmethod
    def get_test_tenant_domain(cls) -> str:
        """The test tenant's domain."""
        return "tenant.test.com"

    @classmethod
    def get_test_schema_name(cls) -> str:
        """The test tenant's schema."""
        return "test"


class FastTenantTestCase(TenantTestCase):
    """Like :class:`TenantTestCase`, but the tenant is created once and kept (state may be
    shared between classes: ``flush_data()`` decides whether each test's data is rolled
    back)."""

    @classmethod
    def flush_data(cls) -> bool:
        """Whether each test's data is rolled back (default True)."""
        return True

    @classmethod
    def use_existing_tenant(cls) -> None:
        """Called when the tenant existed already."""

    @classmethod
    def use_new_tenant(cls) -> None:
        """Called when the tenant was created."""

    @classmethod
    def get_test_tenant_domain(cls) -> str:
        """The test tenant's domain."""
        return "tenant.fast-test.com"

    @classmethod
    def get_test_schema_name(cls) -> str:
        """The test tenant's schema."""
        return "fast_test"

    @classmethod
    def setup_test_tenant_and_domain(cls) -> None:
        """Create the tenant and its domain."""
        cls.tenant = get_tenant_model()(schema_name=cls.get_test_schema_name())
        cls.setup_tenant(cls.tenant)
        cls.tenant.save(verbosity=cls.get_verbosity())
        cls.domain = get_tenant_domain_model()(
            tenant=cls.tenant, domain=cls.get_test_tenant_domain()
        )
        cls.setup_domain(cls.domain)
        cls.domain.save()
        cls.use_new_tenant()

    @classmethod
    def setUpClass(cls) -> None:
        """Reuse the tenant if it exists, else create it; make it current."""
        cls.add_allowed_test_domain()
        model = get_tenant_model()
        existing = model._default_manager.filter(schema_name=cls.get_test_schema_name()).first()
        if existing is not None:
            cls.tenant = existing
            cls.use_existing_tenant()
        else:
            cls.setup_test_tenant_and_domain()
        cls._tenant_token = _state.set_current(cls.tenant)

    @classmethod
    def tearDownClass(cls) -> None:
        """Back to the previous tenant (the tenant is kept)."""
        cls._restore()

    def _fixture_teardown(self) -> None:
        if self.flush_data():
            super()._fixture_teardown()


class SubfolderTenantTestCase(TenantTestCase):
    """Adds a public tenant, for tests of ``TenantSubfolderMiddleware``."""

    public_tenant: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        """Create the public tenant, then the test tenant."""
        cls.public_tenant = get_tenant_model()(schema_name=get_public_schema_name())
        cls.public_tenant.save()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        """Drop the test tenant, then the public tenant's row."""
        super().tearDownClass()
        cls.public_tenant.delete()
