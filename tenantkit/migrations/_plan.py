"""Planning: which schema is behind, and by what, in one query on the central summary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from ..core.names import validate_schema_name
from ..core.storage import tables
from ..errors import RegistryNotInstalled
from ._apply import check_checksums
from ._loader import MigrationSet
from ._report import Plan, SchemaKind, SchemaPlan
from ._source import TenantSchemas
from ._tracking import Target, ensure_shared_tables, template_schema_name

__all__ = ["build_plan", "normalize_schemas"]


def normalize_schemas(schemas: Iterable[str] | str | None, shared: str) -> list[str] | None:
    """Validate an optional schema filter (a single name is accepted too)."""
    if schemas is None:
        return None
    if isinstance(schemas, str):
        schemas = [schemas]
    return [validate_schema_name(s, shared_schema=shared) for s in schemas]


def _query(
    shared: str, *, registry: bool, tenant_schemas: TenantSchemas | None = None
) -> sql.Composed:
    if tenant_schemas is not None:
        # The integration's own tenant table (Django's TENANT_MODEL...), inside the same query.
        tenants: sql.Composable = sql.SQL(
            "select t.schema::text, 'tenant', 1 from ({}) as t(schema) "
            "where %(tenants)s and t.schema <> %(shared)s "
            "and (%(only)s::text[] is null or t.schema = any(%(only)s::text[]))"
        ).format(tenant_schemas.select(shared))
    elif registry:
        tenants = sql.SQL(
            "select t.schema, 'tenant', 1 from {tenants} t "
            "where %(tenants)s and t.state <> 'dropping' and t.schema <> %(shared)s "
            "and (%(only)s::text[] is null or t.schema = any(%(only)s::text[]))"
        ).format(**tables(shared))
    else:
        tenants = sql.SQL("select null::text, null, 1 where false")
    return sql.SQL(
        """
        with targets(schema, kind, ord) as (
            select %(shared)s::text, 'shared', 0 where %(want_shared)s
            union all {tenants}
            union all
            select s.schema, 'spare', 2 from {spares} s
            where %(tenants)s and %(only)s::text[] is null
            union all
            select %(template)s::text, 'template', 3 where %(tenants)s and %(only)s::text[] is null
        )
        select t.schema, t.kind,
               m.digest is not distinct from
                   case t.kind when 'shared' then %(shared_head)s else %(tenant_head)s end,
               m.applied, m.checksums, m.schema is not null
        from targets t
        join pg_namespace n on n.nspname = t.schema
        left join {state} m on m.schema = t.schema
        order by t.ord, t.schema
        """
    ).format(tenants=tenants, spares=tables(shared)["spares"], state=tables(shared)["state"])


def build_plan(
    conn: psycopg.Connection[Any],
    target: Target,
    mset: MigrationSet,
    *,
    shared: bool = True,
    tenants: bool = True,
    schemas: Sequence[str] | None = None,
) -> Plan:
    """Plan on ``conn`` (autocommit). Raises ``MigrationChecksumMismatch`` naming the file."""
    shared_head = mset.digest("shared")
    tenant_head = mset.digest("tenant")
    params = {
        "shared": target.shared_schema,
        "want_shared": shared,
        "tenants": tenants,
        "only": schemas,
        "template": template_schema_name(target.shared_schema),
        "shared_head": shared_head,
        "tenant_head": tenant_head,
    }
    try:
        rows = conn.execute(
            _query(target.shared_schema, registry=True, tenant_schemas=target.tenant_schemas),
            params,
        ).fetchall()
    except pg_errors.UndefinedTable:
        # First run against this database: create tenantkit's bookkeeping tables and try again
        # (only the first run pays for this).
        ensure_shared_tables(conn, target.shared_schema)
        registry = conn.execute(
            "select to_regclass(%s) is not null",
            (tables(target.shared_schema)["tenants"].as_string(conn),),
        ).fetchone()
        has_registry = bool(registry and registry[0])
        if not has_registry and tenants and target.tenant_schemas is None:
            raise RegistryNotInstalled(
                f"no tenant registry in schema {target.shared_schema!r}: call "
                "Tenancy.install() (or `tenantkit migrate --shared`) first"
            ) from None
        rows = conn.execute(
            _query(
                target.shared_schema,
                registry=has_registry,
                tenant_schemas=target.tenant_schemas,
            ),
            params,
        ).fetchall()
    entries: list[SchemaPlan] = []
    for schema, kind, current, applied, checksums, _known in rows:
        kind_t: SchemaKind = kind
        migrations = mset.of("shared" if kind == "shared" else "tenant")
        if current:
            entries.append(SchemaPlan(schema, kind_t, ()))
            continue
        done = list(zip(applied or [], checksums or [], strict=True))
        check_checksums(schema, done, migrations)
        ids = {mid for mid, _ in done}
        entries.append(
            SchemaPlan(schema, kind_t, tuple(m.id for m in migrations if m.id not in ids))
        )
    if shared and not any(e.kind == "shared" for e in entries):
        # The shared schema does not exist yet: everything shared is pending.
        entries.insert(
            0, SchemaPlan(target.shared_schema, "shared", tuple(m.id for m in mset.shared))
        )
    return Plan(tuple(entries), shared_head, tenant_head)
