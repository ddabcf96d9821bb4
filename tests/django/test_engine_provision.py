"""provision_schema(): spare, template and migrations paths give what Django's migrate gives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from psycopg import sql
from test_engine import _history, _objects

pytestmark = pytest.mark.usefixtures("django_project")


def _provisioned(schema: str) -> tuple[Any, str]:
    from django.db import transaction
    from project.customers.models import Client

    from tenantkit.django._provision import provision_schema

    tenant = Client(schema_name=schema, name="p")
    tenant.auto_create_schema = False
    with transaction.atomic():
        tenant.save(verbosity=0)
        path = provision_schema(schema)
    return tenant, path


def test_all_paths_equal_django(conn: Any) -> None:
    from project.customers.models import Client

    from tenantkit.django._engine import engine_target
    from tenantkit.django._provision import fill_spares
    from tenantkit.provisioning import Spares, Template

    reference = Client(schema_name=f"djr_{uuid.uuid4().hex[:12]}", name="r")
    reference.save(verbosity=0)
    made: list[Any] = [reference]
    target = engine_target()
    try:
        tenant, path = _provisioned(f"djp_{uuid.uuid4().hex[:12]}")
        made.append(tenant)
        assert path == "migrations"
        Template(target).ensure()
        tenant, path = _provisioned(f"djp_{uuid.uuid4().hex[:12]}")
        made.append(tenant)
        assert path == "template"
        assert fill_spares(1) == 1
        tenant, path = _provisioned(f"djp_{uuid.uuid4().hex[:12]}")
        made.append(tenant)
        assert path == "spare"
        names = [t.schema_name for t in made]
        objects = _objects(conn, names)
        for name in names[1:]:
            assert objects[name] == objects[reference.schema_name], name
            assert _history(conn, name) == _history(conn, reference.schema_name), name
    finally:
        for t in made:
            t.delete(force_drop=True)
        Spares(target).clear()
        Template(target).drop()
        conn.execute(
            "delete from public.tenantkit_migration_state where schema = any(%s)",
            ([t.schema_name for t in made],),
        )


def test_failure_leaves_nothing(conn: Any) -> None:
    from django.core.exceptions import ValidationError
    from django.db import transaction

    from tenantkit.django._provision import provision_schema

    with pytest.raises(ValidationError), transaction.atomic():
        provision_schema('bad"name')
    schema = f"djp_{uuid.uuid4().hex[:12]}"
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("create table {} (id int)").format(sql.Identifier(schema, "x")))
    try:
        from tenantkit.errors import SchemaNotEmpty

        with pytest.raises(SchemaNotEmpty), transaction.atomic():
            provision_schema(schema)
    finally:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
