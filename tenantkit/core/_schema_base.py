"""Pure helpers shared by the schema functions: validation and SQL composition.

No I/O here: :mod:`tenantkit.core._schema_async` (the source) and its generated sync twin
:mod:`tenantkit.core._schema_sync` run these statements on the connection they are given. Every
name is validated with :func:`tenantkit.core.names.validate_schema_name` *before* any SQL is
composed, then quoted with ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

from psycopg import sql

from .names import validate_schema_name

EXISTS = sql.SQL("SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)")
LIST_USER = sql.SQL(
    "SELECT nspname FROM pg_catalog.pg_namespace"
    " WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY nspname"
)
LIST_ALL = sql.SQL("SELECT nspname FROM pg_catalog.pg_namespace ORDER BY nspname")


def create_sql(name: str, shared_schema: str) -> sql.Composed:
    """``CREATE SCHEMA`` for a validated ``name``."""
    validate_schema_name(name, shared_schema=shared_schema)
    return sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name))


def drop_sql(name: str, cascade: bool, missing_ok: bool, shared_schema: str) -> sql.Composed:
    """``DROP SCHEMA [IF EXISTS] ... CASCADE|RESTRICT`` for a validated ``name``."""
    validate_schema_name(name, shared_schema=shared_schema)
    return sql.SQL("DROP SCHEMA {if_exists}{name} {mode}").format(
        if_exists=sql.SQL("IF EXISTS " if missing_ok else ""),
        name=sql.Identifier(name),
        mode=sql.SQL("CASCADE" if cascade else "RESTRICT"),
    )


def rename_sql(old: str, new: str, shared_schema: str) -> sql.Composed:
    """``ALTER SCHEMA ... RENAME TO ...`` for validated names."""
    validate_schema_name(old, shared_schema=shared_schema)
    validate_schema_name(new, shared_schema=shared_schema)
    return sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
