"""Provisioning one tenant schema on the caller's connection: the paths of
:class:`~tenantkit.provisioning.MigrationProvisioner`, in order of speed.

This module is the async source; ``_provision_sync`` is generated from it by
``tools/async_to_sync.py`` (never edit that one). Where the two differ, an ``if True:  # ASYNC``
block says so: the async side prepares in a worker thread what needs a sync connection (the
clone script, a template built by Python migrations), and replays SQL migrations only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from ..core.storage import history_ddl
from ..errors import MigrationError, SchemaNotEmpty
from ..migrations._apply import record_sql, search_path_value
from ._paths import (
    EMPTY_CHECK,
    non_transactional_error,
    probe_query,
    record_params,
    rename_message,
    source_history,
)
from .clone import CloneError

if True:  # ASYNC
    import asyncio

if TYPE_CHECKING:
    from ..migrations._loader import MigrationSet
    from ..migrations._tracking import Target
    from .provisioners import Template

__all__ = ["aprovision_schema"]


async def aprovision_schema(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    *,
    target: Target,
    template: Template,
    mset: MigrationSet,
    spares: bool,
    use_template: bool,
) -> str:
    """Leave ``schema`` existing at the migration head on ``conn`` (the caller's transaction);
    return the path taken: ``"spare"``, ``"template"``, ``"migrations"`` or ``"empty"``.

    ``schema`` may exist if it is empty (the caller created it). A spare is claimed by rename,
    else the template is cloned if it is exactly at the head, else the migrations replay.
    """
    cur = await conn.execute(EMPTY_CHECK, (schema, schema))
    row = await cur.fetchone()
    if row is not None and row[0]:
        if row[1]:
            raise SchemaNotEmpty(f"schema {schema!r} already holds objects; cannot provision it")
        # The caller created it empty; the fast paths create (or rename into) it themselves.
        await conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(schema)))
    if not mset.tenant:
        await conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        return "empty"
    head = mset.digest("tenant")
    params = {"head": head, "template": template.name}
    cur = await conn.execute(probe_query(target.shared_schema, spares), params)
    probe = await cur.fetchone()
    assert probe is not None
    spare, template_ok = probe[0], bool(probe[1])
    if spare is not None:
        await conn.execute(rename_message(conn, target.shared_schema, spare, schema))
        return "spare"
    if not template_ok and not all(m.transactional for m in mset.tenant):
        raise non_transactional_error(schema, template.name)
    if True:  # ASYNC
        if use_template and not template_ok and any(m.sql is None for m in mset.tenant):
            # upgrade(conn) functions take a sync connection: build the template with them
            # (on its own connection, in a thread) and clone it.
            await asyncio.to_thread(template.ensure)
            template_ok = True
    if use_template and template_ok:
        try:
            if True:  # ASYNC
                script = await asyncio.to_thread(template.script_standalone, head)
            else:
                script = template.script(conn, head)
            async with conn.transaction():
                await conn.execute(template.clone_message(conn, schema, script, mset))
            return "template"
        except CloneError as exc:
            # e.g. privileges or row-level security: fall back to replaying the migrations,
            # which a non-transactional one cannot do inside the creating transaction.
            if not all(m.transactional for m in mset.tenant):
                raise MigrationError(
                    f"cannot provision {schema!r}: {exc}; and a non-transactional tenant "
                    "migration cannot run inside the transaction that creates a tenant",
                    schema=schema,
                ) from exc
    if True:  # ASYNC
        if any(m.sql is None for m in mset.tenant):
            raise MigrationError(
                f"cannot provision {schema!r} on an async connection by migrations: Python "
                "migrations need a sync connection; enable the template path",
                schema=schema,
            )
    await _aby_migrations(conn, target, mset, schema)
    return "migrations"


async def _aby_migrations(
    conn: psycopg.AsyncConnection[Any],
    target: Target,
    mset: MigrationSet,
    schema: str,
    *,
    kind: str = "tenant",
) -> None:
    """Create ``schema`` and replay every tenant migration in it, in a savepoint (``kind``:
    what its summary row says it is, a tenant or a spare)."""
    shared = target.shared_schema
    async with conn.transaction():
        await conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        cur = await conn.execute("select current_setting('search_path')")
        old = await cur.fetchone()
        path = search_path_value(conn, schema, shared)
        await conn.execute("select set_config('search_path', %s, true)", (path,))
        await conn.execute(history_ddl(schema))
        durs: list[float] = []
        for m in mset.tenant:
            try:
                t = time.perf_counter()
                if True:  # ASYNC
                    assert m.sql is not None
                    if m.sql.strip():
                        await conn.execute(m.sql.encode())
                else:
                    m.run(conn)
                durs.append((time.perf_counter() - t) * 1000)
            except Exception as exc:
                raise MigrationError(
                    f"migration {m.id!r} failed while provisioning {schema!r}: {exc}",
                    schema=schema,
                    migration=m.id,
                ) from exc
        await conn.execute(record_sql(schema, shared), record_params(schema, mset, durs, kind))
        hook = source_history(mset, schema)
        if hook is not None:
            await conn.execute(hook.as_string(conn).encode())
        if old is not None:
            # Give the caller its search_path back (set_config(..., true) lasts until the end
            # of the whole transaction, not just this savepoint).
            await conn.execute("select set_config('search_path', %s, true)", (old[0],))
