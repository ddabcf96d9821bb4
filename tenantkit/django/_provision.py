"""Creating a tenant schema at the migration head, fast: ``provision_schema()``.

Contract (what ``TenantMixin.create_schema`` relies on)
-------------------------------------------------------
``provision_schema(schema_name, *, verbosity=0, database=None) -> str``

* Runs on the Django connection of ``database`` (``TENANT_DB_ALIAS`` by default) inside
  ``transaction.atomic()``: called inside the caller's atomic block (the tenant row's), the
  schema, its tables, tenantkit's books and the ``django_migrations`` rows commit with the row
  or not at all.
* ``schema_name`` must not exist, or exist empty; it is validated first (django-tenants' rule).
* Takes the fastest valid path of tenantkit's provisioner and returns it: ``"spare"`` (a
  pre-built schema at the head claimed by rename; its ``django_migrations`` rows travel with
  it), ``"template"`` (the template schema's tables copied, then its ``django_migrations`` rows
  written by the source's ``after_schema``), or ``"migrations"`` (every tenant migration
  replayed, the Django rows written the same way). A spare or template that is not exactly
  at the head of the project's migrations is never used.
* Spares and the template are made and kept at the head by ``migrate_schemas`` (they are tenant
  schemas to it); ``fill_spares(n)`` adds spares.
* Errors: ``ValidationError`` for an invalid name, ``tenantkit.errors.SchemaNotEmpty`` for a
  schema holding objects, ``tenantkit.errors.MigrationError`` naming the failing migration.
"""

from __future__ import annotations

from django.db import connections, transaction

from ._engine import engine_target
from ._names import check_schema_name
from .conf import tenant_settings

__all__ = ["fill_spares", "provision_schema"]


def provision_schema(schema_name: str, *, verbosity: int = 0, database: str | None = None) -> str:
    """Create ``schema_name`` at the migration head; returns the path taken (see above)."""
    from tenantkit.provisioning import MigrationProvisioner

    check_schema_name(schema_name)
    database = database or tenant_settings().db_alias
    target = engine_target(database)
    provisioner = MigrationProvisioner(target)
    connection = connections[database]
    with transaction.atomic(using=database):
        connection.ensure_connection()
        raw = connection.connection
        # The provisioner writes tenantkit's books and, through the source's after_schema
        # hook, the django_migrations rows (a spare carries its own).
        provisioner.provision(raw, schema_name)
        path = provisioner.last_path or "migrations"
    if verbosity >= 1:
        print(f"schema {schema_name!r} created from the {path}")
    return path


def fill_spares(n: int, *, database: str | None = None) -> int:
    """Add up to ``n`` spare schemas at the migration head; returns how many were made."""
    import psycopg

    from tenantkit.provisioning import Spares

    target = engine_target(database or tenant_settings().db_alias)
    spares = Spares(target)
    before = set(spares.names())
    made = int(spares.fill(n))
    new = [s for s in spares.names() if s not in before]
    if new:
        # Spares are cloned from the template's tables, not its rows: write Django's history
        # into each (a spare claimed meanwhile has moved on and is skipped).
        ids = [m.id for m in target.migration_source.load().tenant]
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            for schema in new:
                hook = target.migration_source.after_schema("tenant", schema, ids, ids)
                if hook is None:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(hook.as_string(conn).encode())
                except psycopg.errors.InvalidSchemaName:
                    continue
    return made
