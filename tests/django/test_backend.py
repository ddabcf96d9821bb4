"""tenantkit.django's backend on the real server: paths, round trips, threads, pool, names."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from _djsupport import database_settings, in_threads
from _djsupport import item_names as _names
from _djsupport import raw_connection as _raw
from _wire import wire

pytestmark = pytest.mark.usefixtures("django_project")


def test_settings_are_django_tenants_names() -> None:
    from django.test import override_settings

    from tenantkit.django.conf import tenant_settings
    from tenantkit.django.utils import get_public_schema_name, get_tenant_model

    conf = tenant_settings()
    assert conf.tenant_model == "customers.Client"
    assert conf.public_schema_urlconf == "project.urls_public"
    assert get_tenant_model().__name__ == "Client"
    assert conf.limit_set_calls is False
    with override_settings(PG_EXTRA_SEARCH_PATHS=["extensions"], TENANT_LIMIT_SET_CALLS=True):
        assert tenant_settings().extra_search_paths == ("extensions",)
        assert tenant_settings().limit_set_calls is True
    assert tenant_settings().extra_search_paths == ()
    assert get_public_schema_name() == "public"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("acme", True),
        ("Acme-Corp 1", True),  # django-tenants accepts it; tenantkit quotes it
        ("é" * 31, True),
        ("é" * 32, False),  # 64 bytes: PostgreSQL would truncate it
        ("x" * 64, False),
        ("pg_acme", False),
        ('a"b', False),
        ("a;b", False),
        ("", False),
        ("_tenantkit_spare", False),
        ("information_schema", False),
    ],
)
def test_schema_names_follow_the_compatibility_policy(name: str, ok: bool) -> None:
    from django.core.exceptions import ValidationError
    from django.db import connection

    from tenantkit.django.postgresql_backend.base import is_valid_schema_name

    assert bool(is_valid_schema_name(name)) is ok
    if not ok:
        with pytest.raises(ValidationError):
            connection.set_schema(name)
    assert connection.schema_name == "public"


def test_odd_valid_names_are_always_quoted(django_project: Any) -> None:
    from project.customers.models import Client

    from tenantkit.django.utils import schema_context, schema_exists

    # Quotes it must double, and a % next to the statement's own placeholders.
    name = "Odd Name-%s" + uuid.uuid4().hex[:6]
    client = Client(schema_name=name)
    client.save(verbosity=0)
    try:
        assert schema_exists(name)
        with schema_context(name):
            from project.tenant_app.models import Item

            Item.objects.create(name="%s")
            assert list(Item.objects.filter(name="%s").values_list("name", flat=True)) == ["%s"]
    finally:
        client.delete(force_drop=True)
    assert not schema_exists(name)


def test_autocommit_path_is_sent_only_when_it_changes(tenant_pair: Any) -> None:
    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    _raw()
    for tenant, switch in ((a, True), (a, False), (b, True), (b, False), (a, True)):
        with schema_context(tenant.schema_name):
            sent = wire(_raw(), _names)
            assert _names() == [tenant.schema_name]
        assert sent.round_trips == 1, sent.messages
        assert len(sent.app_statements) == 1, sent.app_statements
        if switch:
            # The path (and DISCARD TEMP) in front of the statement, in the same message.
            assert sent.texts[0].startswith(f'SET search_path TO "{tenant.schema_name}"')
        else:
            # A repeat tenant: Django's statement alone, as plain Django sends it.
            assert sent.texts == sent.app_statements


def test_executemany_and_bulk_writes_land_in_the_tenant(tenant_factory: Any) -> None:
    from django.db import connection

    from tenantkit.django.utils import tenant_context

    tenant = tenant_factory()
    with tenant_context(tenant):
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO tenant_app_item (name) VALUES (%s)", [["a"], ["b"]])
        assert _names() == ["a", "b"]
    assert connection.schema_name == "public"


def test_transaction_path_rides_on_begin(tenant_pair: Any) -> None:
    from django.db import transaction

    from tenantkit.django.utils import schema_context, tenant_context

    a, b = tenant_pair

    def run() -> None:
        with tenant_context(a), transaction.atomic():
            assert _names() == [a.schema_name]
            assert _names() == [a.schema_name]

    with schema_context(b.schema_name):
        _names()  # the session path is b's
    sent = wire(_raw(), run)
    assert sent.texts[0].startswith(f'BEGIN; SET search_path TO "{a.schema_name}"')
    assert sent.round_trips == 4  # BEGIN (+path), two queries, COMMIT: as plain Django
    # Committed: the session path is a's, and the next transaction of a sends plain BEGIN.
    sent = wire(_raw(), run)
    assert sent.texts[0] == "BEGIN"
    assert sent.texts == ["BEGIN", *sent.app_statements, "COMMIT"]


def test_switch_inside_a_transaction(tenant_pair: Any) -> None:
    from django.db import transaction

    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    with transaction.atomic():
        with schema_context(a.schema_name):
            assert _names() == [a.schema_name]
            with schema_context(b.schema_name):
                assert _names() == [b.schema_name]
            assert _names() == [a.schema_name]
        from django.db import connection

        assert connection.schema_name == "public"


def test_hidden_path_changes_never_stick(tenant_pair: Any) -> None:
    from django.db import connection, transaction

    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    with schema_context(a.schema_name):
        with connection.cursor() as cursor:
            # A session-level change behind tenantkit's back (set_config with a parameter).
            cursor.execute("SELECT set_config('search_path', %s, false)", [b.schema_name])
        assert _names() == [a.schema_name]
        with transaction.atomic():
            sid = transaction.savepoint()
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('search_path', %s, true)", [b.schema_name])
            transaction.savepoint_rollback(sid)
            assert _names() == [a.schema_name]


def test_connection_tenant_api(tenant_pair: Any) -> None:
    from django.db import ProgrammingError, connection, transaction

    a, b = tenant_pair
    assert connection.schema_name == "public"
    connection.set_tenant(a)
    try:
        assert connection.tenant is a
        assert connection.schema_name == a.schema_name
        assert connection.settings_dict["SCHEMA"] == a.schema_name
        assert _names() == [a.schema_name]
        connection.set_schema(b.schema_name)
        assert connection.tenant.schema_name == b.schema_name
        assert _names() == [b.schema_name]
        # include_public=False: the shared tables are out of sight.
        connection.set_schema(b.schema_name, include_public=False)
        from project.customers.models import Client

        with pytest.raises(ProgrammingError), transaction.atomic():
            Client.objects.count()
    finally:
        connection.set_schema_to_public()
    assert connection.schema_name == "public"
    from project.customers.models import Client

    assert Client.objects.filter(schema_name=a.schema_name).exists()


def test_threads_never_see_another_threads_tenant(tenant_pair: Any) -> None:
    from django.db import connection

    a, b = tenant_pair
    barrier = threading.Barrier(8)
    wrong: list[str] = []

    def worker(n: int) -> None:
        mine = (a, b)[n % 2]
        connection.set_tenant(mine)
        barrier.wait()
        for _ in range(100):
            got = _names()
            if got != [mine.schema_name]:
                wrong.append(f"{mine.schema_name} read {got}")

    in_threads(worker)
    assert wrong == []
    assert connection.schema_name == "public"  # the main thread was never switched


def test_introspection_sees_the_current_schema(tenant_pair: Any) -> None:
    from django.db import connection

    from tenantkit.django.utils import schema_context

    a, _ = tenant_pair
    with schema_context(a.schema_name):
        tables = connection.introspection.table_names()
        assert "tenant_app_item" in tables
        assert "customers_client" not in tables
        assert _names() == [a.schema_name]  # the path is back afterwards
    tables = connection.introspection.table_names()
    assert "customers_client" in tables
    assert "tenant_app_item" not in tables


def test_django_pool_option(dsn: str, tenant_pair: Any) -> None:
    from django.db import connections

    from tenantkit import TenantConnection
    from tenantkit.django.postgresql_backend.base import DatabaseWrapper
    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    settings = database_settings(dsn, pool={"min_size": 1, "max_size": 2})
    settings.update(CONN_MAX_AGE=0)
    wrapper = DatabaseWrapper(settings, alias="pooled")
    connections["pooled"] = wrapper
    try:
        from project.tenant_app.models import Item

        for tenant in (a, b, a):
            with schema_context(tenant.schema_name):
                names = [i.name for i in Item.objects.using("pooled").all()]
                assert names == [tenant.schema_name]
                assert isinstance(wrapper.connection, TenantConnection)
            wrapper.close()  # back to the pool
    finally:
        wrapper.close()
        wrapper.close_pool()
        del connections["pooled"]


def test_pgbouncer_mode_against_a_real_pgbouncer(pgbouncer: Any, tenant_pair: Any) -> None:
    from django.db import connections, transaction

    from tenantkit.django.postgresql_backend.base import DatabaseWrapper
    from tenantkit.django.utils import schema_context
    from tenantkit.errors import PoolerDetected

    a, b = tenant_pair

    def wrapper_for(alias: str, **options: Any) -> Any:
        settings = database_settings(pgbouncer.dsn, **options)
        wrapper = DatabaseWrapper(settings, alias=alias)
        connections[alias] = wrapper
        return wrapper

    from project.tenant_app.models import Item

    bouncer = wrapper_for("bouncer", pgbouncer=True)
    errors: list[BaseException] = []

    def reads(n: int) -> None:
        try:
            local = wrapper_for("bouncer", pgbouncer=True)
            for i in range(30):
                tenant = (a, b)[(i + n) % 2]
                with schema_context(tenant.schema_name):
                    names = [x.name for x in Item.objects.using("bouncer").all()]
                    assert names == [tenant.schema_name]
                    with transaction.atomic(using="bouncer"):
                        assert Item.objects.using("bouncer").count() == 1
            local.close()
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=reads, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        with schema_context(a.schema_name):
            bouncer.ensure_connection()
            sent = wire(bouncer.connection, lambda: list(Item.objects.using("bouncer").all()))
        # One message, one implicit transaction: SET LOCAL, DISCARD TEMP and the statement.
        assert sent.round_trips == 1, sent.messages
        assert len(sent.texts) == 1
        assert sent.texts[0].startswith(f'SET LOCAL search_path TO "{a.schema_name}"')
        # Server-side binding (extended protocol): BEGIN ... COMMIT in one pipeline.
        binding = wrapper_for("binding", pgbouncer=True, server_side_binding=True)
        with schema_context(b.schema_name):
            binding.ensure_connection()
            sent = wire(binding.connection, lambda: list(Item.objects.using("binding").all()))
            assert [x.name for x in Item.objects.using("binding").all()] == [b.schema_name]
        # All of it in one pipeline (psycopg decides when it reads the answers).
        assert [kind for kind, _ in sent.messages if kind == "Query"] == []
        assert sent.texts[0] == "BEGIN"
        assert sent.texts[1].startswith(f'SET LOCAL search_path TO "{b.schema_name}"')
        assert sent.texts[-1] == "COMMIT"
        with schema_context(b.schema_name), bouncer.cursor() as cursor:
            cursor.executemany("SELECT %s", [[1], [2]])  # one pipeline transaction
            with bouncer.cursor() as check:
                check.execute("SELECT count(*) FROM tenant_app_item")
                assert check.fetchone() == (1,)
        binding.close()
        del connections["binding"]
        # Default mode refuses to run behind a transaction pooler.
        plain = wrapper_for("plain")

        def plain_transaction() -> None:
            with schema_context(a.schema_name), transaction.atomic(using="plain"):
                Item.objects.using("plain").count()

        with pytest.raises(PoolerDetected):
            plain_transaction()
        plain.close()
        del connections["plain"]
    finally:
        bouncer.close()
        del connections["bouncer"]


@pytest.mark.parametrize("binding", [False, True], ids=["client-binding", "server-binding"])
def test_iterator_named_cursors_follow_the_tenant(
    dsn: str, tenant_pair: Any, binding: bool
) -> None:
    from django.db import connections, transaction
    from project.tenant_app.models import Item

    from tenantkit.django.postgresql_backend.base import DatabaseWrapper
    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    settings = database_settings(dsn, server_side_binding=binding)
    connections["named"] = DatabaseWrapper(settings, alias="named")
    try:
        for tenant in (a, b, a):
            with schema_context(tenant.schema_name):
                # autocommit (WITH HOLD) and in a transaction
                got = [i.name for i in Item.objects.using("named").iterator(chunk_size=1)]
                assert got == [tenant.schema_name]
                with transaction.atomic(using="named"):
                    got = [i.name for i in Item.objects.using("named").iterator(chunk_size=1)]
                    assert got == [tenant.schema_name]
    finally:
        connections["named"].close()
        del connections["named"]


def test_maintenance_connection_is_plain(django_project: Any) -> None:
    from django.db import connection

    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == "postgres"


def test_cache_keys_and_extra_set_tenant_method(tenant_pair: Any) -> None:
    from django.db import connection
    from django.test import override_settings
    from project import hooks

    from tenantkit.django.cache import make_key, reverse_key
    from tenantkit.django.utils import schema_context

    a, _ = tenant_pair
    with schema_context(a.schema_name):
        key = make_key("k", "p", 1)
    assert key == f"{a.schema_name}:p:1:k"
    assert reverse_key(key) == "k"
    with override_settings(EXTRA_SET_TENANT_METHOD_PATH="project.hooks.record_tenant"):
        connection.set_tenant(a)
        connection.set_schema_to_public()
    assert hooks.calls == [a.schema_name, "public"]


def test_autocommit_results_are_the_statements_own(tenant_factory: Any) -> None:
    from django.db import connection
    from project.tenant_app.models import Item

    from tenantkit.django.utils import tenant_context

    tenant = tenant_factory(items=["a", "b", "c"])
    with tenant_context(tenant):
        # rowcount, RETURNING and description come from the statement, not the path prefix
        assert Item.objects.filter(name__in=["a", "b"]).update(name="z") == 2
        created = Item.objects.create(name="d")
        assert Item.objects.get(pk=created.pk).name == "d"
        assert Item.objects.filter(name="z").delete()[0] == 2
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM tenant_app_item ORDER BY id")
            assert [c.name for c in cursor.description] == ["name"]
            assert cursor.fetchall() == [("c",), ("d",)]
