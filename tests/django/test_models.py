"""TenantMixin / DomainMixin lifecycle, signals, contexts and the router on the real server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _djsupport import host_of

pytestmark = pytest.mark.usefixtures("django_project")


def _tables(schema: str) -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
        return {row[0] for row in cursor.fetchall()}


def _applied(schema: str) -> list[tuple[str, str]]:
    from django.db import connection
    from psycopg import sql

    connection.ensure_connection()
    query = sql.SQL("SELECT app, name FROM {} ORDER BY id").format(
        sql.Identifier(schema, "django_migrations")
    )
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(connection.connection))
        return [tuple(row) for row in cursor.fetchall()]


def test_save_creates_and_migrates_the_schema(unique_schema: str) -> None:
    from project.customers.models import Client

    from tenantkit.django.signals import post_schema_sync, schema_migrated
    from tenantkit.django.utils import schema_exists

    synced: list[Any] = []
    migrated: list[str] = []

    def on_sync(sender: Any, tenant: Any, **kwargs: Any) -> None:
        synced.append(tenant)

    def on_migrated(sender: Any, schema_name: str, **kwargs: Any) -> None:
        migrated.append(schema_name)

    post_schema_sync.connect(on_sync)
    schema_migrated.connect(on_migrated)
    client = Client(schema_name=unique_schema)
    try:
        client.save(verbosity=0)
        assert schema_exists(unique_schema)
        # Tenant apps only: the shared tables stay in the public schema.
        # (and tenantkit's own history, which migrate_schemas' planning reads).
        assert _tables(unique_schema) == {
            "tenant_app_item",
            "tenant_app_note",
            "django_migrations",
            "tenantkit_migrations",
        }
        # Django records every migration (those of other apps ran as no-ops), as with
        # django-tenants.
        applied = _applied(unique_schema)
        assert ("tenant_app", "0001_initial") in applied
        assert ("tenant_app", "0002_note") in applied
        assert synced == [client]
        assert migrated == [unique_schema]
    finally:
        post_schema_sync.disconnect(on_sync)
        schema_migrated.disconnect(on_migrated)
        client.delete(force_drop=True)
    assert not schema_exists(unique_schema)
    assert not Client.objects.filter(schema_name=unique_schema).exists()


def test_failed_creation_leaves_nothing(unique_schema: str) -> None:
    from project.customers.models import Client

    from tenantkit.django.signals import schema_pre_migration
    from tenantkit.django.utils import schema_exists

    def boom(sender: Any, schema_name: str, **kwargs: Any) -> None:
        raise RuntimeError("migration failed")

    schema_pre_migration.connect(boom)
    try:
        with pytest.raises(RuntimeError, match="migration failed"):
            Client(schema_name=unique_schema).save(verbosity=0)
    finally:
        schema_pre_migration.disconnect(boom)
    assert not schema_exists(unique_schema)
    assert not Client.objects.filter(schema_name=unique_schema).exists()


@pytest.mark.parametrize("name", ['x"; DROP SCHEMA public; --', "pg_catalog2", "a" * 64])
def test_invalid_schema_name_is_refused_before_any_sql(name: str) -> None:
    from django.core.exceptions import ValidationError
    from project.customers.models import Client

    with pytest.raises(ValidationError):
        Client(schema_name=name).save(verbosity=0)
    assert not Client.objects.filter(schema_name=name).exists()


def test_case_insensitive_duplicate_is_refused(tenant_pair: Any) -> None:
    from django.core.exceptions import ValidationError
    from project.customers.models import Client

    a, _ = tenant_pair
    with pytest.raises(ValidationError, match="ignoring case"):
        Client(schema_name=a.schema_name.upper()).save(verbosity=0)


def test_without_auto_create_schema_the_signal_asks_for_a_sync(unique_schema: str) -> None:
    from project.customers.models import Client

    from tenantkit.django.signals import schema_needs_to_be_sync
    from tenantkit.django.utils import schema_exists

    asked: list[Any] = []

    def on_needs(sender: Any, tenant: Any, **kwargs: Any) -> None:
        asked.append(tenant.schema_name)

    schema_needs_to_be_sync.connect(on_needs)
    client = Client(schema_name=unique_schema)
    client.auto_create_schema = False
    try:
        client.save(verbosity=0)
        assert asked == [unique_schema]
        assert not schema_exists(unique_schema)
    finally:
        schema_needs_to_be_sync.disconnect(on_needs)
        client.delete()


def test_auto_drop_schema_on_delete(tenant_factory: Any) -> None:
    from project.customers.models import Client

    from tenantkit.django.utils import schema_exists

    tenant = tenant_factory()
    Client.objects.filter(pk=tenant.pk).delete()  # queryset delete: the signal drops it
    assert not schema_exists(tenant.schema_name)


def test_saving_a_new_tenant_outside_public_is_refused(
    tenant_pair: Any, unique_schema: str
) -> None:
    from project.customers.models import Client

    a, _ = tenant_pair
    with a, pytest.raises(Exception, match="outside the public schema"):
        Client(schema_name=unique_schema).save(verbosity=0)


def test_activate_and_with_restore_per_thread(tenant_pair: Any) -> None:
    from django.db import connection
    from project.customers.models import Client

    a, b = tenant_pair
    a.activate()
    try:
        assert connection.schema_name == a.schema_name
        with b:
            assert connection.schema_name == b.schema_name
            with a:
                assert connection.tenant is a
            assert connection.schema_name == b.schema_name
        assert connection.schema_name == a.schema_name
    finally:
        Client.deactivate()
    assert connection.schema_name == "public"

    seen: list[str] = []

    def other() -> None:
        seen.append(connection.schema_name)

    with a:
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == ["public"]


def test_domains_primary_and_reverse(tenant_factory: Any) -> None:
    from django.test import RequestFactory
    from project.customers.models import Domain

    tenant = tenant_factory()
    first = tenant.get_primary_domain()
    assert first.domain == host_of(tenant.schema_name)
    second = Domain(domain="second-" + first.domain, tenant=tenant, is_primary=True)
    second.save()
    first.refresh_from_db()
    assert not first.is_primary
    assert tenant.get_primary_domain() == second
    third = Domain(domain="third-" + first.domain, tenant=tenant, is_primary=False)
    third.save()
    assert tenant.get_primary_domain() == second
    request = RequestFactory().get("/", HTTP_HOST="example.org")
    assert tenant.reverse(request, "who") == f"http://{tenant.schema_name}.example.org/who/"


def test_router_follows_the_current_schema(tenant_pair: Any) -> None:
    from tenantkit.django.routers import TenantSyncRouter
    from tenantkit.django.utils import schema_context

    router = TenantSyncRouter()
    a, _ = tenant_pair
    assert router.allow_migrate("default", "customers") is None
    assert router.allow_migrate("default", "tenant_app") is False
    assert router.allow_migrate("other", "customers") is False
    with schema_context(a.schema_name):
        assert router.allow_migrate("default", "tenant_app") is None
        assert router.allow_migrate("default", "customers") is False


def test_schema_rename(tenant_factory: Any, unique_schema: str) -> None:
    from django.core.exceptions import ValidationError

    from tenantkit.django.utils import schema_context, schema_exists, schema_rename

    tenant = tenant_factory(items=["kept"])
    old = tenant.schema_name
    schema_rename(tenant, unique_schema)
    assert tenant.schema_name == unique_schema
    assert not schema_exists(old)
    with schema_context(unique_schema):
        from project.tenant_app.models import Item

        assert [i.name for i in Item.objects.all()] == ["kept"]
    with pytest.raises(ValidationError):
        schema_rename(tenant, 'bad"name')


def test_tenant_migration_decorator(tenant_pair: Any) -> None:
    from django.db import connection

    from tenantkit.django.utils import schema_context, tenant_migration

    ran: list[str] = []

    @tenant_migration
    def forwards(apps: Any, schema_editor: Any) -> None:
        ran.append(schema_editor.connection.schema_name)

    class Editor:
        def __init__(self) -> None:
            self.connection = connection

    a, _ = tenant_pair
    forwards(None, Editor())
    with schema_context(a.schema_name):
        forwards(None, Editor())
    assert ran == [a.schema_name]


def test_router_with_multi_type_tenants() -> None:
    from django.test import override_settings

    from tenantkit.django.routers import TenantSyncRouter
    from tenantkit.django.utils import get_tenant_type_choices, schema_context

    types = {
        "public": {"APPS": ["tenantkit.django", "project.customers"], "URLCONF": "x"},
        "shop": {"APPS": ["project.tenant_app"], "URLCONF": "project.urls_tenant"},
        "blog": {"APPS": ["project.shared_app"], "URLCONF": "project.urls_tenant"},
    }
    router = TenantSyncRouter()
    with override_settings(HAS_MULTI_TYPE_TENANTS=True, TENANT_TYPES=types):
        assert get_tenant_type_choices() == [("shop", "shop"), ("blog", "blog")]
        assert router.allow_migrate("default", "customers") is None
        assert router.allow_migrate("default", "tenant_app") is False
        from django.db import connection

        connection.set_schema("anything", tenant_type="shop")
        try:
            assert router.allow_migrate("default", "tenant_app") is None
            assert router.allow_migrate("default", "shared_app") is False
        finally:
            connection.set_schema_to_public()
        with schema_context("other"):
            pass
