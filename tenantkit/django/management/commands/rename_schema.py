"""``manage.py rename_schema --rename_from OLD --rename_to NEW``: rename a tenant's schema."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from psycopg import sql

from tenantkit.core.storage import MIGRATION_STATE_TABLE

from ...utils import (
    _execute,
    get_public_schema_name,
    get_tenant_database_alias,
    schema_rename,
)
from . import tenant_by_schema

__all__ = ["Command"]


class Command(BaseCommand):
    """Rename a tenant's schema; the row, the schema and tenantkit's books change together."""

    help = "Renames a tenant's schema"

    def add_arguments(self, parser: Any) -> None:
        """``--rename_from`` and ``--rename_to`` (asked for when missing)."""
        parser.add_argument("--rename_from", "--rename-from", dest="rename_from")
        parser.add_argument("--rename_to", "--rename-to", dest="rename_to")

    def handle(self, *args: Any, **options: Any) -> None:
        """Rename in one transaction."""
        old = options.get("rename_from") or input("Enter the schema to rename: ")
        new = options.get("rename_to") or input("Enter the new schema name: ")
        if old == get_public_schema_name():
            raise CommandError("the public schema cannot be renamed")
        tenant = tenant_by_schema(old)
        database = get_tenant_database_alias()
        try:
            with transaction.atomic(using=database):
                schema_rename(tenant, new, database=database)
                state = sql.Identifier(get_public_schema_name(), MIGRATION_STATE_TABLE)
                found = _execute(
                    database, sql.SQL("SELECT to_regclass(%s) IS NOT NULL"), [state.as_string(None)]
                )
                if found and found[0][0]:
                    _execute(
                        database,
                        sql.SQL("UPDATE {} SET schema = %s WHERE schema = %s").format(state),
                        [new, old],
                    )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"Renamed {old!r} to {new!r}"))
