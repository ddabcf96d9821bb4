"""Alembic revisions as tenantkit migrations: one engine run migrates every tenant schema.

:class:`AlembicSource` is a :class:`~tenantkit.migrations.MigrationSource`: give it where a
migrations directory goes (``tenancy.migrate(migrations=AlembicSource("alembic.ini"))``,
``tenantkit migrate --alembic alembic.ini``, the pytest plugin's ``pgtenants_alembic``), and the
engine plans over all tenants in one query, runs each schema's pending revisions in one
transaction under its lock, with executors, journal, resume and progress.

How a revision runs
    Each revision's ``upgrade()`` is rendered *once* to SQL by Alembic's offline mode (the
    operations name no schema), and that SQL is replayed in each schema, in the same message
    as the lock, the search_path and the bookkeeping. A revision that needs a live database
    (it calls ``op.get_bind()`` or ``context.is_offline_mode()``, sets ``TENANTKIT_ONLINE =
    True``, or fails to render) runs through Alembic's online ``MigrationContext`` instead, on a
    SQLAlchemy connection over the engine's own psycopg connection and transaction (one at a
    time per process: Alembic's ``op`` proxy is a process global). A revision
    using ``autocommit_block()`` is non-transactional: its statements run one by one outside a
    transaction (like tenantkit's own non-transactional migrations).

History
    tenantkit's history (``tenantkit_migrations`` and the summary row) is what planning reads;
    ``alembic_version`` in each schema is brought to the schema's heads in the same
    transaction, so ``alembic current`` on a tenant tells the truth. IDs are revision IDs,
    checksums hash the revision's file: editing an applied revision stops the next run.

Shared vs tenant revisions
    Without branch labels every revision is a tenant revision. With ``shared="<label>"`` the
    revisions on that Alembic branch go to the shared schema and the others to every tenant
    (``tenant="<label>"`` restricts the tenant ones to that branch).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import os
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from psycopg import sql

from .core.storage import HISTORY_TABLE
from .errors import MigrationError
from .migrations import Migration, MigrationSet, TenantSchemas
from .migrations._loader import bind_source

__all__ = ["AlembicSource", "adopt", "run_env"]

Kind = Literal["shared", "tenant"]

#: Uses in a revision's source that mean it needs a live database connection.
_ONLINE_RE = re.compile(r"\b(get_bind|is_offline_mode)\s*\(|\bTENANTKIT_ONLINE\s*=\s*True")
_AUTOCOMMIT_RE = re.compile(r"\bautocommit_block\s*\(")


class _Statements(io.StringIO):
    """Alembic's offline output buffer, kept one statement per write (see
    ``DefaultImpl.static_output``: one statement, then a blank line)."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    def write(self, text: str) -> int:
        stripped = text.strip()
        if stripped:
            self.statements.append(stripped)
        return len(text)


@dataclass(frozen=True)
class _Rendered:
    """What one revision file becomes (cached by its path, mtime and size)."""

    checksum: str
    statements: tuple[str, ...] | None  # None: runs online
    transactional: bool


#: Alembic's ``op`` (and ``context``) proxy is one module global: ``Operations.context()``
#: points it at one MigrationContext for the whole process. Two threads running revisions at
#: once would send each other's operations to the wrong connection, so the wrong tenant;
#: every use of the proxy here holds this lock. (Process workers each have their own.)
_OP_PROXY_LOCK = threading.RLock()

_render_cache: dict[tuple[str, int, int, str], _Rendered] = {}
#: Loaded sets (and each revision's down revisions), keyed by options and file stamps.
_set_cache: dict[tuple[Any, ...], tuple[MigrationSet, dict[str, tuple[str, ...]]]] = {}


class AlembicSource:
    """An Alembic project as a tenantkit migration source.

    ``config``: the path of ``alembic.ini`` or an ``alembic.config.Config``. ``shared`` and
    ``tenant``: branch labels (see the module docstring). ``revision``: migrate up to this
    revision (default all heads). ``version_table``: the name of Alembic's version table in
    each schema. ``tenant_schemas``: where the tenant schema names come from (default:
    tenantkit's registry).

    Picklable (for the processes executor): it keeps only what re-creates it.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | Config,
        *,
        shared: str | None = None,
        tenant: str | None = None,
        revision: str = "heads",
        version_table: str = "alembic_version",
        tenant_schemas: TenantSchemas | None = None,
    ) -> None:
        if isinstance(config, Config):
            self.ini = config.config_file_name
            self.section = config.config_ini_section
            self.script_location = config.get_main_option("script_location")
            self.version_locations = config.get_main_option("version_locations")
        else:
            path = Path(config)
            if not path.is_file():
                raise MigrationError(f"Alembic configuration {str(path)!r} does not exist")
            self.ini = str(path.resolve())
            self.section = "alembic"
            self.script_location = None
            self.version_locations = None
        self.shared = shared
        self.tenant = tenant
        self.revision = revision
        self.version_table = version_table
        self._tenant_schemas = tenant_schemas
        self._dirs: list[Path] | None = None
        self._down: dict[str, tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"AlembicSource({self.ini or self.script_location!r}, revision={self.revision!r})"

    @property
    def tenant_schemas(self) -> TenantSchemas | None:
        """Where the tenant schema names come from; None for tenantkit's registry."""
        return self._tenant_schemas

    def config(self) -> Config:
        """A fresh ``alembic.config.Config`` for this project."""
        cfg = Config(self.ini, ini_section=self.section) if self.ini else Config()
        if self.script_location:
            cfg.set_main_option("script_location", self.script_location)
        if self.version_locations:
            cfg.set_main_option("version_locations", self.version_locations)
        return cfg

    def script(self) -> ScriptDirectory:
        """The project's ``ScriptDirectory``."""
        return ScriptDirectory.from_config(self.config())

    # -- MigrationSource ---------------------------------------------------------------------

    def load(self) -> MigrationSet:
        """Every revision up to :attr:`revision`, base first, as engine migrations (cached
        while no revision file changes)."""
        key = (
            self.ini,
            self.section,
            self.script_location,
            self.version_locations,
            self.shared,
            self.tenant,
            self.revision,
            _files_stamp(self._version_dirs()),
        )
        cached = _set_cache.get(key)
        if cached is None:
            down: dict[str, tuple[str, ...]] = {}
            cached = (self._load(down), down)
            _set_cache[key] = cached
        found, self._down = cached
        return found if found.source is self else bind_source(found, self)

    def after_schema(
        self, kind: Kind, schema: str, applied: Sequence[str], new: Sequence[str]
    ) -> sql.Composable | None:
        """Bring ``<schema>.alembic_version`` to the heads of ``applied``."""
        if not self._down:
            self.load()
        heads = _heads(self._down, applied)
        table = sql.Identifier(schema, self.version_table)
        parts: list[sql.Composable] = []
        if len(new) == len(applied):
            # The schema's first revisions: Alembic's own definition of the table
            # (MigrationContext's version table), so a schema migrated here and one migrated
            # by `alembic upgrade` have equal catalogs.
            parts.append(
                sql.SQL(
                    "create table if not exists {} (version_num varchar(32) not null, "
                    "constraint {} primary key (version_num))"
                ).format(table, sql.Identifier(self.version_table + "_pkc"))
            )
        # One statement: the rows become exactly the heads.
        parts.append(
            sql.SQL(
                "with gone as (delete from {t} where version_num <> all({h}::text[])) "
                "insert into {t} (version_num) select unnest({h}::text[]) "
                "on conflict do nothing"
            ).format(t=table, h=sql.Literal(heads))
        )
        return sql.SQL(";\n").join(parts)

    # -- loading -----------------------------------------------------------------------------

    def _version_dirs(self) -> list[Path]:
        """The folders holding the revision files (read from the configuration once)."""
        if self._dirs is None:
            cfg = self.config()
            here = Path(self.ini).parent if self.ini else Path.cwd()
            locations = cfg.get_main_option("version_locations") or ""
            dirs = [
                Path(p.replace("%(here)s", str(here))) for p in re.split(r"[\s,;]+", locations) if p
            ]
            location = cfg.get_main_option("script_location") or ""
            if not dirs and location:
                base = Path(location)
                dirs = [(base if base.is_absolute() else here / base) / "versions"]
            self._dirs = dirs
        return self._dirs

    def _load(self, down: dict[str, tuple[str, ...]]) -> MigrationSet:
        script = self.script()
        try:
            ordered = list(reversed(list(script.iterate_revisions(self.revision, "base"))))
        except Exception as exc:  # alembic.util.CommandError and friends: name the project
            raise MigrationError(
                f"cannot read the Alembic revisions of {self!r} up to {self.revision!r}: {exc}"
            ) from exc
        shared: list[Migration] = []
        tenant: list[Migration] = []
        for rev in ordered:
            assert isinstance(rev, Script)
            kind = self._kind(rev)
            if kind is None:
                continue
            (shared if kind == "shared" else tenant).append(self._migration(rev, kind))
            down[rev.revision] = tuple(rev._normalized_down_revisions)
        return bind_source(MigrationSet(None, tuple(shared), tuple(tenant)), self)

    def _kind(self, rev: Script) -> Kind | None:
        labels = set(rev.branch_labels or ())
        if self.shared is not None and self.shared in labels:
            return "shared"
        if self.tenant is not None and self.tenant not in labels:
            return None
        return "tenant"

    def _migration(self, rev: Script, kind: Kind) -> Migration:
        path = Path(rev.path)
        rendered = _render(rev, path)
        runner: Any
        if rendered.statements is None:
            runner = _OnlineRunner(self, rev.revision)
            text = None
        elif not rendered.transactional:
            runner = _StatementsRunner(rendered.statements)
            text = None
        else:
            runner = None
            text = ";\n".join(s.rstrip(";") for s in rendered.statements)
        return Migration(
            rev.revision, kind, path, rendered.checksum, rendered.transactional, text, runner
        )


def _heads(down: dict[str, tuple[str, ...]], applied: Sequence[str]) -> list[str]:
    """The applied revisions no other applied revision builds on (Alembic's version rows)."""
    below = {d for rev in applied for d in down.get(rev, ())}
    return [rev for rev in applied if rev not in below]


def _files_stamp(dirs: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """Names, mtimes and sizes of the project's revision files: the cache key of a load."""
    out = []
    for d in dirs:
        if d.is_dir():
            for f in sorted(d.rglob("*.py")):
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _render(rev: Script, path: Path) -> _Rendered:
    """Render ``rev``'s upgrade() to SQL once per file version; None statements: online."""
    data = path.read_bytes()
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size, rev.revision)
    cached = _render_cache.get(key)
    if cached is not None:
        return cached
    checksum = hashlib.sha256(data).hexdigest()
    text = _upgrade_source(rev) or data.decode("utf-8", errors="replace")
    transactional = not _AUTOCOMMIT_RE.search(text)
    statements: tuple[str, ...] | None = None
    if not _ONLINE_RE.search(text):
        try:
            statements = _offline(rev, transactional)
        except Exception:
            # Not renderable without a database (reads rows, inspects the schema...):
            # the revision runs online.
            statements = None
    rendered = _Rendered(checksum, statements, transactional)
    _render_cache[key] = rendered
    return rendered


def _upgrade_source(rev: Script) -> str | None:
    """The text of the revision's ``upgrade()`` and module flags (``downgrade()`` may well use
    ``op.get_bind()``: that says nothing about how the upgrade runs)."""
    module = rev.module
    try:
        body = inspect.getsource(module.upgrade)
    except (OSError, TypeError, AttributeError):
        return None
    return body + (
        "\nTENANTKIT_ONLINE = True" if getattr(module, "TENANTKIT_ONLINE", False) else ""
    )


def _offline(rev: Script, transactional: bool) -> tuple[str, ...]:
    buf = _Statements()
    ctx = MigrationContext.configure(
        dialect_name="postgresql",
        opts={
            "as_sql": True,
            "output_buffer": buf,
            "literal_binds": True,
            # Without transactional DDL, autocommit_block() emits no COMMIT/BEGIN pair.
            "transactional_ddl": transactional,
        },
    )
    with _OP_PROXY_LOCK, Operations.context(ctx):
        rev.module.upgrade()
    return tuple(buf.statements)


class _StatementsRunner:
    """A non-transactional revision: its statements one by one, outside a transaction."""

    def __init__(self, statements: Sequence[str]) -> None:
        self.statements = tuple(statements)

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        for statement in self.statements:
            conn.execute(statement.encode())


class _OnlineRunner:
    """Runs one revision through Alembic's online MigrationContext on the engine's connection
    (inside the engine's transaction, with the search_path it set)."""

    def __init__(self, source: AlembicSource, revision: str) -> None:
        self.source = source
        self.revision = revision

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        rev = self.source.script().get_revision(self.revision)
        assert rev is not None
        with sqlalchemy_connection(conn) as sa_conn:
            ctx = MigrationContext.configure(
                connection=sa_conn, opts={"version_table": self.source.version_table}
            )
            with _OP_PROXY_LOCK, Operations.context(ctx):
                rev.module.upgrade()


class _Borrowed:
    """A psycopg connection lent to SQLAlchemy: transaction control stays with the lender.

    SQLAlchemy commits, rolls back and closes the DBAPI connections it manages; the engine
    owns this one and its transaction, so those calls do nothing here.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        object.__setattr__(self, "_conn", conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def commit(self) -> None:
        """Nothing: the engine commits."""

    def rollback(self) -> None:
        """Nothing: the engine rolls back."""

    def close(self) -> None:
        """Nothing: the engine closes its connection."""


_engines: weakref.WeakKeyDictionary[psycopg.Connection[Any], Any] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def sqlalchemy_connection(conn: psycopg.Connection[Any]) -> Iterator[Any]:
    """A SQLAlchemy ``Connection`` over ``conn`` and its current transaction (one engine per
    psycopg connection, made on first use). SQLAlchemy's commits and rollbacks do nothing;
    the default schema is the first schema of the search_path."""
    import sqlalchemy as sa
    from sqlalchemy.pool import StaticPool

    engine = _engines.get(conn)
    if engine is None:
        borrowed = _Borrowed(conn)
        engine = sa.create_engine(
            "postgresql+psycopg://",
            creator=lambda: borrowed,
            poolclass=StaticPool,
            # hstore discovery (TypeInfo.fetch) wants a real psycopg Connection object.
            use_native_hstore=False,
        )
        _engines[conn] = engine
    with engine.connect() as sa_conn:
        row = conn.execute("select current_schema()").fetchone()
        if row is not None and row[0]:
            # What Alembic's cookbook recipe sets too: reflection then looks in the tenant.
            sa_conn.dialect.default_schema_name = row[0]
        yield sa_conn


def adopt(
    tenancy: Any,
    source: AlembicSource,
    *,
    schemas: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Take over schemas migrated by Alembic itself (the cookbook recipe, ``alembic upgrade``).

    A schema tenantkit has no history for, but whose ``alembic_version`` names revisions of
    ``source``, gets those revisions and their ancestors recorded as applied (nothing runs),
    so that ``migrate()`` continues from there instead of running them again. Each schema is
    adopted in one transaction under its migration lock. Returns schema -> the revisions
    recorded; schemas with history already, or without an ``alembic_version``, are left alone.
    ``schemas`` limits it to those tenant schemas.
    """
    from .migrations import plan
    from .migrations._adopt import adopt_schemas
    from .migrations._tracking import resolve

    target = resolve(tenancy, source)
    found = source.load()
    the_plan = plan(tenancy, migrations=source, schemas=schemas)

    def applied(conn: Any, schema: str, migrations: Sequence[Migration]) -> list[str]:
        table = sql.Identifier(schema, source.version_table)
        exists = conn.execute(
            "select to_regclass(%s) is not null", (table.as_string(conn),)
        ).fetchone()
        if not exists or not exists[0]:
            return []
        heads = [r[0] for r in conn.execute(sql.SQL("select version_num from {}").format(table))]
        unknown = [h for h in heads if h not in source._down]
        if unknown:
            raise MigrationError(
                f"schema {schema!r} is at Alembic revision(s) {unknown} that "
                f"{source!r} does not hold: update the code before adopting",
                schema=schema,
            )
        done = _ancestors(source._down, heads)
        return [m.id for m in migrations if m.id in done]

    return adopt_schemas(target.conninfo, target.shared_schema, the_plan.entries, found.of, applied)


def _ancestors(down: dict[str, tuple[str, ...]], heads: Sequence[str]) -> set[str]:
    """``heads`` and every revision below them."""
    seen: set[str] = set()
    todo = list(heads)
    while todo:
        rev = todo.pop()
        if rev not in seen:
            seen.add(rev)
            todo.extend(down.get(rev, ()))
    return seen


def run_env(
    context: Any,
    target_metadata: Any = None,
    *,
    url: str | None = None,
    shared_schema: str = "public",
    schema: str | None = None,
    **configure: Any,
) -> None:
    """The body of an ``env.py`` for a tenantkit project (call it from ``env.py``).

    Online, it compares against the template tenant schema (kept at the head by tenantkit;
    built first when missing) or ``schema`` (``-x tenant=<schema>`` too), with that schema
    first on the search_path and as SQLAlchemy's default schema, so ``alembic revision
    --autogenerate`` emits operations that name no schema; tenantkit's own tables are left
    out of the comparison. Commands that would migrate one schema behind tenantkit's back
    (``upgrade``, ``downgrade``, ``stamp``) are refused: use ``tenantkit migrate --alembic``.
    Offline (``--sql``) it renders the SQL with no schema. ``url`` defaults to the
    ``sqlalchemy.url`` of the configuration (``-x url=...`` overrides).
    """
    import sqlalchemy as sa
    from alembic.util import CommandError

    from .migrations import template_schema_name

    xargs = context.get_x_argument(as_dictionary=True)
    url = xargs.get("url") or url or context.config.get_main_option("sqlalchemy.url")
    version_table = configure.pop("version_table", "alembic_version")
    include_object = configure.pop("include_object", None)

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and name in (HISTORY_TABLE, version_table):
            return False
        return include_object is None or bool(
            include_object(obj, name, type_, reflected, compare_to)
        )

    if context.is_offline_mode():
        context.configure(
            url=url or "postgresql://",
            target_metadata=target_metadata,
            literal_binds=True,
            version_table=version_table,
            **configure,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    cmd = getattr(getattr(context.config, "cmd_opts", None), "cmd", None)
    name = getattr(cmd[0], "__name__", "") if cmd else ""
    if name in ("upgrade", "downgrade", "stamp"):
        raise CommandError(
            f"`alembic {name}` would change one schema without tenantkit's bookkeeping: run "
            "`tenantkit migrate --alembic <alembic.ini>` (every tenant), or use --sql"
        )
    if not url:
        raise CommandError("no database URL: set sqlalchemy.url or pass -x url=...")
    target = xargs.get("tenant") or schema
    if target is None:
        target = template_schema_name(shared_schema)
        _ensure_template(url, shared_schema, context.config)
    path = sql.SQL("{}, {}").format(sql.Identifier(target), sql.Identifier(shared_schema))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(
                sa.text("select set_config('search_path', :path, false)"),
                {"path": path.as_string()},
            )
            connection.commit()
            # Alembic's cookbook recipe does the same: reflection of "no schema" then means
            # the compared schema, so the generated operations name no schema.
            connection.dialect.default_schema_name = target
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                version_table=version_table,
                include_object=include,
                **configure,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def _ensure_template(url: str, shared_schema: str, config: Config) -> None:
    """Build (or bring to the head) the template schema autogenerate compares against."""
    import types

    import sqlalchemy as sa

    from .provisioning import Template

    dsn = sa.engine.make_url(url).set(drivername="postgresql")
    tenancy = types.SimpleNamespace(
        conninfo=dsn.render_as_string(hide_password=False),
        shared_schema=shared_schema,
        migration_source=AlembicSource(config),
    )
    Template(tenancy).ensure()
