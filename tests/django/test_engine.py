"""DjangoMigrationSource: the engine's replay of Django migrations equals Django's own migrate.

Tenants are made two ways on the same server: Django's executor per schema (what
django-tenants does, part A's ``migrate_schema``) and tenantkit's engine (collected SQL
replayed per schema, and the runner path through Django's executor on the engine's
connection). Their catalogs and ``django_migrations`` contents must be identical.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg import sql

pytestmark = pytest.mark.usefixtures("django_project")

#: tenantkit's own per-schema history exists only where the engine migrated.
_OURS = "tenantkit_migrations"


def _name() -> str:
    return f"dje_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bare_tenants(django_project: Any, conn: Any) -> Iterator[Callable[[int], list[str]]]:
    """``make(n)``: n tenant rows with empty schemas (nothing migrated); dropped at the end."""
    from project.customers.models import Client

    made: list[Any] = []

    def make(n: int) -> list[str]:
        names = []
        for _ in range(n):
            tenant = Client(schema_name=_name(), name="e")
            tenant.auto_create_schema = False
            tenant.save(verbosity=0)
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(tenant.schema_name)))
            made.append(tenant)
            names.append(tenant.schema_name)
        return names

    yield make
    for tenant in made:
        tenant.delete(force_drop=True)
    _forget_state(conn, [t.schema_name for t in made])


def _forget_state(conn: Any, schemas: list[str]) -> None:
    conn.execute("delete from public.tenantkit_migration_state where schema = any(%s)", (schemas,))


def _django_migrated(n: int) -> list[Any]:
    from django.db import connections
    from project.customers.models import Client

    from tenantkit.django._migrate import migrate_schema

    out = []
    for _ in range(n):
        # As django-tenants makes them: CREATE SCHEMA, then Django's own migrate in it
        # (save() itself takes tenantkit's provisioner, which keeps tenantkit's books).
        tenant = Client(schema_name=_name(), name="d")
        tenant.auto_create_schema = False
        tenant.save(verbosity=0)
        with connections["default"].cursor() as cursor:
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(tenant.schema_name)))
        migrate_schema(tenant.schema_name, verbosity=0, tenant=tenant)
        out.append(tenant)
    return out


def _history(conn: Any, schema: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        sql.SQL("select app, name from {} order by id").format(
            sql.Identifier(schema, "django_migrations")
        )
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _objects(conn: Any, schemas: list[str]) -> dict[str, dict[str, str]]:
    from tenantkit.introspection.catalog import read_catalog

    cats = read_catalog(conn, schemas)
    return {s: {k: v for k, v in c.objects().items() if _OURS not in k} for s, c in cats.items()}


def _engine(**kw: Any) -> Any:
    from tenantkit import migrations as engine
    from tenantkit.django._engine import DjangoMigrationSource, engine_target

    fast = kw.pop("fast", True)
    target = engine_target()
    if not fast:
        from dataclasses import replace

        target = replace(
            target,
            migration_source=DjangoMigrationSource(target.migration_source.database, fast=False),
        )
    return engine.migrate(target, **kw)


@pytest.mark.parametrize("fast", [True, False], ids=["collected-sql", "django-runner"])
def test_engine_equals_django_migrate(conn: Any, bare_tenants: Any, fast: bool) -> None:
    reference = _django_migrated(1)
    try:
        names = bare_tenants(3)
        report = _engine(schemas=names, shared=False, fast=fast)
        assert report.ok, report.as_dict()
        assert {r.schema for r in report.applied} == set(names)
        objects = _objects(conn, [reference[0].schema_name, *names])
        expected = objects[reference[0].schema_name]
        assert "table tenant_app_note" in expected
        for name in names:
            assert objects[name] == expected
            assert _history(conn, name) == _history(conn, reference[0].schema_name)
    finally:
        for t in reference:
            t.delete(force_drop=True)


def test_fast_path_replays_sql_for_the_test_project() -> None:
    from tenantkit.django._engine import DjangoMigrationSource

    mset = DjangoMigrationSource().load()
    by_id = {m.id: m for m in mset.tenant}
    assert by_id["tenant_app.0002_note"].sql is not None
    assert "CREATE TABLE" in (by_id["tenant_app.0002_note"].sql or "")
    # a shared app does nothing in a tenant schema: recorded only
    assert by_id["shared_app.0001_initial"].sql == ""
    shared = {m.id: m for m in mset.shared}
    assert "CREATE TABLE" in (shared["shared_app.0001_initial"].sql or "")
    assert [m.id for m in mset.tenant] == [m.id for m in mset.shared]
    assert all('"dje_' not in (m.sql or "") for m in mset.tenant)


def test_noop_and_adoption_of_django_migrated_schemas(conn: Any) -> None:
    from tenantkit import migrations as engine
    from tenantkit.django._engine import adopt, engine_target

    tenants = _django_migrated(2)
    names = [t.schema_name for t in tenants]
    try:
        target = engine_target()
        the_plan = engine.plan(target, shared=False, schemas=names)
        assert {e.schema for e in the_plan.pending} == set(names)
        adopted = adopt(target, the_plan.pending)
        assert set(adopted) == set(names)
        assert engine.plan(target, shared=False, schemas=names).is_empty
        report = engine.migrate(target, shared=False, schemas=names)
        assert report.ok and not report.applied
    finally:
        for t in tenants:
            t.delete(force_drop=True)
        _forget_state(conn, names)


def test_failing_tenant_does_not_block_others(conn: Any, bare_tenants: Any) -> None:
    names = bare_tenants(3)
    # Sabotage one: a table the first tenant migration wants to create already exists.
    conn.execute(
        sql.SQL("create table {} (id int)").format(sql.Identifier(names[1], "tenant_app_item"))
    )
    report = _engine(schemas=names, shared=False)
    assert [r.schema for r in report.failed] == [names[1]]
    assert report.failed[0].migration == "tenant_app.0001_initial"
    assert {r.schema for r in report.applied} == {names[0], names[2]}
    # nothing half-done in the failed one: no history rows, only the sabotage table
    tables = {
        r[0]
        for r in conn.execute("select tablename from pg_tables where schemaname = %s", (names[1],))
    }
    assert tables == {"tenant_app_item"}
