"""Schema lifecycle: create, drop, rename, exists, list (sync, and async twins prefixed ``a``).

Usable without the registry. Every name is validated with
:func:`tenantkit.names.validate_schema_name` *before* any SQL is composed, then quoted with
``psycopg.sql.Identifier``. The functions run on the connection as given: inside the caller's
transaction when there is one, so they compose into atomic operations such as tenant creation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from .errors import SchemaExists, SchemaNotEmpty, SchemaNotFound
from .names import validate_schema_name

__all__ = [
    "acreate_schema",
    "adrop_schema",
    "alist_schemas",
    "arename_schema",
    "aschema_exists",
    "create_schema",
    "drop_schema",
    "list_schemas",
    "rename_schema",
    "schema_exists",
]

_EXISTS = sql.SQL("SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)")
_LIST_USER = sql.SQL(
    "SELECT nspname FROM pg_catalog.pg_namespace"
    " WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY nspname"
)
_LIST_ALL = sql.SQL("SELECT nspname FROM pg_catalog.pg_namespace ORDER BY nspname")


@contextmanager
def _translated(name: str, *, new: str | None = None) -> Iterator[None]:
    """Turn the SQLSTATEs we understand into tenantkit errors (``raise ... from``)."""
    try:
        yield
    except pgerrors.DuplicateSchema as exc:
        taken = new if new is not None else name
        raise SchemaExists(
            f"schema {taken!r} already exists; pick another name or drop it first"
        ) from exc
    except pgerrors.InvalidSchemaName as exc:  # SQLSTATE 3F000: no such schema
        raise SchemaNotFound(
            f"schema {name!r} does not exist; check the name or pass missing_ok=True"
        ) from exc
    except pgerrors.DependentObjectsStillExist as exc:
        raise SchemaNotEmpty(
            f"schema {name!r} still holds objects; pass cascade=True to drop them too"
        ) from exc


def _create(name: str, shared_schema: str) -> sql.Composed:
    validate_schema_name(name, shared_schema=shared_schema)
    return sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name))


def _drop(name: str, cascade: bool, missing_ok: bool, shared_schema: str) -> sql.Composed:
    validate_schema_name(name, shared_schema=shared_schema)
    return sql.SQL("DROP SCHEMA {if_exists}{name} {mode}").format(
        if_exists=sql.SQL("IF EXISTS " if missing_ok else ""),
        name=sql.Identifier(name),
        mode=sql.SQL("CASCADE" if cascade else "RESTRICT"),
    )


def _rename(old: str, new: str, shared_schema: str) -> sql.Composed:
    validate_schema_name(old, shared_schema=shared_schema)
    validate_schema_name(new, shared_schema=shared_schema)
    return sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))


def create_schema(
    conn: psycopg.Connection[Any], name: str, *, shared_schema: str = "public"
) -> None:
    """Create the empty schema ``name``; ``SchemaExists`` if it is already there."""
    stmt = _create(name, shared_schema)
    with _translated(name):
        conn.execute(stmt)


def drop_schema(
    conn: psycopg.Connection[Any],
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
    stmt = _drop(name, cascade, missing_ok, shared_schema)
    with _translated(name):
        conn.execute(stmt)


def rename_schema(
    conn: psycopg.Connection[Any], old: str, new: str, *, shared_schema: str = "public"
) -> None:
    """Rename schema ``old`` to ``new`` (``SchemaNotFound`` / ``SchemaExists`` on conflicts)."""
    stmt = _rename(old, new, shared_schema)
    with _translated(old, new=new):
        conn.execute(stmt)


def schema_exists(
    conn: psycopg.Connection[Any], name: str, *, shared_schema: str = "public"
) -> bool:
    """Tell whether the (valid) schema ``name`` exists."""
    validate_schema_name(name, shared_schema=shared_schema)
    row = conn.execute(_EXISTS, (name,)).fetchone()
    return bool(row and row[0])


def list_schemas(conn: psycopg.Connection[Any], *, include_system: bool = False) -> list[str]:
    """Names of the schemas in the database, sorted.

    Without ``include_system``, ``pg_*`` schemas (catalog, toast, temp) and
    ``information_schema`` are left out; the shared schema (``public``) is included.
    """
    rows = conn.execute(_LIST_ALL if include_system else _LIST_USER).fetchall()
    return [row[0] for row in rows]


async def acreate_schema(
    conn: psycopg.AsyncConnection[Any], name: str, *, shared_schema: str = "public"
) -> None:
    """Async twin of :func:`create_schema`."""
    stmt = _create(name, shared_schema)
    with _translated(name):
        await conn.execute(stmt)


async def adrop_schema(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    *,
    cascade: bool = False,
    missing_ok: bool = False,
    shared_schema: str = "public",
) -> None:
    """Async twin of :func:`drop_schema`."""
    stmt = _drop(name, cascade, missing_ok, shared_schema)
    with _translated(name):
        await conn.execute(stmt)


async def arename_schema(
    conn: psycopg.AsyncConnection[Any], old: str, new: str, *, shared_schema: str = "public"
) -> None:
    """Async twin of :func:`rename_schema`."""
    stmt = _rename(old, new, shared_schema)
    with _translated(old, new=new):
        await conn.execute(stmt)


async def aschema_exists(
    conn: psycopg.AsyncConnection[Any], name: str, *, shared_schema: str = "public"
) -> bool:
    """Async twin of :func:`schema_exists`."""
    validate_schema_name(name, shared_schema=shared_schema)
    cur = await conn.execute(_EXISTS, (name,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def alist_schemas(
    conn: psycopg.AsyncConnection[Any], *, include_system: bool = False
) -> list[str]:
    """Async twin of :func:`list_schemas`."""
    cur = await conn.execute(_LIST_ALL if include_system else _LIST_USER)
    return [row[0] for row in await cur.fetchall()]
