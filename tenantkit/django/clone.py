"""django-tenants' ``CloneSchema``, on tenantkit's schema cloning.

django-tenants installs a large PL/pgSQL ``clone_schema()`` function in the database and
calls it. tenantkit reads the source schema's catalog and replays its structure (tables,
sequences with their current values, indexes, constraints, views, functions, enums) into the
new schema, with the rows when asked, inside the caller's transaction (a savepoint): nothing
is installed in the database, and a failure leaves no half-made schema.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, transaction

from tenantkit.errors import InvalidSchemaName
from tenantkit.provisioning.clone import clone_schema

from ._names import check_schema_name, core_name_policy
from .utils import get_tenant_database_alias, schema_exists

__all__ = ["CloneSchema"]

_MODES = {"DATA": True, "NODATA": False}


class CloneSchema:
    """``CloneSchema().clone_schema(base_schema_name, new_schema_name)``."""

    def clone_schema(
        self,
        base_schema_name: str,
        new_schema_name: str,
        clone_mode: str = "DATA",
        set_connection: bool = True,
        database: str | None = None,
    ) -> None:
        """Create ``new_schema_name`` as a copy of ``base_schema_name``.

        ``clone_mode`` is ``"DATA"`` (structure and rows, the default) or ``"NODATA"``.
        ``ValidationError`` for an invalid name or a schema that exists already (in any
        spelling, as django-tenants checks). Works inside ``transaction.atomic()``.
        """
        if clone_mode not in _MODES:
            raise ValueError(f"clone_mode must be 'DATA' or 'NODATA', not {clone_mode!r}")
        check_schema_name(new_schema_name)
        alias = database or get_tenant_database_alias()
        connection: Any = connections[alias]
        if set_connection:
            connection.set_schema_to_public()
        if not schema_exists(base_schema_name, database=alias):
            raise ValidationError(f"Schema {base_schema_name!r} does not exist")
        if schema_exists(new_schema_name, database=alias, case_sensitive=False):
            raise ValidationError("New schema name already exists")
        with transaction.atomic(using=alias):
            connection.ensure_connection()
            try:
                clone_schema(
                    connection.connection,
                    base_schema_name,
                    new_schema_name,
                    data=_MODES[clone_mode],
                    # django-tenants' name rule (hyphens, capitals...), not tenantkit's
                    # stricter one: the cloner quotes every identifier either way.
                    validate_name=core_name_policy,
                )
            except InvalidSchemaName as exc:
                raise ValidationError(f"cannot clone into {new_schema_name!r}: {exc}") from exc
