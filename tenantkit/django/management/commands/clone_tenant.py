"""``manage.py clone_tenant --clone_from SRC --schema_name NEW ...``: a new tenant whose
schema is a copy of another's (structure and data), made in one transaction."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import connections, transaction
from psycopg import sql

from tenantkit.core.storage import MIGRATION_STATE_TABLE

from ..._names import core_name_policy
from ...utils import (
    get_public_schema_name,
    get_tenant_database_alias,
    get_tenant_domain_model,
    get_tenant_model,
)
from . import tenant_by_schema
from .create_tenant import Command as CreateTenant
from .create_tenant import model_fields

__all__ = ["Command"]


class Command(CreateTenant):
    """Clone a tenant: ``--clone_from`` names the schema copied."""

    help = "Clones a tenant"

    def add_arguments(self, parser: Any) -> None:
        """The options of ``create_tenant``, ``--clone_from``, ``--clone_tenant_fields``."""
        super().add_arguments(parser)
        parser.add_argument("--clone_from", "--clone-from", dest="clone_from")
        parser.add_argument(
            "--clone_tenant_fields",
            "--clone-tenant-fields",
            dest="clone_tenant_fields",
            choices=["true", "false", "True", "False"],
            default="false",
            help="Copy the source tenant's field values where not given",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Copy the schema, create the row and domain."""
        from tenantkit.provisioning.clone import clone_schema

        source_name = options.get("clone_from") or input("Schema to clone from: ")
        source = tenant_by_schema(source_name)
        if options["clone_tenant_fields"].lower() == "true":
            for field in model_fields(get_tenant_model()):
                if field.name != "schema_name" and options.get(field.attname) is None:
                    options[field.attname] = getattr(source, field.attname)
        values = self._values(get_tenant_model(), "", (), options)
        domain_values = self._values(get_tenant_domain_model(), "domain_", ("tenant",), options)
        tenant = get_tenant_model()(**values)
        tenant.auto_create_schema = False
        database = get_tenant_database_alias()
        try:
            tenant.full_clean(validate_unique=False)
            with transaction.atomic(using=database):
                tenant.save(verbosity=0)
                connection = connections[database]
                connection.ensure_connection()
                raw = connection.connection
                clone_schema(
                    raw,
                    source.schema_name,
                    tenant.schema_name,
                    data=True,
                    validate_name=core_name_policy,
                )
                state = sql.Identifier(get_public_schema_name(), MIGRATION_STATE_TABLE)
                if _exists(raw, state):
                    # The copy is at the source's migrations: so say tenantkit's books.
                    raw.execute(
                        sql.SQL(
                            "insert into {0} (schema, kind, applied, checksums, digest) "
                            "select %s, kind, applied, checksums, digest from {0} "
                            "where schema = %s"
                        ).format(state),
                        (tenant.schema_name, source.schema_name),
                    )
                if domain_values.get("domain"):
                    get_tenant_domain_model()(tenant=tenant, **domain_values).save()
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(
            self.style.SUCCESS(f"Tenant {tenant.schema_name!r} cloned from {source_name!r}")
        )


def _exists(raw: Any, table: sql.Identifier) -> bool:
    row = raw.execute("select to_regclass(%s) is not null", (table.as_string(raw),)).fetchone()
    return bool(row and row[0])
