"""Django migrations as a tenantkit migration source: ``migrate_schemas`` on tenantkit's engine.

:class:`DjangoMigrationSource` turns the project's migration graph into the engine's two lists
(``shared`` for the public schema, ``tenant`` for tenant schemas, spares and the template).
Every node of the graph, in the order Django's ``migrate`` applies them, is one engine
migration with the ID ``"<app_label>.<name>"``, in both lists: Django records every migration
of every installed app in every schema's ``django_migrations`` (the router only skips the
operations of apps that do not belong there), and so does this source.

Which path a migration takes (the rule)
---------------------------------------
The SQL of each migration is collected once per process with Django's own schema editor in
``collect_sql`` mode (what ``sqlmigrate`` does), separately for the public schema and for a
tenant schema (the router decides per schema which operations run). It is then replayed in
every schema with the engine's ``search_path`` (``"<schema>", "<public>", pg_temp``), in the
schema's one transaction, with no schema name in it. A migration is replayed as SQL when
rendering it needed nothing but the migration itself:

* every operation reduces to SQL (``RunPython`` does not, nor anything nested in
  ``SeparateDatabaseAndState`` that does not) — unless the router skips it in that kind of
  schema, in which case it does nothing there and does not count;
* the schema editor did not read the database while rendering (no introspection of existing
  constraints or sequences, which ``AlterField`` and friends do for some changes, no cursor at
  all): a rendering attempt that asks for a cursor is stopped and the migration is marked;
* ``atomic = False`` migrations are replayed statement by statement outside a transaction
  (``CREATE INDEX CONCURRENTLY`` cannot share a message with others).

Every other migration gets a ``runner``: Django's ``Migration.apply`` with a schema editor on
a Django connection bound to the engine's own connection, inside the schema's transaction
(savepoints for Django's atomic blocks), with the schema current so the router, ``RunPython``
code and ``connections[alias]`` in that thread all see the schema being migrated. Multi-type
tenants (``HAS_MULTI_TYPE_TENANTS``) always take the runner path in tenant schemas, since the
router's answer depends on each tenant's type.

``after_schema`` writes the ``django_migrations`` rows (creating the table with Django's own
DDL when missing) in the same transaction, so ``showmigrations`` and Django's ``migrate``
keep working. Checksums are derived from the migration's name: Django identifies an applied
migration by name only, and reformatting an applied migration file must not block
``migrate_schemas``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connections, router
from django.db.backends.postgresql import base as pg_base
from django.db.backends.postgresql.introspection import DatabaseIntrospection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.special import SeparateDatabaseAndState
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ProjectState
from psycopg import sql

from tenantkit.core.storage import HISTORY_TABLE, MIGRATION_STATE_TABLE
from tenantkit.migrations import Migration, MigrationSet

from . import _state
from .conf import database_conninfo, tenant_settings

__all__ = ["DjangoMigrationSource", "DjangoTenantTable", "EngineTarget", "engine_target"]

_TABLE = MigrationRecorder.Migration._meta.db_table


class _NeedsDatabase(Exception):
    """Raised when rendering a migration's SQL asked for a cursor: it needs the database."""


@dataclass(frozen=True)
class DjangoTenantTable:
    """The tenant schemas: ``TENANT_MODEL``'s table in the public schema (one SELECT)."""

    table: str
    column: str = "schema_name"

    def select(self, shared: str) -> sql.Composable:
        """``SELECT <schema_name> FROM "<public>"."<tenant table>"``."""
        return sql.SQL("select {}::text from {}").format(
            sql.Identifier(self.column), sql.Identifier(shared, self.table)
        )


@dataclass(frozen=True)
class _NoTenants:
    """No tenant schemas (the tenant table does not exist yet)."""

    def select(self, shared: str) -> sql.Composable:
        """An empty ``SELECT``."""
        return sql.SQL("select null::text where false")


def tenant_table_exists(database: str) -> bool:
    """Whether ``TENANT_MODEL``'s table exists in the public schema."""
    from .utils import _execute, get_tenant_model

    table = sql.Identifier(tenant_settings().public_schema_name, get_tenant_model()._meta.db_table)
    rows = _execute(
        database, sql.SQL("SELECT to_regclass(%s) IS NOT NULL"), [table.as_string(None)]
    )
    return bool(rows and rows[0][0])


@dataclass(frozen=True)
class EngineTarget:
    """What the engine reads from a ``Tenancy``: conninfo, shared schema, migration source."""

    conninfo: str
    shared_schema: str
    migration_source: DjangoMigrationSource


def conninfo_for(database: str) -> str:
    """A libpq conninfo for ``database`` (``TENANTKIT_MIGRATE_CONNINFO`` wins when set)."""
    return database_conninfo(database, override="TENANTKIT_MIGRATE_CONNINFO")


def engine_target(
    database: str | None = None,
    *,
    fake: bool = False,
    has_tenant_table: bool = True,
    collect: frozenset[tuple[str, str]] | None = None,
) -> EngineTarget:
    """The duck-typed tenancy :func:`tenantkit.migrations.migrate` takes for this project.

    ``collect`` limits SQL rendering to those ``(kind, id)`` pairs (see
    :attr:`DjangoMigrationSource.collect`); None renders every migration.
    """
    database = database or tenant_settings().db_alias
    return EngineTarget(
        conninfo_for(database),
        tenant_settings().public_schema_name,
        DjangoMigrationSource(
            database, fake=fake, has_tenant_table=has_tenant_table, collect=collect
        ),
    )


def pending_pairs(entries: Sequence[Any]) -> frozenset[tuple[str, str]]:
    """The ``(kind, id)`` pairs pending in plan entries: what ``collect`` needs to render."""
    return frozenset((_kind(e.kind), mid) for e in entries for mid in e.pending)


# -- the source ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    """What one process collected: the engine's set and what the runners and hook need."""

    mset: MigrationSet
    nodes: dict[str, tuple[str, str]]
    #: ``django_migrations`` rows recorded for each ID (a squash records what it replaces).
    records: dict[str, tuple[tuple[str, str], ...]]
    create_table: str
    loader: Any = field(repr=False)
    #: ``after_schema``'s rendered app and name lists, by the IDs it records.
    hook_values: dict[tuple[str, ...], tuple[sql.Composable, sql.Composable]] = field(
        default_factory=dict, repr=False
    )


_cache: dict[tuple[Any, ...], _Loaded] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget collected migrations (migration files or settings changed in this process)."""
    with _cache_lock:
        _cache.clear()
        _loaders.clear()


@dataclass(frozen=True)
class DjangoMigrationSource:
    """The project's Django migrations for tenantkit's engine (see the module docstring).

    ``database`` is the alias holding the tenants; ``fast=False`` sends every migration
    through Django's executor (the runner path); ``fake=True`` records the migrations
    without running them (``migrate_schemas --fake``).
    """

    database: str = "default"
    fast: bool = True
    fake: bool = False
    #: False before the public schema has the tenant table (the first ``migrate_schemas``
    #: of a project): no tenant is listed, the plan's query cannot name a missing table.
    has_tenant_table: bool = True
    #: The ``(kind, id)`` pairs whose SQL is rendered (None: all). The others get the runner
    #: path (Django's own apply), which is always correct, only slower: rendering costs
    #: Django's state machinery per operation, so ``migrate_schemas`` plans with an empty set
    #: (IDs and checksums need no rendering) and renders only what the plan found pending.
    collect: frozenset[tuple[str, str]] | None = None

    @property
    def tenant_schemas(self) -> DjangoTenantTable | _NoTenants:
        """The tenant schemas are the rows of ``TENANT_MODEL``."""
        from .utils import get_tenant_model

        if not self.has_tenant_table:
            return _NoTenants()

        model = get_tenant_model()
        return DjangoTenantTable(model._meta.db_table, model._meta.get_field("schema_name").column)

    def _key(self) -> tuple[Any, ...]:
        conf = tenant_settings()
        from django.conf import settings

        return (
            self.database,
            self.fast,
            self.fake,
            self.has_tenant_table,
            self.collect,
            tuple(settings.INSTALLED_APPS),
            conf.shared_apps,
            conf.tenant_apps,
            conf.has_multi_type_tenants,
            conf.public_schema_name,
            conf.extra_search_paths,
        )

    def loaded(self) -> _Loaded:
        """The collected migrations (once per process and configuration)."""
        key = self._key()
        found = _cache.get(key)
        if found is None:
            with _cache_lock:
                found = _cache.get(key)
                if found is None:
                    found = _cache[key] = _collect(self)
        return found

    def load(self) -> MigrationSet:
        """The shared and tenant lists (each every migration of the graph, in plan order)."""
        return self.loaded().mset

    def after_schema(
        self, kind: str, schema: str, applied: Sequence[str], new: Sequence[str]
    ) -> sql.Composable | None:
        """Create ``django_migrations`` when missing and insert a row per new migration."""
        loaded = self.loaded()
        rows = [row for mid in new for row in loaded.records.get(mid, ())]
        if not rows:
            return None
        if not loaded.create_table:
            # A planning-only set (collect=empty) is never meant to migrate: fail closed.
            raise RuntimeError("this migration set was loaded for planning only")
        key = tuple(new)
        values = loaded.hook_values.get(key)
        if values is None:
            # Rendered once per set of new IDs: every schema of a run gets the same rows.
            values = loaded.hook_values[key] = (
                sql.SQL(sql.Literal([a for a, _ in rows]).as_string(None)),
                sql.SQL(sql.Literal([n for _, n in rows]).as_string(None)),
            )
        table = sql.Identifier(schema, _TABLE)
        return sql.SQL(
            "{create};\n"
            "insert into {table} (app, name, applied) "
            "select r.app, r.name, now() from unnest({apps}::text[], {names}::text[]) "
            "with ordinality as r(app, name, n) "
            "where not exists (select from {table} d where d.app = r.app and d.name = r.name) "
            "order by r.n"
        ).format(
            create=sql.SQL(loaded.create_table).format(table=table),
            table=table,
            apps=values[0],
            names=values[1],
        )


def _checksum(mid: str) -> str:
    return hashlib.sha256(f"django:{mid}".encode()).hexdigest()


def plan_nodes(loader: Any) -> list[tuple[str, str]]:
    """Every node of the graph in the order Django's ``migrate`` applies them from scratch."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    for leaf in loader.graph.leaf_nodes():
        for node in loader.graph.forwards_plan(leaf):
            if node not in seen:
                seen.add(node)
                out.append(node)
    return out


_loaders: dict[tuple[Any, ...], tuple[Any, list[tuple[str, str]]]] = {}


def _graph(source: DjangoMigrationSource) -> tuple[Any, list[tuple[str, str]]]:
    """The migration loader and its nodes in plan order, read from disk once per process and
    configuration (the light planning set and the rendered set share it)."""
    from django.conf import settings

    key = (source.database, tuple(settings.INSTALLED_APPS))
    found = _loaders.get(key)
    if found is None:
        loader = MigrationLoader(None, ignore_no_migrations=True)
        found = _loaders[key] = (loader, plan_nodes(loader))
    return found


def _collect(source: DjangoMigrationSource) -> _Loaded:
    conf = tenant_settings()
    loader, nodes = _graph(source)
    ids = {f"{app}.{name}": (app, name) for app, name in nodes}
    records: dict[str, tuple[tuple[str, str], ...]] = {}
    for mid, node in ids.items():
        migration = loader.graph.nodes[node]
        replaced: tuple[tuple[str, str], ...] = tuple(
            (str(r[0]), str(r[1])) for r in (migration.replaces or ())
        )
        records[mid] = (*replaced, node) if replaced else (node,)
    public = _state.FakeTenant(conf.public_schema_name)
    # Rendered as if for a tenant: any valid name the router sends to TENANT_APPS.
    tenant = _state.FakeTenant("tenantkit_render")
    if source.collect is not None and not source.fake:
        wanted = {kind for kind, _ in source.collect}
        if not wanted:
            # Nothing to render (planning): no connection, no schema editor. The table DDL
            # is only used by after_schema, which refuses a planning-only set.
            shared = tuple(
                _runner_migration(source, n, "shared", _atomic(loader, n)) for n in nodes
            )
            tenant_list = tuple(
                _runner_migration(source, n, "tenant", _atomic(loader, n)) for n in nodes
            )
            return _Loaded(MigrationSet(None, shared, tenant_list), ids, records, "", loader)
    wrapper = connections.create_connection(source.database)
    try:
        wrapper.ensure_connection()
        _ = wrapper.pg_version  # cached before cursors are refused below
        create_table = _create_table_sql(wrapper)
        shared = _collect_kind(source, loader, nodes, wrapper, public, "shared")
        if conf.has_multi_type_tenants and not source.fake:
            tenant_list = tuple(_runner_migration(source, n, "tenant", True) for n in nodes)
        else:
            tenant_list = _collect_kind(source, loader, nodes, wrapper, tenant, "tenant")
    finally:
        wrapper.close()
    mset = MigrationSet(None, shared, tenant_list)
    return _Loaded(mset, ids, records, create_table, loader)


def _atomic(loader: Any, node: tuple[str, str]) -> bool:
    return bool(loader.graph.nodes[node].atomic)


def _create_table_sql(wrapper: Any) -> str:
    """Django's own DDL of ``django_migrations``, as a ``{table}`` template."""
    with wrapper.schema_editor(collect_sql=True, atomic=False) as editor:
        editor.create_model(MigrationRecorder.Migration)
    statements = [s for s in editor.collected_sql if s.strip()]
    prefix = f"CREATE TABLE {wrapper.ops.quote_name(_TABLE)} "
    if len(statements) != 1 or not statements[0].startswith(prefix):
        raise RuntimeError(
            f"unexpected DDL for {_TABLE}: {statements!r}; tenantkit.django cannot keep the "
            "Django migration history with this Django version"
        )
    rest = str(statements[0])[len(prefix) :].rstrip().rstrip(";")
    return "CREATE TABLE IF NOT EXISTS {table} " + rest.replace("{", "{{").replace("}", "}}")


@contextmanager
def _rendering(wrapper: Any, current: Any) -> Iterator[None]:
    """Render with ``current`` as the current tenant and every cursor refused (on the
    rendering connection and on ``connections[alias]`` in this thread)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _NeedsDatabase

    token = _state.set_current(current)
    alias = wrapper.alias
    previous = getattr(connections._connections, alias, None)
    wrapper.cursor = refuse
    wrapper.chunked_cursor = refuse
    connections[alias] = wrapper
    try:
        yield
    finally:
        if previous is None:
            del connections[alias]
        else:
            connections[alias] = previous
        del wrapper.cursor
        del wrapper.chunked_cursor
        _state.reset_current(token)


def _python_operations(operations: Sequence[Any]) -> Iterator[Any]:
    for op in operations:
        if isinstance(op, SeparateDatabaseAndState):
            yield from _python_operations(op.database_operations)
        elif not op.reduces_to_sql:
            yield op


def _collect_kind(
    source: DjangoMigrationSource,
    loader: Any,
    nodes: Sequence[tuple[str, str]],
    wrapper: Any,
    current: Any,
    kind: str,
) -> tuple[Migration, ...]:
    out: list[Migration] = []
    state: Any = ProjectState(real_apps=loader.unmigrated_apps)
    wanted = None
    if source.collect is not None:
        wanted = {mid for k, mid in source.collect if k == kind}
    last = max(
        (i for i, n in enumerate(nodes) if wanted is None or f"{n[0]}.{n[1]}" in wanted),
        default=-1,
    )
    with _rendering(wrapper, current):
        for i, node in enumerate(nodes):
            migration = loader.graph.nodes[node]
            mid = f"{node[0]}.{node[1]}"
            if source.fake:
                out.append(_sql_migration(mid, kind, node, [], True))
                continue
            if wanted is not None and mid not in wanted:
                # Not pending anywhere: Django's own apply if it ever runs. The state only
                # moves forward (cheap before the first rendering, as in Django's executor)
                # while a wanted migration follows.
                out.append(_runner_migration(source, node, kind, migration.atomic))
                if i < last and state is not None:
                    state = migration.mutate_state(state, preserve=False)
                elif i < last:
                    state = loader.project_state(node, at_end=True)
                continue
            needs_python = any(
                router.allow_migrate(wrapper.alias, migration.app_label, **op.hints)
                for op in _python_operations(migration.operations)
            )
            statements: list[str] | None = None
            if source.fast and not needs_python:
                try:
                    # Rendered before the first operation, as Django's executor does: else
                    # that operation renders every model twice (its state before and after).
                    _ = state.apps
                    with wrapper.schema_editor(collect_sql=True, atomic=False) as editor:
                        state = migration.apply(state, editor, collect_sql=True)
                    statements = [s for s in editor.collected_sql if not _is_comment(s)]
                except Exception:  # _NeedsDatabase, or anything it cannot render
                    state = None
            else:
                state = None
            if state is None:
                # The state after this node, from its ancestors (what Django's loader gives).
                state = loader.project_state(node, at_end=True)
            if statements is None:
                out.append(_runner_migration(source, node, kind, migration.atomic))
            else:
                out.append(_sql_migration(mid, kind, node, statements, migration.atomic))
    return tuple(out)


def _is_comment(statement: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("--") for line in statement.split("\n"))


def _path_prefix() -> str:
    """SQL appending ``PG_EXTRA_SEARCH_PATHS`` to the engine's path (no schema of a tenant)."""
    extras = tenant_settings().extra_search_paths
    if not extras:
        return ""
    tail = ", ".join(sql.Identifier(e).as_string(None) for e in extras)
    return (
        "SELECT pg_catalog.set_config('search_path', "
        f"pg_catalog.current_setting('search_path') || {sql.Literal(', ' + tail).as_string(None)}"
        ", true);\n"
    )


def _file_of(node: tuple[str, str]) -> Path:
    return Path(f"{node[0]}/migrations/{node[1]}.py")


def _sql_migration(
    mid: str, kind: str, node: tuple[str, str], statements: list[str], atomic: bool
) -> Migration:
    body = "\n".join(statements)
    if atomic or not statements:
        text = (_path_prefix() + body) if statements else ""
        return Migration(mid, kind, _file_of(node), _checksum(mid), True, text)  # type: ignore[arg-type]

    # Outside a transaction: one statement per message (several would share an implicit one).
    def run(conn: Any) -> None:
        prefix = _path_prefix()
        if prefix:
            conn.execute(prefix.replace(", true)", ", false)").encode())
        for statement in statements:
            conn.execute(statement.encode())

    return Migration(mid, kind, _file_of(node), _checksum(mid), False, runner=run)  # type: ignore[arg-type]


def _runner_migration(
    source: DjangoMigrationSource, node: tuple[str, str], kind: str, atomic: bool
) -> Migration:
    mid = f"{node[0]}.{node[1]}"
    run = _DjangoRunner(source, node)
    return Migration(mid, kind, _file_of(node), _checksum(mid), atomic, runner=run)  # type: ignore[arg-type]


# -- the runner path: Django's executor on the engine's connection ---------------------------


class _CurrentSchemaIntrospection(DatabaseIntrospection):
    """Introspection limited to the schema being migrated (public tables are on the path
    too, and would otherwise answer for a table the tenant does not have yet)."""

    @contextmanager
    def _only_current(self, cursor: Any) -> Iterator[None]:
        cursor.execute(
            "SELECT pg_catalog.current_setting('search_path'), "
            "pg_catalog.set_config('search_path', "
            "pg_catalog.quote_ident(pg_catalog.current_schema()) || ', pg_temp', true)"
        )
        old = cursor.fetchone()[0]
        try:
            yield
        finally:
            cursor.execute("SELECT pg_catalog.set_config('search_path', %s, true)", [old])

    def get_table_list(self, cursor: Any) -> Any:
        """Tables and views of the schema being migrated."""
        with self._only_current(cursor):
            return super().get_table_list(cursor)

    def get_table_description(self, cursor: Any, table_name: str) -> Any:
        """Columns of ``table_name`` in the schema being migrated."""
        with self._only_current(cursor):
            return super().get_table_description(cursor, table_name)

    def get_sequences(self, cursor: Any, table_name: str, table_fields: Any = ()) -> Any:
        """Sequences of ``table_name`` in the schema being migrated."""
        with self._only_current(cursor):
            return super().get_sequences(cursor, table_name, table_fields)

    def get_relations(self, cursor: Any, table_name: str) -> Any:
        """Foreign keys of ``table_name`` in the schema being migrated."""
        with self._only_current(cursor):
            return super().get_relations(cursor, table_name)

    def get_constraints(self, cursor: Any, table_name: str) -> Any:
        """Constraints and indexes of ``table_name`` in the schema being migrated."""
        with self._only_current(cursor):
            return super().get_constraints(cursor, table_name)


class _BoundWrapper(pg_base.DatabaseWrapper):
    """Django's PostgreSQL connection on a psycopg connection it does not own: the engine's,
    with the schema's transaction open. Django's atomic blocks become savepoints in it."""

    introspection_class = _CurrentSchemaIntrospection

    def bind(self, conn: Any, schema: str, tenant: Any) -> None:
        """Adopt ``conn`` as an open transaction of this wrapper."""
        self.connection = conn
        self.autocommit = not self._in_tx(conn)
        self.in_atomic_block = not self.autocommit
        self.commit_on_exit = False
        self.savepoint_ids: list[str | None] = []
        self.schema_name = schema
        self.tenant = tenant

    @staticmethod
    def _in_tx(conn: Any) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(conn.pgconn.transaction_status != TransactionStatus.IDLE)

    def _set_autocommit(self, autocommit: bool) -> None:
        # The engine owns the transaction (and the connection's autocommit mode).
        return None

    def _commit(self) -> None:  # a non-atomic migration's own statements: autocommit already
        return None

    def _rollback(self) -> None:
        return None

    def close(self) -> None:
        """Never closes the engine's connection."""
        self.connection = None

    def create_cursor(self, name: str | None = None) -> Any:
        """Django's client-side cursor with Django's loaders (JSON as text, its time zone)."""
        from django.db.backends.postgresql import psycopg_any
        from psycopg.types.range import Range
        from psycopg.types.string import TextLoader

        cursor = pg_base.Cursor(self.connection)
        # What Django's connections get from their adapters template (psycopg_any).
        adapters = cursor.adapters
        for name_ in ("jsonb", "inet", "cidr"):
            adapters.register_loader(name_, TextLoader)
        adapters.register_dumper(Range, psycopg_any.DjangoRangeDumper)
        psycopg_any.register_tzloader(self.timezone, cursor)
        return cursor


@dataclass(frozen=True)
class _DjangoRunner:
    """``runner(conn)`` of a migration that is not replayed as SQL: Django's own apply."""

    source: DjangoMigrationSource
    node: tuple[str, str]

    def __call__(self, conn: Any) -> None:
        from .utils import get_tenant_model

        loaded = self.source.loaded()
        loader = loaded.loader
        migration = loader.graph.nodes[self.node]
        row = conn.execute("select pg_catalog.current_schema()").fetchone()
        schema = str(row[0])
        conf = tenant_settings()
        alias = self.source.database
        tenant: Any = _state.FakeTenant(schema)
        wrapper = _BoundWrapper(dict(connections[alias].settings_dict), alias)
        wrapper.bind(conn, schema, tenant)
        previous = getattr(connections._connections, alias, None)
        connections[alias] = wrapper
        token = _state.set_current(tenant)
        try:
            if conf.has_multi_type_tenants and schema != conf.public_schema_name:
                found = get_tenant_model()._default_manager.using(alias).filter(schema_name=schema)
                real = found.first()
                if real is not None:
                    _state.reset_current(token)
                    token = _state.set_current(real)
                    wrapper.tenant = real
            state = loader.project_state(self.node, at_end=False)
            with wrapper.schema_editor(atomic=migration.atomic) as editor:
                migration.apply(state, editor)
        finally:
            _state.reset_current(token)
            if previous is None:
                del connections[alias]
            else:
                connections[alias] = previous
            wrapper.connection = None


def run_runner(func: Callable[[Any], None], conn: Any) -> None:
    """Run a migration's runner (for tests and the provisioner)."""
    func(conn)


# -- taking over schemas Django migrated ------------------------------------------------------


def adopt(target: EngineTarget, entries: Sequence[Any]) -> dict[str, list[str]]:
    """Record in tenantkit's books what Django already applied in schemas tenantkit has no
    history for (a django-tenants project switching over, a schema migrated by ``migrate``).

    ``entries`` are plan entries (:class:`tenantkit.migrations.SchemaPlan`); only those with
    every migration pending are looked at, each in one transaction under its migration lock,
    from its ``django_migrations`` rows. Returns schema -> the IDs recorded.
    """
    from tenantkit.migrations._adopt import adopt_schemas

    loaded = target.migration_source.loaded()

    def applied(conn: Any, schema: str, migrations: Sequence[Migration]) -> list[str]:
        table = sql.Identifier(schema, _TABLE)
        exists = conn.execute(
            "select to_regclass(%s) is not null", (table.as_string(conn),)
        ).fetchone()
        if exists is None or not exists[0]:
            return []
        done = {
            (r[0], r[1]) for r in conn.execute(sql.SQL("select app, name from {}").format(table))
        }
        return [
            m.id
            for m in migrations
            if loaded.nodes[m.id] in done
            or (
                all(r in done for r in loaded.records[m.id] if r != loaded.nodes[m.id])
                and len(loaded.records[m.id]) > 1
            )
        ]

    return adopt_schemas(
        target.conninfo,
        target.shared_schema,
        entries,
        lambda kind: loaded.mset.of(_kind(kind)),
        applied,
    )


def _kind(kind: str) -> Any:
    return "shared" if kind == "shared" else "tenant"


def resync(database: str, schema: str) -> None:
    """Rebuild tenantkit's books of ``schema`` from its ``django_migrations`` table (after
    Django's own ``migrate`` ran there, e.g. to a target)."""
    from tenantkit import migrations as engine
    from tenantkit.migrations._executors import connect
    from tenantkit.migrations._tracking import LOCK_NAMESPACE, schema_lock_key

    target = engine_target(database)
    public = target.shared_schema
    with connect(target.conninfo) as conn, conn.transaction():
        conn.execute(
            "select pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, schema_lock_key(schema))
        )
        history = sql.Identifier(schema, HISTORY_TABLE)
        row = conn.execute("select to_regclass(%s) is not null", (history.as_string(conn),))
        found = row.fetchone()
        if found is not None and found[0]:
            conn.execute(sql.SQL("delete from {}").format(history))
        state = sql.Identifier(public, MIGRATION_STATE_TABLE)
        row = conn.execute("select to_regclass(%s) is not null", (state.as_string(conn),))
        found = row.fetchone()
        if found is not None and found[0]:
            conn.execute(sql.SQL("delete from {} where schema = %s").format(state), (schema,))
    if schema == public:
        the_plan = engine.plan(target, shared=True, tenants=False)
    else:
        the_plan = engine.plan(target, shared=False, schemas=[schema])
    adopt(target, the_plan.pending)
