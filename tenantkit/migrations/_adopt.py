"""Adopting schemas another tool migrated: its history recorded in tenantkit's books.

A project switching over (Alembic's cookbook recipe, django-tenants) has schemas at some
revision of the other tool and no tenantkit history. The migration sources know how to read
the other tool's table; the mechanism around it, the same for every source, lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql

from ..core.storage import HISTORY_TABLE
from ._apply import record_applied
from ._executors import connect
from ._loader import Migration
from ._tracking import LOCK_NAMESPACE, ensure_tracking_table, schema_lock_key

#: ``applied(conn, schema, migrations)``: the IDs of ``migrations`` the other tool applied in
#: ``schema``, read from its own table (empty: nothing to adopt, e.g. no such table).
AppliedReader = Callable[[psycopg.Connection[Any], str, Sequence[Migration]], Sequence[str]]


def adopt_schemas(
    conninfo: str,
    shared: str,
    entries: Iterable[Any],
    migrations_of: Callable[[Literal["shared", "tenant"]], Sequence[Migration]],
    applied: AppliedReader,
) -> dict[str, list[str]]:
    """Record what another tool applied, in the schemas of ``entries`` (plan entries) that
    have every migration pending, without running anything. Returns schema -> the IDs.

    Each schema takes one transaction under its migration lock. A schema whose tenantkit
    history has rows by then (another migrator got there first) is left alone; so is one
    where ``applied`` finds nothing. ``migrations_of("shared" | "tenant")`` gives the
    migrations of that kind of schema, in order; the IDs are recorded in that order.
    """
    adopted: dict[str, list[str]] = {}
    todo = []
    for entry in entries:
        migrations = migrations_of("shared" if entry.kind == "shared" else "tenant")
        if migrations and len(entry.pending) == len(migrations):
            todo.append((entry, migrations))
    if not todo:
        return adopted
    with connect(conninfo) as conn:
        for entry, migrations in todo:
            with conn.transaction():
                conn.execute(
                    "select pg_advisory_xact_lock(%s, %s)",
                    (LOCK_NAMESPACE, schema_lock_key(entry.schema)),
                )
                if _has_history(conn, entry.schema):
                    continue  # tenantkit's own history: not ours to rewrite
                done = set(applied(conn, entry.schema, migrations))
                ids = [m.id for m in migrations if m.id in done]
                if not ids:
                    continue
                ensure_tracking_table(conn, entry.schema)
                record_applied(conn, entry.schema, entry.kind, shared, migrations, ids)
                adopted[entry.schema] = ids
    return adopted


def _has_history(conn: psycopg.Connection[Any], schema: str) -> bool:
    history = sql.Identifier(schema, HISTORY_TABLE)
    row = conn.execute("select to_regclass(%s) is not null", (history.as_string(conn),)).fetchone()
    if row is None or not row[0]:
        return False
    has = conn.execute(sql.SQL("select exists (select from {})").format(history)).fetchone()
    return has is not None and bool(has[0])
