"""Fast tenant creation: a template schema kept at the migration head, and warm spares.

:class:`MigrationProvisioner` is what ``Tenancy.create_tenant`` calls inside the creating
transaction. It takes the fastest valid path:

1. claim a spare schema (already at the head) by renaming it: a few milliseconds;
2. else clone the template, if it is exactly at the head, by replaying its DDL script
   (generated in Python from the catalog once per process, see :mod:`tenantkit.provisioning.clone`);
3. else apply the tenant migrations one by one.

A template or spare that is behind the migration files is never used. ``migrate()`` brings the
template and the spares to the head along with the tenants, so they stay usable.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from ..core.storage import (
    HISTORY_TABLE,
    MIGRATION_STATE_TABLE,
    SPARE_PREFIX,
    tables,
)
from ..errors import MigrationError, SchemaNotFound
from ..migrations._apply import apply_schema
from ..migrations._loader import MigrationSet, load_migrations
from ..migrations._tracking import (
    Target,
    ensure_shared_tables,
    resolve,
    template_schema_name,
)
from ._paths import (
    probe_query,
    rename_message,
    source_history,
)
from ._provision_async import aprovision_schema
from ._provision_sync import _by_migrations as by_migrations
from ._provision_sync import provision_schema
from .clone import CloneError, CloneScript, clone_schema, clone_script

__all__ = ["SPARE_PREFIX", "CloneProvisioner", "MigrationProvisioner", "Spares", "Template"]


# One clone script per (database, template, migration head): built from the catalog on first
# use in a process, then replayed.
_scripts: dict[tuple[str, str, str], CloneScript] = {}
#: Templates a clone cannot reproduce (CloneError), by the same key: built by migrations.
_unclonable: dict[tuple[str, str, str], CloneError] = {}
_scripts_lock = threading.Lock()
# Databases whose bookkeeping tables this process has already ensured.
_ready: set[tuple[str, str]] = set()


def _ensure_ready(target: Target) -> None:
    key = (target.conninfo, target.shared_schema)
    if key not in _ready:
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            ensure_shared_tables(conn, target.shared_schema)
        _ready.add(key)


class Template:
    """The template schema: a tenant schema nobody owns, kept at the tenant-migration head.

    Its name is derived from the shared schema (``tenantkit.migrations.template_schema_name``).
    """

    def __init__(self, tenancy: Any) -> None:
        self.target = resolve(tenancy)
        self.name = template_schema_name(self.target.shared_schema)

    def migrations(self) -> MigrationSet:
        """The migration files as they are now on disk."""
        return load_migrations(self.target.migrations_dir)

    def is_current(self, conn: psycopg.Connection[Any], head: str | None = None) -> bool:
        """True when the template exists and its recorded history equals the head."""
        head = head or self.migrations().digest("tenant")
        row = conn.execute(
            sql.SQL(
                "select digest from {state} where schema = %s "
                "and exists (select from pg_namespace where nspname = %s)"
            ).format(**tables(self.target.shared_schema)),
            (self.name, self.name),
        ).fetchone()
        return row is not None and row[0] == head

    def ensure(self) -> str:
        """Create the template or bring it to the head (by migrations); return its name."""
        _ensure_ready(self.target)
        mset = self.migrations()
        with psycopg.connect(self.target.conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create schema if not exists {}").format(sql.Identifier(self.name))
            )
            result = apply_schema(
                conn,
                schema=self.name,
                kind="template",
                shared=self.target.shared_schema,
                migrations=mset.tenant,
            )
        if result.status == "failed":
            raise MigrationError(
                f"building the template schema {self.name!r} failed: {result.error}",
                schema=self.name,
                migration=result.migration,
            )
        return self.name

    def script(self, conn: psycopg.Connection[Any], head: str) -> CloneScript:
        """The template's clone script for migration head ``head`` (cached per process)."""
        key = (self.target.conninfo, self.name, head)
        script = _scripts.get(key)
        if script is None:
            refused = _unclonable.get(key)
            if refused is not None:  # asked once per head: the catalog says the same
                raise refused
            try:
                # The template's rows are its migrations' seed data: a clone copies them
                # (its history rows are written by clone_message itself).
                script = clone_script(conn, self.name, rows="present", skip_rows=(HISTORY_TABLE,))
            except CloneError as exc:
                with _scripts_lock:
                    _unclonable[key] = exc
                raise
            with _scripts_lock:
                _scripts[key] = script
        return script

    def script_standalone(self, head: str) -> CloneScript:
        """Like :meth:`script`, reading the catalog on a connection of its own when needed
        (for async callers, from a worker thread)."""
        script = _scripts.get((self.target.conninfo, self.name, head))
        if script is not None:
            return script
        with psycopg.connect(self.target.conninfo, autocommit=True) as conn:
            return self.script(conn, head)

    def clone_message(
        self, ctx: Any, schema: str, script: CloneScript, mset: MigrationSet | None = None
    ) -> bytes:
        """One message creating ``schema`` as a copy of the template, its history rows and
        summary row included, and the migration source's own history (its ``after_schema``
        SQL: ``alembic_version``, ``django_migrations``), since a clone copies no rows
        (``ctx``: a sync or async connection, for quoting; ``mset``: the migrations at the
        head, loaded again when not given)."""
        tail = sql.SQL(
            "insert into {dst} select * from {src};\n"
            "insert into {state} "
            "(schema, kind, applied, checksums, digest) "
            "select {name}, {kind}, applied, checksums, digest "
            "from {state} where schema = {tpl} "
            "on conflict (schema) do update set kind = excluded.kind, applied = excluded.applied, "
            "checksums = excluded.checksums, digest = excluded.digest, updated_at = now()"
        ).format(
            dst=sql.Identifier(schema, HISTORY_TABLE),
            src=sql.Identifier(self.name, HISTORY_TABLE),
            state=tables(self.target.shared_schema)["state"],
            name=sql.Literal(schema),
            kind=sql.Literal("spare" if schema.startswith(SPARE_PREFIX) else "tenant"),
            tpl=sql.Literal(self.name),
        )
        create = sql.SQL("create schema {}").format(sql.Identifier(schema)).as_string(ctx)
        body = script.render(ctx, schema) if script.statements else b""
        parts = [create.encode(), body, tail.as_string(ctx).encode()]
        hook = source_history(mset if mset is not None else self.migrations(), schema)
        if hook is not None:
            parts.append(hook.as_string(ctx).encode())
        return b";\n".join(parts)

    def clone_into(
        self,
        conn: psycopg.Connection[Any],
        schema: str,
        head: str,
        mset: MigrationSet | None = None,
    ) -> None:
        """Create ``schema`` as a copy of the (current) template on ``conn``, in one message
        (inside the caller's transaction)."""
        conn.execute(self.clone_message(conn, schema, self.script(conn, head), mset))

    def drop(self) -> None:
        """Drop the template schema and its summary row."""
        with psycopg.connect(self.target.conninfo, autocommit=True) as conn, conn.transaction():
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(self.name))
            )
            conn.execute(
                sql.SQL("delete from {state} where schema = %s").format(
                    **tables(self.target.shared_schema)
                ),
                (self.name,),
            )


class Spares:
    """A pool of spare schemas at the migration head, claimed by rename when a tenant is made.

    ``fill(n)`` clones the template ``n`` times (building it first when needed); a claim takes
    one spare row with ``FOR UPDATE SKIP LOCKED``, so concurrent creators never get the same
    spare, and renames the schema inside the creating transaction.
    """

    def __init__(self, tenancy: Any) -> None:
        self.tenancy = tenancy
        self.target = resolve(tenancy)
        self.template = Template(tenancy)

    def _table(self) -> sql.Composable:
        return tables(self.target.shared_schema)["spares"]

    def count(self) -> int:
        """Number of spares at the current migration head (claimable now)."""
        _ensure_ready(self.target)
        head = self.template.migrations().digest("tenant")
        with psycopg.connect(self.target.conninfo, autocommit=True) as conn:
            row = conn.execute(
                sql.SQL(
                    "select count(*) from {spares} sp join {state} st "
                    "on st.schema = sp.schema where st.digest = %s"
                ).format(**tables(self.target.shared_schema)),
                (head,),
            ).fetchone()
        return int(row[0]) if row else 0

    def fill(
        self,
        n: int,
        *,
        on_built: Callable[[psycopg.Connection[Any], str], object] | None = None,
    ) -> int:
        """Make sure ``n`` spares at the head exist; return how many were created.

        ``on_built(conn, name)`` is called for each new spare inside the transaction that
        builds it, before any other session can claim it (an error rolls that spare back and
        propagates): where to record what a pristine spare looks like.
        """
        missing = n - self.count()
        if missing <= 0:
            return 0
        self.template.ensure()
        mset = self.template.migrations()
        head = mset.digest("tenant")
        with psycopg.connect(self.target.conninfo, autocommit=True) as conn:
            try:
                self.template.script(conn, head)
                clonable = True
            except CloneError:
                # A copy would differ from the template (grants, row-level security...):
                # each spare runs the migrations itself, still ahead of any tenant's creation.
                clonable = False
            for _ in range(missing):
                name = SPARE_PREFIX + secrets.token_hex(8)
                with conn.transaction():
                    if clonable:
                        self.template.clone_into(conn, name, head, mset)
                    else:
                        by_migrations(conn, self.target, mset, name, kind="spare")
                    conn.execute(
                        sql.SQL("insert into {} (schema) values (%s)").format(self._table()),
                        (name,),
                    )
                    if on_built is not None:
                        on_built(conn, name)
        return missing

    def names(
        self, conn: psycopg.Connection[Any] | None = None, *, hold: bool = False
    ) -> list[str]:
        """The schemas in the pool, at the head or not (on ``conn`` when given).

        With ``hold`` (which needs ``conn``, in a transaction), their rows are locked
        ``FOR SHARE`` until that transaction ends, so none of them is claimed meanwhile;
        spares being claimed at that moment are left out.
        """
        query = sql.SQL("select schema from {} order by created_at{}").format(
            self._table(), sql.SQL(" for share skip locked" if hold else "")
        )
        if hold and conn is None:
            raise ValueError("hold=True needs the caller's connection, in a transaction")
        if conn is not None:
            return [str(r[0]) for r in conn.execute(query).fetchall()]
        _ensure_ready(self.target)
        with psycopg.connect(self.target.conninfo, autocommit=True) as own:
            return [str(r[0]) for r in own.execute(query).fetchall()]

    def adopt(self, schema: str, conn: psycopg.Connection[Any] | None = None) -> str:
        """Turn an existing migrated schema into a spare; return its new (spare) name.

        For a schema with tenantkit migration state and no tenant, typically one
        ``Tenancy.retire_tenant()`` left after its rows were deleted: it is renamed to
        ``SPARE_PREFIX`` + random hex, its migration state follows, and it joins the pool, so
        the next tenant claims it without cloning the template. A spare behind the migration
        head is never claimed (``migrate()`` brings it up). The caller vouches for what is
        inside (rows are not deleted here). Given ``conn``, it runs in the caller's
        transaction (which must roll back on an error); else in a transaction of its own.
        ``SchemaNotFound`` when ``schema`` does not exist, ``MigrationError`` when it has no
        migration state.
        """
        if conn is None:
            _ensure_ready(self.target)
            with (
                psycopg.connect(self.target.conninfo, autocommit=True) as own,
                own.transaction(),
            ):
                return self.adopt(schema, own)
        spare = SPARE_PREFIX + secrets.token_hex(8)
        message = sql.SQL(
            "alter schema {old} rename to {new};\n"
            "with moved as (update {state} set schema = {new_lit},"
            " kind = 'spare', updated_at = now() where schema = {old_lit} returning schema)"
            " insert into {spares} (schema) select schema from moved returning schema"
        ).format(
            old=sql.Identifier(schema),
            new=sql.Identifier(spare),
            new_lit=sql.Literal(spare),
            old_lit=sql.Literal(schema),
            **tables(self.target.shared_schema),
        )
        try:
            cur = conn.execute(message)  # one round trip
        except psycopg.errors.InvalidSchemaName as exc:
            raise SchemaNotFound(
                f"schema {schema!r} does not exist; adopt() takes an existing schema"
            ) from exc
        cur.nextset()
        if cur.fetchone() is None:
            raise MigrationError(
                f"schema {schema!r} has no tenantkit migration state, so it is not known "
                "to be at the migration head; only a migrated schema can become a spare",
                schema=schema,
            )
        return spare

    def claim(self, conn: psycopg.Connection[Any], schema: str, head: str | None = None) -> bool:
        """Rename a spare at the head to ``schema`` on ``conn`` (the caller's transaction).

        Returns False, changing nothing, when no spare is available. ``schema`` must not exist.
        """
        head = head or self.template.migrations().digest("tenant")
        spare = _claim_row(conn, self.target.shared_schema, head)
        if spare is None:
            return False
        _rename_spare(conn, self.target.shared_schema, spare, schema)
        return True

    def clear(self) -> int:
        """Drop every spare; return how many."""
        _ensure_ready(self.target)
        with psycopg.connect(self.target.conninfo, autocommit=True) as conn, conn.transaction():
            rows = conn.execute(
                sql.SQL("delete from {} returning schema").format(self._table())
            ).fetchall()
            for (name,) in rows:
                conn.execute(
                    sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name))
                )
            conn.execute(
                sql.SQL("delete from {state} where schema = any(%s)").format(
                    **tables(self.target.shared_schema)
                ),
                ([r[0] for r in rows],),
            )
        return len(rows)


def _probe(
    conn: psycopg.Connection[Any], shared: str, head: str, spares: bool
) -> tuple[str | None, bool]:
    params = {"head": head, "template": template_schema_name(shared)}
    row = conn.execute(probe_query(shared, spares), params).fetchone()
    assert row is not None
    return row[0], bool(row[1])


def _claim_row(conn: psycopg.Connection[Any], shared: str, head: str) -> str | None:
    return _probe(conn, shared, head, True)[0]


def _rename_spare(conn: psycopg.Connection[Any], shared: str, spare: str, schema: str) -> None:
    conn.execute(rename_message(conn, shared, spare, schema))


class MigrationProvisioner:
    """Creates a tenant schema at the migration head inside the creating transaction.

    ``spares`` and ``template`` switch the fast paths off (for comparison); when both are off,
    or not valid, the tenant migrations are applied one by one. The last path taken is in
    :attr:`last_path` (``"spare"``, ``"template"``, ``"migrations"`` or ``"empty"``).
    """

    def __init__(self, tenancy: Any, *, spares: bool = True, template: bool = True) -> None:
        self.tenancy = tenancy
        self.use_spares = spares
        self.use_template = template
        self.last_path: str | None = None

    def provision(self, conn: Any, schema: str) -> Any:
        """Leave ``schema`` existing and fully migrated; runs on the caller's transaction.

        ``schema`` may already exist if it is empty (the caller created it). Given a
        ``psycopg.AsyncConnection`` (``AsyncTenancy``), returns the :meth:`aprovision`
        coroutine for the caller to await.
        """
        if isinstance(conn, psycopg.AsyncConnection):
            return self.aprovision(conn, schema)
        self._provision(conn, schema)
        return None

    def _inputs(self) -> tuple[Target, dict[str, Any]]:
        """Where to provision and the arguments of ``provision_schema`` / its async twin."""
        target = resolve(self.tenancy)
        return target, {
            "target": target,
            "template": Template(self.tenancy),
            "mset": load_migrations(target.migrations_dir),
            "spares": self.use_spares,
            "use_template": self.use_template,
        }

    def _provision(self, conn: psycopg.Connection[Any], schema: str) -> None:
        target, inputs = self._inputs()
        _ensure_ready(target)
        self.last_path = provision_schema(conn, schema, **inputs)

    async def aprovision(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        """The async twin of :meth:`provision`.

        The same paths; blocking preparation (the bookkeeping tables, the clone script, and
        building the template when Python migrations need it) runs in a worker thread.
        """
        target, inputs = self._inputs()
        await asyncio.to_thread(_ensure_ready, target)
        self.last_path = await aprovision_schema(conn, schema, **inputs)


class CloneProvisioner:
    """Provisions a new tenant as a copy of tenant schema ``source`` (used by
    ``Tenancy.clone_tenant``).

    The structure is rebuilt from the catalog (:func:`tenantkit.provisioning.clone.clone_schema`);
    ``data`` copies the rows too. The copy starts at the source's migration history, so
    ``migrate()`` later treats it exactly like its source: the history rows in the schema and the
    summary row in the shared schema are copied along, in the creating transaction.
    """

    def __init__(self, shared_schema: str, source: str, *, data: bool = False) -> None:
        self.shared_schema = shared_schema
        self.source = source
        self.data = data

    def provision(self, conn: psycopg.Connection[Any], schema: str) -> None:
        """Create ``schema`` as a copy of the source on ``conn`` (inside the caller's
        transaction)."""
        clone_schema(conn, self.source, schema, data=self.data)
        row = conn.execute(
            "select to_regclass(format('%%I.%%I', %s::text, %s::text)), "
            "to_regclass(format('%%I.%%I', %s::text, %s::text))",
            (self.source, HISTORY_TABLE, self.shared_schema, MIGRATION_STATE_TABLE),
        ).fetchone()
        history, summary = row if row is not None else (None, None)
        if history is not None and not self.data:  # with data the rows came along already
            conn.execute(
                sql.SQL("insert into {} select * from {}").format(
                    sql.Identifier(schema, HISTORY_TABLE),
                    sql.Identifier(self.source, HISTORY_TABLE),
                )
            )
        if summary is not None:
            conn.execute(
                sql.SQL(
                    "insert into {state} (schema, kind, applied, checksums, digest) "
                    "select %s, kind, applied, checksums, digest from {state} where schema = %s"
                ).format(**tables(self.shared_schema)),
                (schema, self.source),
            )
