"""Django on the suite's embedded server: the project in ``tests/django/project``.

The settings are configured once per test process (``settings.configure()``, then
``django.setup()``) on a database of their own: ``dsn`` is overridden here, so Django's public
schema (its tables, tenantkit's books of it) never meets the other tests' shared schemas;
pytest-django stays inert (no
``DJANGO_SETTINGS_MODULE``; its ``db`` fixtures are not used). Fixtures:

* ``django_project`` (session): Django configured with ``tenantkit.django`` (host routing,
  public URLconf, ``project.customers`` Client/Domain, shared app ``project.shared_app``,
  tenant app ``project.tenant_app`` with two migrations), the public schema migrated and a
  public tenant with the host ``public.test``. Returns the settings module's ``settings``.
* ``tenant_factory``: ``tenant_factory(items=("a",), host=None)`` creates a tenant (row,
  schema, migrations) with a unique schema and the host ``host_of(schema)``
  (``dj-1234.test``) or ``host``, inserts ``items``, and drops it all at the end of the test.
* ``tenant_pair`` (session): two such tenants shared by the read-only tests.
* ``unique_schema``: a fresh schema name (not created).

Helpers in ``_djsupport`` (``from _djsupport import ...``; a module of its own, since every
test directory's conftest is named ``conftest``): ``database_settings(dsn,
**options)`` (a ``DATABASES`` entry on tenantkit's backend, e.g. for an extra alias with
``pgbouncer=True``), ``host_of(schema)`` (the host the fixtures give a tenant) and
``PUBLIC_HOST``. ``tests/_wire.py`` counts what a connection sent (round trips, statements)
from a libpq trace.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from _djsupport import PUBLIC_HOST, database_settings, host_of


@pytest.fixture(scope="session")
def dsn(server_conninfo: str) -> Iterator[str]:
    """A database of the Django tests' own (``conn`` and every fixture here use it)."""
    from tenantkit.server import temporary_database

    with temporary_database(server_conninfo, prefix="tk_django") as conninfo:
        yield conninfo


@pytest.fixture(scope="session")
def django_project(dsn: str) -> Iterator[Any]:
    """Django configured on ``dsn`` with the test project; public schema migrated."""
    import django
    from django.conf import settings
    from project.settings import settings_for

    if not settings.configured:
        settings.configure(**settings_for(database_settings(dsn)))
        django.setup()
    from django.db import connections
    from project.customers.models import Client, Domain

    from tenantkit.django._migrate import migrate_schema

    migrate_schema("public")
    public, _ = Client.objects.get_or_create(schema_name="public", defaults={"name": "public"})
    Domain.objects.get_or_create(domain=PUBLIC_HOST, tenant=public)
    yield settings
    from tenantkit.django._source import reset_resolver

    reset_resolver()
    connections.close_all()


def _new_schema() -> str:
    return f"dj_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def unique_schema() -> str:
    """A fresh, valid schema name (nothing is created)."""
    return _new_schema()


def _make_tenant(items: Sequence[str], host: str | None) -> Any:
    from project.customers.models import Client, Domain
    from project.tenant_app.models import Item

    from tenantkit.django.utils import tenant_context

    schema = _new_schema()
    tenant = Client(schema_name=schema, name=schema)
    tenant.save(verbosity=0)
    Domain(domain=host or host_of(schema), tenant=tenant, is_primary=True).save()
    with tenant_context(tenant):
        Item.objects.bulk_create([Item(name=name) for name in items])
    return tenant


@pytest.fixture
def tenant_factory(django_project: Any) -> Iterator[Callable[..., Any]]:
    """Create tenants (row, schema, migrations, a host); all dropped at the end."""
    made: list[Any] = []

    def make(items: Sequence[str] = (), host: str | None = None) -> Any:
        tenant = _make_tenant(items, host)
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        tenant.delete(force_drop=True)


@pytest.fixture(scope="session")
def tenant_pair(django_project: Any) -> Iterator[tuple[Any, Any]]:
    """Two tenants with one item each, named after their schema (shared, do not modify)."""
    pair = []
    for _ in range(2):
        schema_items: list[str] = []
        tenant = _make_tenant(schema_items, None)
        from project.tenant_app.models import Item

        from tenantkit.django.utils import tenant_context

        with tenant_context(tenant):
            Item.objects.create(name=tenant.schema_name)
        pair.append(tenant)
    yield pair[0], pair[1]
    for tenant in pair:
        tenant.delete(force_drop=True)
