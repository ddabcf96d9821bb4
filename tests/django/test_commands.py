"""The management commands on the real server: migrate_schemas on the engine, and the
tenant commands (create, clone, rename, delete, tenant_command, all_tenants_command)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql
from test_engine import _history, _objects

pytestmark = pytest.mark.usefixtures("django_project")


def _call(*args: Any, **kw: Any) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **kw)
    return out.getvalue()


@pytest.fixture
def bare(django_project: Any, conn: Any) -> Iterator[Any]:
    """``make(n)``: tenant rows with empty schemas; all dropped at the end."""
    from project.customers.models import Client

    made: list[Any] = []

    def make(n: int) -> list[str]:
        out = []
        for _ in range(n):
            t = Client(schema_name=f"djc_{uuid.uuid4().hex[:12]}", name="c")
            t.auto_create_schema = False
            t.save(verbosity=0)
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(t.schema_name)))
            made.append(t)
            out.append(t.schema_name)
        return out

    yield make
    for t in made:
        t.delete(force_drop=True)
    conn.execute(
        "delete from public.tenantkit_migration_state where schema = any(%s)",
        ([t.schema_name for t in made],),
    )


def test_migrate_schemas_plan_check_apply_noop(bare: Any, conn: Any) -> None:
    names = bare(2)
    _call("migrate_schemas", shared=True, verbosity=0)  # public adopted / current
    out = _call("migrate_schemas", "--tenant", "--plan", verbosity=0)
    for name in names:
        assert f"{name} (tenant):" in out
    assert "tenant_app.0002_note" in out
    with pytest.raises(SystemExit) as exc:
        _call("migrate_schemas", "--check", verbosity=0)
    assert exc.value.code == 1
    out = _call("migrate_schemas", "--executor", "threads", verbosity=1)
    assert "done" in out
    for name in names:
        assert ("tenant_app", "0002_note") in _history(conn, name)
    _call("migrate_schemas", "--check", verbosity=0)  # nothing pending: no exit
    out = _call("migrate_schemas", verbosity=1)
    assert "0 of" in out


def test_migrate_schemas_one_schema_and_errors(bare: Any, conn: Any) -> None:
    from django.core.management.base import CommandError

    a, b = bare(2)
    _call("migrate_schemas", "-s", a, verbosity=0)
    assert _history(conn, a)
    assert conn.execute(
        "select to_regclass(%s)", (sql.Identifier(b, "django_migrations").as_string(conn),)
    ).fetchone() == (None,)
    with pytest.raises(CommandError, match="does not exist"):
        _call("migrate_schemas", "-s", "djc_no_such_schema", verbosity=0)
    with pytest.raises(CommandError, match="invalid schema name"):
        _call("migrate_schemas", "-s", 'x"; drop', verbosity=0)
    with pytest.raises(CommandError, match="--tenant"):
        _call("migrate_schemas", "--shared", "-s", a, verbosity=0)


def test_migrate_schemas_failure_names_tenant_others_migrate(bare: Any, conn: Any) -> None:
    from django.core.management.base import CommandError

    names = bare(3)
    conn.execute(
        sql.SQL("create table {} (id int)").format(sql.Identifier(names[0], "tenant_app_note"))
    )
    with pytest.raises(CommandError) as exc:
        _call("migrate_schemas", "--tenant", "--executor", "multiprocessing", verbosity=0)
    assert names[0] in str(exc.value)
    assert "tenant_app.0002_note" in str(exc.value)
    for name in names[1:]:
        assert ("tenant_app", "0002_note") in _history(conn, name)
    # the failed tenant is at its old version: nothing of 0001 stayed either
    assert conn.execute(
        "select to_regclass(%s)", (sql.Identifier(names[0], "django_migrations").as_string(conn),)
    ).fetchone() == (None,)


def test_migrate_schemas_fake_records_only(bare: Any, conn: Any) -> None:
    (name,) = bare(1)
    _call("migrate_schemas", "-s", name, "--fake", verbosity=0)
    assert ("tenant_app", "0001_initial") in _history(conn, name)
    tables = {
        r[0] for r in conn.execute("select tablename from pg_tables where schemaname = %s", (name,))
    }
    assert "tenant_app_item" not in tables


def test_migrate_override_is_migrate_schemas() -> None:
    from django.core.management import get_commands, load_command_class

    cmd = load_command_class(get_commands()["migrate"], "migrate")
    from tenantkit.django.management.commands.migrate_schemas import MigrateSchemasCommand

    assert isinstance(cmd, MigrateSchemasCommand)


def test_create_clone_rename_delete(conn: Any) -> None:
    from django.core.management.base import CommandError
    from project.customers.models import Client, Domain

    from tenantkit.django.utils import schema_exists

    src = f"djc_{uuid.uuid4().hex[:12]}"
    _call(
        "create_tenant", schema_name=src, name="Src", domain_domain=f"{src}.test", interactive=False
    )
    tenant = Client.objects.get(schema_name=src)
    assert Domain.objects.get(tenant=tenant).domain == f"{src}.test"
    from project.tenant_app.models import Item

    from tenantkit.django.utils import tenant_context

    with tenant_context(tenant):
        Item.objects.create(name="cloned row")
    dst = f"djc_{uuid.uuid4().hex[:12]}"
    renamed = f"djc_{uuid.uuid4().hex[:12]}"
    try:
        _call(
            "clone_tenant",
            clone_from=src,
            schema_name=dst,
            clone_tenant_fields="true",
            domain_domain=f"{dst}.test",
            interactive=False,
        )
        clone = Client.objects.get(schema_name=dst)
        assert clone.name == "Src"
        with tenant_context(clone):
            assert list(Item.objects.values_list("name", flat=True)) == ["cloned row"]
        objects = _objects(conn, [src, dst])
        assert objects[src] == objects[dst]
        with pytest.raises(CommandError):
            _call("create_tenant", schema_name=src, name="dup", interactive=False)
        _call("rename_schema", rename_from=dst, rename_to=renamed)
        assert schema_exists(renamed) and not schema_exists(dst)
        assert Client.objects.filter(schema_name=renamed).exists()
        with pytest.raises(CommandError):
            _call("rename_schema", rename_from="djc_nobody", rename_to="djc_x")
        _call("delete_tenant", schema_name=renamed, interactive=False)
        assert not schema_exists(renamed)
        assert not Client.objects.filter(schema_name=renamed).exists()
    finally:
        for name in (src, dst, renamed):
            for t in Client.objects.filter(schema_name=name):
                t.delete(force_drop=True)
        conn.execute(
            "delete from public.tenantkit_migration_state where schema = any(%s)",
            ([src, dst, renamed],),
        )


def test_tenant_command_and_all_tenants_command(tenant_factory: Any) -> None:
    from django.core.management.base import CommandError

    tenant = tenant_factory(items=("x", "y"))
    out = _call("tenant_command", "showmigrations", "tenant_app", schema_name=tenant.schema_name)
    assert "[X] 0002_note" in out
    with pytest.raises(CommandError):
        _call("tenant_command", "showmigrations", schema_name="djc_nobody")
    out = _call("all_tenants_command", "check")
    assert f"Applying command to: {tenant.schema_name}" in out
    with pytest.raises(CommandError):
        _call("all_tenants_command", "no_such_command")


def _post_migrate_schemas(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The schema current at each ``post_migrate`` emission of migrate_schemas."""
    from django.db import connection

    from tenantkit.django.management.commands import migrate_schemas

    emitted: list[str] = []
    original = migrate_schemas.emit_post_migrate_signal

    def spy(*args: Any, **kwargs: Any) -> None:
        emitted.append(connection.schema_name)
        original(*args, **kwargs)

    monkeypatch.setattr(migrate_schemas, "emit_post_migrate_signal", spy)
    return emitted


def test_post_migrate_once_per_tenant_when_a_project_receiver_listens(
    bare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver of the project's may work in each tenant schema: it gets every one, as
    with django-tenants (which runs migrate per schema)."""
    from django.db import connection
    from django.db.models.signals import post_migrate

    names = bare(2)
    _call("migrate_schemas", shared=True, verbosity=0)
    emitted = _post_migrate_schemas(monkeypatch)
    seen: set[str] = set()

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.add(connection.schema_name)

    post_migrate.connect(receiver, weak=False, dispatch_uid="tk-test-per-tenant")
    try:
        _call("migrate_schemas", "--tenant", verbosity=0)
    finally:
        post_migrate.disconnect(dispatch_uid="tk-test-per-tenant")
    assert set(names) <= seen
    assert sorted(set(emitted) & set(names)) == sorted(names)


def test_post_migrate_once_for_the_tenants_with_built_in_receivers_only(
    bare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Content types and permissions are kept out of tenant schemas in this project: their
    receivers do nothing there, so the signal goes out once, not once per tenant."""
    names = bare(3)
    _call("migrate_schemas", shared=True, verbosity=0)
    emitted = _post_migrate_schemas(monkeypatch)
    _call("migrate_schemas", "--tenant", verbosity=0)
    assert len([s for s in emitted if s in names]) == 1
