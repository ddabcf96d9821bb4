"""Regressions of django-tenants compatibility (issue 13), on the embedded server.

Each test pins a behaviour django-tenants' own suite found different once: savepoints and the
tenant's path, settings assigned directly, ``connection.tenant = None``, ``CloneSchema``,
``all_tenants_command`` through ``call_command``, ``TENANT_MIGRATION_ORDER``, the migration
signals, and cloning into names only django-tenants' rule accepts (quoted, never spliced).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.usefixtures("django_project")


def _names() -> list[str]:
    from project.tenant_app.models import Item

    return sorted(Item.objects.values_list("name", flat=True))


def _drop(schema: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)).as_string()
        )


@contextmanager
def _caught(signal: Any) -> Iterator[list[str]]:
    """The ``schema_name`` of every ``signal`` sent inside the block, in order."""
    seen: list[str] = []

    def receiver(sender: Any, schema_name: str, **kwargs: Any) -> None:
        seen.append(schema_name)

    signal.connect(receiver, weak=False)
    try:
        yield seen
    finally:
        signal.disconnect(receiver)


# -- connection state ------------------------------------------------------------------------


def test_switch_inside_savepoint_keeps_the_new_tenants_path(
    tenant_pair: tuple[Any, Any],
) -> None:
    """A savepoint rollback undoes SQL, not ``set_tenant()``: the queries after it go to the
    tenant the connection names, never back to the old path."""
    from django.db import connection, transaction

    first, second = tenant_pair
    try:
        with transaction.atomic():
            connection.set_tenant(first)
            assert _names() == [first.schema_name]
            point = transaction.savepoint()
            connection.set_tenant(second)
            assert _names() == [second.schema_name]
            transaction.savepoint_rollback(point)
            assert connection.schema_name == second.schema_name
            assert _names() == [second.schema_name]
        assert _names() == [second.schema_name]
    finally:
        connection.set_schema_to_public()


def test_tenant_none_means_public(tenant_pair: tuple[Any, Any]) -> None:
    """``connection.tenant = None`` (django-tenants' reset) puts the public schema first."""
    from django.db import connection

    connection.set_tenant(tenant_pair[0])
    try:
        connection.tenant = None
        with connection.cursor() as cursor:
            cursor.execute("select current_schemas(false)")
            assert cursor.fetchone()[0] == ["public"]
    finally:
        connection.set_schema_to_public()


def test_tenant_apps_assigned_directly_is_seen() -> None:
    """``settings.TENANT_APPS = ...`` (no ``override_settings``) is read again."""
    from django.conf import settings

    from tenantkit.django.conf import tenant_settings

    before = list(settings.TENANT_APPS)
    extra = "django.contrib.humanize"
    assert extra not in tenant_settings().tenant_apps
    settings.TENANT_APPS = [*before, extra]
    try:
        assert extra in tenant_settings().tenant_apps
    finally:
        settings.TENANT_APPS = before
    assert extra not in tenant_settings().tenant_apps


# -- cloning -----------------------------------------------------------------------------------


def test_clone_schema_copies_structure_and_data(
    tenant_factory: Callable[..., Any], unique_schema: str
) -> None:
    """``CloneSchema`` makes a schema with the source's tables and rows."""
    from django.db import connection

    from tenantkit.django.clone import CloneSchema
    from tenantkit.django.utils import schema_context

    source = tenant_factory(items=("x", "y"))
    try:
        CloneSchema().clone_schema(source.schema_name, unique_schema)
        with schema_context(unique_schema):
            assert _names() == ["x", "y"]
        with connection.cursor() as cursor:
            cursor.execute("select count(*) from pg_tables where schemaname = %s", [unique_schema])
            copied = cursor.fetchone()[0]
            cursor.execute(
                "select count(*) from pg_tables where schemaname = %s", [source.schema_name]
            )
            assert copied == cursor.fetchone()[0] > 0
        CloneSchema().clone_schema(source.schema_name, unique_schema + "_empty", "NODATA")
        with schema_context(unique_schema + "_empty"):
            assert _names() == []
    finally:
        _drop(unique_schema)
        _drop(unique_schema + "_empty")


def test_clone_schema_into_a_hyphenated_name(tenant_factory: Callable[..., Any]) -> None:
    """django-tenants' rule allows ``-`` and capitals: CloneSchema clones into such names;
    a quote stays refused (a ValidationError, nothing created)."""
    from django.core.exceptions import ValidationError

    from tenantkit.django.clone import CloneSchema
    from tenantkit.django.utils import schema_context, schema_exists

    source = tenant_factory(items=("x",))
    target = f"dj-{uuid.uuid4().hex[:8]}-Hy"
    try:
        CloneSchema().clone_schema(source.schema_name, target)
        with schema_context(target):
            assert _names() == ["x"]
    finally:
        _drop(target)
    with pytest.raises(ValidationError):
        CloneSchema().clone_schema(source.schema_name, 'dj"quote')
    assert not schema_exists('dj"quote')


@pytest.mark.parametrize("shape", ["{}-hyphen", '{}"quote', "{}%s%%pct", "{}; drop"])
def test_core_clone_quotes_every_name(conn: psycopg.Connection[Any], shape: str) -> None:
    """With a permissive policy, names with ``-``, a quote, ``%`` or ``;`` are cloned as
    quoted identifiers (serials, a partial index and a view included); the default policy
    refuses them before any SQL exists."""
    from tenantkit.errors import InvalidSchemaName
    from tenantkit.provisioning.clone import clone_schema

    source = f"cs_{uuid.uuid4().hex[:10]}"
    target = shape.format(f"cs_{uuid.uuid4().hex[:10]}")
    src = sql.Identifier(source)
    conn.execute(sql.SQL("create schema {}").format(src))
    try:
        conn.execute(
            sql.SQL(
                "create table {0}.t (id serial primary key, v text);"
                "create index t_part on {0}.t (v) where v is not null;"
                "create view {0}.tv as select v from {0}.t;"
                "insert into {0}.t (v) values ('a'), (null)"
            ).format(src)
        )
        with pytest.raises(InvalidSchemaName):
            clone_schema(conn, source, target, data=True)
        clone_schema(conn, source, target, data=True, validate_name=lambda name: None)
        dst = sql.Identifier(target)
        conn.execute(sql.SQL("insert into {}.t (v) values ('b')").format(dst))
        rows = conn.execute(sql.SQL("select id, v from {}.t order by id").format(dst)).fetchall()
        assert rows == [(1, "a"), (2, None), (3, "b")]
        assert conn.execute(sql.SQL("select count(*) from {}.tv").format(dst)).fetchone() == (3,)
        row = conn.execute(
            "select indexdef from pg_indexes where schemaname = %s and indexname = 't_part'",
            (target,),
        ).fetchone()
        assert row is not None and "WHERE" in row[0]
    finally:
        conn.rollback()
        for name in (source, target):
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))
        conn.commit()


# -- commands --------------------------------------------------------------------------------


def test_all_tenants_command_through_call_command(tenant_pair: tuple[Any, Any]) -> None:
    """``call_command("all_tenants_command", ...)`` runs the command in every tenant."""
    from django.core.management import call_command

    out = io.StringIO()
    call_command("all_tenants_command", "check", stdout=out)
    text = out.getvalue()
    for tenant in (*tenant_pair,):
        assert f"Applying command to: {tenant.schema_name}\n" in text
    assert "Applying command to: public\n" in text


def test_signals_on_sync_shared() -> None:
    """``migrate_schemas --shared`` with nothing pending still sends both signals for the
    public schema, once each (django-tenants visits it)."""
    from django.core.management import call_command

    from tenantkit.django.signals import schema_migrated, schema_pre_migration

    with _caught(schema_pre_migration) as pre, _caught(schema_migrated) as post:
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    assert pre == ["public"]
    assert post == ["public"]


def test_signals_under_multiprocessing_name_the_public_schema_only(
    tenant_pair: tuple[Any, Any],
) -> None:
    """Under the multiprocessing executor the tenants migrate in other processes, so this
    process hears of the public schema only, as with django-tenants."""
    from django.core.management import call_command

    from tenantkit.django.signals import schema_migrated, schema_pre_migration

    with _caught(schema_pre_migration) as pre, _caught(schema_migrated) as post:
        call_command("migrate_schemas", executor="multiprocessing", interactive=False, verbosity=0)
    assert pre == ["public"]
    assert post == ["public"]


@pytest.fixture
def migration_order() -> Iterator[None]:
    """``TENANT_MIGRATION_ORDER = ["-schema_name"]`` for one test."""
    from django.conf import settings

    settings.TENANT_MIGRATION_ORDER = ["-schema_name"]
    try:
        yield
    finally:
        settings.TENANT_MIGRATION_ORDER = None


@pytest.mark.usefixtures("migration_order")
def test_migration_order_orders_signals_and_runs(tenant_factory: Callable[..., Any]) -> None:
    """With ``TENANT_MIGRATION_ORDER`` the standard executor visits the tenants in that
    order: the signals name them so, and pending tenants are migrated so."""
    from django.core.management import call_command

    from tenantkit.django.signals import schema_migrated, schema_pre_migration

    made = sorted(t.schema_name for t in (tenant_factory(), tenant_factory()))
    for name in made:  # both behind by one migration
        call_command("migrate_schemas", "tenant_app", "0001", schema_name=name, verbosity=0)
    out = io.StringIO()
    with _caught(schema_pre_migration) as pre, _caught(schema_migrated) as post:
        call_command("migrate_schemas", interactive=False, verbosity=1, stdout=out)
    assert pre[0] == "public"
    assert [n for n in pre if n in made] == made[::-1]
    assert [n for n in post if n in made] == made[::-1]
    lines = [line for line in out.getvalue().splitlines() if any(n in line for n in made)]
    assert len(lines) == 2 and all("applied" in line for line in lines)
    assert made[1] in lines[0] and made[0] in lines[1]
