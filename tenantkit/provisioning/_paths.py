"""The pure parts of provisioning a tenant schema: the SQL of each path and the values it
needs (no I/O). Shared by :mod:`._provision_async`, its generated sync twin and
:mod:`.provisioners`."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from ..core.storage import tables
from ..errors import MigrationError
from ..migrations._apply import state_digest
from ..migrations._loader import MigrationSet

__all__ = [
    "EMPTY_CHECK",
    "non_transactional_error",
    "probe_query",
    "record_params",
    "rename_message",
    "source_history",
]

_CLAIM = """
with pick as (
    select sp.schema from {spares} sp
    join {state} st on st.schema = sp.schema
    where st.digest = %(head)s
    order by sp.created_at limit 1
    for update of sp skip locked
), claimed as (
    delete from {spares} s using pick where s.schema = pick.schema returning s.schema
)
select (select schema from claimed),
       (select digest = %(head)s from {state} where schema = %(template)s)
"""


def probe_query(shared: str, spares: bool) -> sql.Composed:
    """Claim a spare (when ``spares``) and tell whether the template is current: one query."""
    if spares:
        return sql.SQL(_CLAIM).format(**tables(shared))
    return sql.SQL(
        "select null::text, (select digest = %(head)s from {state} where schema = %(template)s)"
    ).format(**tables(shared))


def rename_message(ctx: Any, shared: str, spare: str, schema: str) -> bytes:
    return (
        sql.SQL(
            "alter schema {old} rename to {new};\n"
            "update {state} set schema = {new_lit}, kind = 'tenant', "
            "updated_at = now() where schema = {old_lit}"
        )
        .format(
            old=sql.Identifier(spare),
            new=sql.Identifier(schema),
            state=tables(shared)["state"],
            new_lit=sql.Literal(schema),
            old_lit=sql.Literal(spare),
        )
        .as_string(ctx)
        .encode()
    )


EMPTY_CHECK = (
    "select exists (select from pg_namespace where nspname = %s), "
    "exists (select from pg_class c join pg_namespace n on n.oid = c.relnamespace "
    "where n.nspname = %s)"
)


def non_transactional_error(schema: str, template: str) -> MigrationError:
    # A non-transactional migration cannot run inside the creating transaction, and building
    # the template from here would wait for this very transaction (CREATE INDEX CONCURRENTLY
    # waits for older snapshots): migrate() keeps the template current instead.
    return MigrationError(
        f"cannot provision {schema!r}: the tenant migrations include non-transactional ones "
        f"and the template {template!r} is not at the head; run tenancy.migrate() (which "
        "maintains the template) before creating tenants",
        schema=schema,
    )


def source_history(mset: MigrationSet, schema: str) -> sql.Composable | None:
    """The migration source's ``after_schema`` SQL for a new tenant ``schema`` that has every
    tenant migration (None for tenantkit's own files, which keep no other history)."""
    ids = [m.id for m in mset.tenant]
    return mset.after_sql("tenant", schema, ids, ids)


def record_params(
    schema: str, mset: MigrationSet, durs: list[float], kind: str = "tenant"
) -> dict[str, Any]:
    """Parameters of :func:`record_sql` for a schema created with every tenant migration."""
    ids = [m.id for m in mset.tenant]
    return {
        "ids": ids,
        "sums": [m.checksum for m in mset.tenant],
        "durs": durs,
        "schema": schema,
        "kind": kind,
        "all_ids": ids,
        "all_sums": [m.checksum for m in mset.tenant],
        "digest": state_digest(ids, mset.tenant),
    }
