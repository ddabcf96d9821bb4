"""Schema lifecycle on one connection: create, drop, rename, exists, list.

One source for both APIs: the asyncio module of this pair is written by hand, and
``tools/async_to_sync.py`` generates the sync one from it (CI fails when it is stale). Import
both sets from :mod:`tenantkit.core.schema`. Validation, SQL and error translation live in
:mod:`tenantkit.core._schema_base`, so a bad name is refused before any SQL exists. The functions
run on the connection as given: inside the caller's transaction when there is one, so they
compose into atomic operations such as tenant creation.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ._schema_base import EXISTS, LIST_ALL, LIST_USER, create_sql, drop_sql, rename_sql
from .names import validate_schema_name
from .storage import translated

__all__ = ["acreate_schema", "adrop_schema", "alist_schemas", "arename_schema", "aschema_exists"]


async def acreate_schema(
    conn: psycopg.AsyncConnection[Any], name: str, *, shared_schema: str = "public"
) -> None:
    """Create the empty schema ``name``; ``SchemaExists`` if it is already there."""
    stmt = create_sql(name, shared_schema)
    with translated(schema=name):
        await conn.execute(stmt)


async def adrop_schema(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    *,
    cascade: bool = False,
    missing_ok: bool = False,
    shared_schema: str = "public",
) -> None:
    """Drop the schema ``name``.

    Raises ``SchemaNotEmpty`` when it holds objects and ``cascade`` is false, and
    ``SchemaNotFound`` when it does not exist and ``missing_ok`` is false.
    """
    stmt = drop_sql(name, cascade, missing_ok, shared_schema)
    with translated(schema=name):
        await conn.execute(stmt)


async def arename_schema(
    conn: psycopg.AsyncConnection[Any], old: str, new: str, *, shared_schema: str = "public"
) -> None:
    """Rename schema ``old`` to ``new`` (``SchemaNotFound`` / ``SchemaExists`` on conflicts)."""
    stmt = rename_sql(old, new, shared_schema)
    with translated(schema=old, new_schema=new):
        await conn.execute(stmt)


async def aschema_exists(
    conn: psycopg.AsyncConnection[Any], name: str, *, shared_schema: str = "public"
) -> bool:
    """Tell whether the (valid) schema ``name`` exists."""
    validate_schema_name(name, shared_schema=shared_schema)
    row = await (await conn.execute(EXISTS, (name,))).fetchone()
    return bool(row and row[0])


async def alist_schemas(
    conn: psycopg.AsyncConnection[Any], *, include_system: bool = False
) -> list[str]:
    """Names of the schemas in the database, sorted.

    Without ``include_system``, ``pg_*`` schemas (catalog, toast, temp) and
    ``information_schema`` are left out; the shared schema (``public``) is included.
    """
    rows = await (await conn.execute(LIST_ALL if include_system else LIST_USER)).fetchall()
    return [row[0] for row in rows]
