"""Schema names as django-tenants accepts them, validated before any SQL exists.

tenantkit's own rule (``tenantkit.validate_schema_name``: ``[a-z_][a-z0-9_]*``) is stricter
than django-tenants', which accepts any 1-63 characters except quotes, backslashes, semicolons,
line breaks and NUL, and no ``pg_`` prefix. Existing projects have such schemas, so this module
accepts exactly those names, with two differences that only remove ways to lose data:

* the limit is 63 *bytes* (PostgreSQL's), not characters: PostgreSQL silently truncates longer
  identifiers, so two long names sharing a prefix would otherwise share one schema;
* tenantkit's internal prefixes (``_tenantkit_``, ``_pgtenants_``) are refused, as are
  ``information_schema`` and ``pg_temp``/``pg_toast`` style names.

The names are never interpolated: every identifier is composed with ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from psycopg import sql

from tenantkit.errors import InvalidSchemaName

__all__ = [
    "check_schema_name",
    "core_name_policy",
    "is_valid_schema_name",
    "path_bytes",
    "quote_schema_name",
]

# django-tenants' PGSQL_VALID_SCHEMA_NAME (same meaning, written afresh).
_ALLOWED = re.compile(r"(?!pg_)[^\"'\\;\x00\r\n]{1,63}\Z", re.IGNORECASE)
_RESERVED_PREFIXES = ("_tenantkit_", "_pgtenants_")
_RESERVED = frozenset({"information_schema"})


def is_valid_schema_name(name: object) -> bool:
    """Whether django-tenants (and tenantkit) accept ``name`` as a schema name."""
    if not isinstance(name, str) or not _ALLOWED.match(name):
        return False
    if len(name.encode()) > 63:
        return False
    lowered = name.lower()
    return lowered not in _RESERVED and not lowered.startswith(_RESERVED_PREFIXES)


def check_schema_name(name: object) -> None:
    """Raise ``ValidationError`` (django-tenants' error) unless ``name`` is a valid schema name."""
    if not is_valid_schema_name(name):
        raise ValidationError(f"Invalid string used for the schema name: {name!r}.")


def core_name_policy(name: str) -> None:
    """django-tenants' rule as a name policy of tenantkit's core (``validate_name=`` of
    ``tenantkit.clone_schema``): raise ``InvalidSchemaName`` for a name it refuses."""
    if not is_valid_schema_name(name):
        raise InvalidSchemaName(name, "not a schema name django-tenants accepts")


def quote_schema_name(name: str) -> str:
    """``name`` quoted as a PostgreSQL identifier (embedded quotes doubled)."""
    if "\x00" in name:
        raise ValidationError("Invalid string used for the schema name.")
    return '"' + name.replace('"', '""') + '"'


def path_bytes(schemas: tuple[str, ...]) -> bytes:
    """The quoted ``search_path`` value of ``schemas`` (duplicates dropped), ``pg_temp`` last.

    ``pg_temp`` last: a temporary table can never shadow a tenant's table.
    """
    seen: list[str] = []
    for schema in schemas:
        if schema not in seen:
            seen.append(schema)
    parts: list[sql.Composable] = [sql.Identifier(s) for s in seen]
    parts.append(sql.SQL("pg_temp"))
    return sql.SQL(", ").join(parts).as_bytes(None)
