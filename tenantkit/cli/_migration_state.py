"""What the shared migration summary says about schemas, for the commands that show it.

``tenantkit_migration_state`` (kept by :mod:`tenantkit.migrations` in the shared schema) holds
one row per migrated schema with the migrations applied to it. Two questions the CLI asks of
it, each in one query whatever the number of tenants: what is applied where, and which applied
migrations the migrations directory no longer holds (the code is older than the database).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ..core.storage import MIGRATION_STATE_TABLE as STATE_TABLE

__all__ = ["STATE_TABLE", "applied_migrations", "unknown_migrations"]


def _has_state(conn: psycopg.Connection[Any], shared_schema: str) -> bool:
    row = conn.execute(
        "select to_regclass(format('%%I.%%I', %s::text, %s::text))", (shared_schema, STATE_TABLE)
    ).fetchone()
    return row is not None and row[0] is not None


def applied_migrations(
    conn: psycopg.Connection[Any], shared_schema: str, schemas: Sequence[str]
) -> dict[str, list[str]]:
    """Schema -> the migrations applied to it, in order; empty when migrations never ran."""
    if not _has_state(conn, shared_schema):
        return {}
    rows = conn.execute(
        sql.SQL("select schema, coalesce(applied, '{{}}') from {} where schema = any(%s)").format(
            sql.Identifier(shared_schema, STATE_TABLE)
        ),
        (list(schemas),),
    ).fetchall()
    return {r[0]: list(r[1]) for r in rows}


def unknown_migrations(
    conn: psycopg.Connection[Any],
    shared_schema: str,
    migrations_dir: str,
    schemas: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Schema -> the migrations applied to it that ``migrations_dir`` does not hold (shared
    ones for the shared schema, tenant ones for the others), for the schemas that have any;
    every migrated schema, or only ``schemas``. Planning compares digests over the files that
    exist, so such a schema looks up to date there; this says it is ahead of the code."""
    from ..migrations import load_migrations

    if not _has_state(conn, shared_schema):
        return {}
    found = load_migrations(migrations_dir)
    known = {"shared": {m.id for m in found.shared}, "tenant": {m.id for m in found.tenant}}
    # Filtered on the server: only schemas holding an unknown id come back. The schema list
    # is joined (a hashed subplan), not compared with `= any()` row by row (10,000 x 10,000).
    rows = conn.execute(
        sql.SQL(
            "select schema, unknown from (select t.schema, "
            "(select coalesce(array_agg(a), '{{}}') from unnest(coalesce(t.applied, '{{}}')) a "
            "where not a = any(case when t.kind = 'shared' then %(shared)s::text[] "
            "else %(tenant)s::text[] end)) as unknown "
            "from {} t where %(only)s::text[] is null "
            "or t.schema in (select unnest(%(only)s::text[]))) found "
            "where cardinality(unknown) > 0 order by schema"
        ).format(sql.Identifier(shared_schema, STATE_TABLE)),
        {
            "only": None if schemas is None else list(schemas),
            "shared": sorted(known["shared"]),
            "tenant": sorted(known["tenant"]),
        },
    ).fetchall()
    return {schema: list(unknown) for schema, unknown in rows}
