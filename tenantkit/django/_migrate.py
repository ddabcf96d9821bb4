"""Migrating one schema with Django's own executor (the correct, general path).

``migrate_schema()`` runs Django's ``migrate`` command (Django's class itself, whatever a
project's ``migrate`` command is) with the schema current, so the router migrates only the
apps that belong there (``TENANT_APPS``, or the tenant type's apps), the migration history goes
to that schema's ``django_migrations`` table, and ``post_migrate`` handlers (content types,
permissions) run in it. django-tenants does the same through ``migrate_schemas`` per schema.
"""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.commands.migrate import Command as MigrateCommand

from ._state import FakeTenant
from .signals import schema_migrated, schema_pre_migration
from .utils import get_tenant_database_alias, tenant_context

__all__ = ["migrate_schema"]


def migrate_schema(
    schema_name: str,
    *,
    verbosity: int = 0,
    fake: bool = False,
    database: str | None = None,
    tenant: object | None = None,
) -> None:
    """Apply the pending migrations of the schema ``schema_name`` (the schema must exist).

    ``tenant`` (the tenant model instance) lets the router pick a multi-type tenant's apps;
    ``fake`` records the migrations without running them (a schema cloned from
    ``TENANT_BASE_SCHEMA``).
    """
    database = database or get_tenant_database_alias()
    current = tenant if tenant is not None else FakeTenant(schema_name)
    with tenant_context(current, database=database):
        schema_pre_migration.send(sender=migrate_schema, schema_name=schema_name)
        call_command(
            MigrateCommand(),
            database=database,
            fake=fake,
            interactive=False,
            verbosity=verbosity,
        )
        schema_migrated.send(sender=migrate_schema, schema_name=schema_name)
