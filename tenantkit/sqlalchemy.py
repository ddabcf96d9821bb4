"""SQLAlchemy engines whose connections are tenantkit tenant connections.

:func:`tenant_engine` (sync) and :func:`async_tenant_engine` (asyncio) build SQLAlchemy
engines over ``TenantConnection`` / ``AsyncTenantConnection``, configured like the tenancy's
own connections (shared schema, extras, strict mode, pgbouncer mode). So:

* the tenant's ``search_path`` rides on psycopg's ``BEGIN`` (same message): a ``Session``
  makes exactly the round trips it makes without tenancy;
* a connection taken from the engine's pool is bound to :func:`~tenantkit.current_tenant`
  (set by the routing middleware or :func:`~tenantkit.tenant_context`), and a ``Session`` with
  ``session.info["tenant"]`` is bound to that tenant instead, from the start of each of its
  transactions (:func:`tenant_session` / :func:`atenant_session` do both in one step);
* a connection going back to the pool is unbound, and the next borrower's first transaction
  discards the temporary objects the previous one left;
* in strict mode a statement without a tenant raises :class:`~tenantkit.NoTenantSelected`;
* reflection and ``MetaData`` without a schema see the bound tenant's schema, and the
  inspector's ``default_schema_name`` is that schema.

Pooling belongs to SQLAlchemy here (``QueuePool`` / ``AsyncAdaptedQueuePool``, sized with the
usual ``pool_size`` / ``max_overflow``), not to the tenancy's psycopg_pool: the ``Session``
returns its connection at the end of each transaction, SQLAlchemy resets it (rollback), and
the checkout/checkin events bind and unbind it. The tenancy's own pool stays for registry work.
"""

from __future__ import annotations

import contextlib
import inspect
import select
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.base import PGInspector
from sqlalchemy.engine import Connection, Engine, create_engine
from sqlalchemy.orm import Session

from tenantkit import AsyncTenantConnection, Tenant, TenantConnection, current_tenant

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.orm import sessionmaker
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

    from tenantkit import AsyncTenancy, Tenancy

__all__ = [
    "SESSION_TENANT",
    "async_session_dependency",
    "async_tenant_engine",
    "atenant_session",
    "session_dependency",
    "tenant_engine",
    "tenant_session",
]

#: ``session.info`` key naming the tenant a ``Session`` (or ``AsyncSession``) works for.
SESSION_TENANT = "tenant"

# Keys of SQLAlchemy's per-connection ``info`` dict (it lives as long as the DBAPI connection).
_TENANCY = "tenantkit.tenancy"
_SCHEMA = "tenantkit.schema"
_TRANSLATE = "tenantkit.translate"

TenantArg = Tenant | str | None


def _configure(tenancy: Any, conn: Any) -> None:
    """Configure a fresh tenant connection like the tenancy's pooled ones, on the shared path.

    SQLAlchemy's first-connect queries (server version, ``current_schema()``, ...) run before
    any checkout: on the shared path, strict mode does not refuse them.
    """
    tenancy.configure_connection(conn)


def _bind(tenancy: Any, conn: Any, tenant: TenantArg) -> None:
    """Bind ``conn`` to ``tenant`` (None: unbound) from its next transaction on; no I/O."""
    tenancy.bind_connection(conn, tenant)


def _schema_of(tenancy: Any, tenant: TenantArg) -> str:
    if tenant is None:
        return str(tenancy.shared_schema)
    return tenant.schema if isinstance(tenant, Tenant) else str(tenant)


# -- binding --------------------------------------------------------------------------------


def _bind_record(
    record: ConnectionPoolEntry | PoolProxiedConnection, driver: Any, tenant: TenantArg
) -> None:
    tenancy = record.info[_TENANCY]
    _bind(tenancy, driver, tenant)
    record.info[_SCHEMA] = _schema_of(tenancy, tenant)


def _install_pool_events(engine: Engine, tenancy: Any, translate: bool) -> None:
    def on_checkout(
        dbapi_conn: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        # A new borrower: the current tenant (ContextVar) at the time the connection is taken;
        # a Session with info["tenant"] rebinds it in after_begin, before any statement.
        record.info[_TENANCY] = tenancy
        record.info[_TRANSLATE] = translate
        _bind_record(record, record.driver_connection, current_tenant())

    def on_checkin(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        # After SQLAlchemy's reset (rollback): nobody's tenant stays on a pooled connection,
        # and the next borrower's first transaction discards temporary objects.
        driver = record.driver_connection
        if driver is not None and not driver.closed and _TENANCY in record.info:
            _bind_record(record, driver, None)

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    if translate:

        def on_begin(conn: Connection) -> None:
            _translate(conn)

        event.listen(engine, "begin", on_begin)


def _translate(conn: Connection) -> None:
    """schema_translate_map mode: unqualified tables render qualified with the bound schema."""
    schema = conn.info.get(_SCHEMA)
    current = conn.get_execution_options().get("schema_translate_map") or {}
    if schema is not None and current.get(None) != schema:
        # In SQLAlchemy 2, Connection.execution_options() changes this connection in place.
        conn.execution_options(schema_translate_map={**current, None: schema})


_session_events_lock = threading.Lock()
_session_events = False


def _on_session_begin(session: Session, transaction: Any, connection: Connection) -> None:
    tenant = session.info.get(SESSION_TENANT)
    if tenant is None:
        return
    info = connection.info
    if _TENANCY not in info:  # not a tenant engine's connection
        return
    # The transaction has begun for SQLAlchemy only: psycopg sends BEGIN (and the path with
    # it) with the first statement, so this binding costs nothing.
    _bind_record(connection.connection, connection.connection.driver_connection, tenant)
    if info.get(_TRANSLATE):
        _translate(connection)


def _listen_sessions() -> None:
    """Make every ``Session`` honour ``info["tenant"]`` on tenant engines (once per process)."""
    global _session_events
    with _session_events_lock:
        if not _session_events:
            # On the class: every Session, and the sync_session of every AsyncSession.
            event.listen(Session, "after_begin", _on_session_begin)
            _session_events = True


# -- reflection -------------------------------------------------------------------------------

#: Dialect reflection methods taking ``schema``, where None must mean the bound tenant's schema
#: (PostgreSQL's dialect reads None as "visible on the path", which mixes in shared tables).
_REFLECT = (
    "get_check_constraints",
    "get_columns",
    "get_foreign_keys",
    "get_indexes",
    "get_materialized_view_names",
    "get_pk_constraint",
    "get_sequence_names",
    "get_table_comment",
    "get_table_names",
    "get_table_oid",
    "get_table_options",
    "get_unique_constraints",
    "get_view_definition",
    "get_view_names",
    "has_index",
    "has_sequence",
    "has_table",
    "has_type",
)
#: Methods answering ``{(schema, name): ...}``: keys of the tenant's schema go back to None,
#: the schema the caller asked for (``Inspector.reflect_table`` looks them up so).
_REFLECT_MULTI = (
    "get_multi_check_constraints",
    "get_multi_columns",
    "get_multi_foreign_keys",
    "get_multi_indexes",
    "get_multi_pk_constraint",
    "get_multi_table_comment",
    "get_multi_table_options",
    "get_multi_unique_constraints",
    "has_multi_table",
)


def _bound_schema(connection: Any) -> str | None:
    info = getattr(connection, "info", None)
    return info.get(_SCHEMA) if isinstance(info, Mapping) else None


def _unqualify_fks(fks: Any, schema: str) -> Any:
    """Foreign keys to the tenant's own tables refer to them unqualified, as they were asked."""
    for fk in fks:
        if fk.get("referred_schema") == schema:
            fk["referred_schema"] = None
    return fks


def _wrap_reflect(name: str, base: Any, *, multi: bool) -> Callable[..., Any]:
    original = getattr(base, name)
    signature = inspect.signature(original)
    foreign_keys = "foreign_keys" in name

    def method(self: Any, connection: Any, *args: Any, **kw: Any) -> Any:
        bound = signature.bind(self, connection, *args, **kw)
        schema = None
        if bound.arguments.get("schema") is None:
            schema = _bound_schema(connection)
        if schema is None:
            return original(self, connection, *args, **kw)
        bound.arguments["schema"] = schema
        result = original(*bound.args, **bound.kwargs)
        if not multi:
            return _unqualify_fks(result, schema) if foreign_keys else result
        # Keys of the tenant's schema go back to None, the schema the caller asked for.
        items = result.items() if isinstance(result, Mapping) else result
        moved = [
            (
                (None if k[0] == schema else k[0], k[1]),
                _unqualify_fks(v, schema) if foreign_keys else v,
            )
            for k, v in items
        ]
        return dict(moved) if isinstance(result, Mapping) else moved

    method.__name__ = name
    method.__doc__ = original.__doc__
    return method


class TenantInspector(PGInspector):
    """PostgreSQL inspector whose ``default_schema_name`` is the bound tenant's schema."""

    @property
    def default_schema_name(self) -> str | None:
        """The schema of the tenant the inspected connection is bound to."""
        bind = self.bind
        if isinstance(bind, Connection):
            schema = _bound_schema(bind)
        else:
            with bind.connect() as conn:  # a checkout only, no statement
                schema = _bound_schema(conn)
        return schema if schema is not None else self.dialect.default_schema_name


_dialect_classes: dict[type[Any], type[Any]] = {}


def _tenant_dialect(dialect: Dialect) -> None:
    """Give this engine's dialect tenant-aware reflection (a subclass made once per class)."""
    base = type(dialect)
    cls = _dialect_classes.get(base)
    if cls is None:
        methods: dict[str, Any] = {
            name: _wrap_reflect(name, base, multi=multi)
            for names, multi in ((_REFLECT, False), (_REFLECT_MULTI, True))
            for name in names
            if hasattr(base, name)
        }
        methods["inspector"] = TenantInspector
        methods["do_ping"] = _do_ping
        # Reflection results are not statements: the compiled-statement cache stays valid.
        methods["supports_statement_cache"] = True
        cls = _dialect_classes.setdefault(base, type(f"Tenant{base.__name__}", (base,), methods))
    dialect.__class__ = cls


def _do_ping(self: Any, dbapi_connection: Any) -> bool:
    """``pool_pre_ping`` without a statement (SQLAlchemy's ping is an autocommit statement,
    which pgbouncer mode refuses and strict mode rejects): a connection the server closed has
    an error and EOF waiting on its socket, so a non-blocking read tells."""
    conn = self.get_driver_connection(dbapi_connection)
    pgconn = conn.pgconn
    if conn.closed or pgconn.status != pq.ConnStatus.OK:
        return False
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        for _ in range(4):  # libpq may need a few reads for the error and the EOF
            if not poller.poll(0):
                break
            pgconn.consume_input()
            if pgconn.status != pq.ConnStatus.OK:
                return False
    except (OSError, ValueError, psycopg.OperationalError):
        return False
    return True


# -- engines ----------------------------------------------------------------------------------


def _check_kwargs(engine_kwargs: Mapping[str, Any]) -> None:
    for key in ("creator", "async_creator", "url"):
        if key in engine_kwargs:
            raise TypeError(
                f"tenant engines make their own connections from the tenancy: {key}= is not "
                "accepted (configure the tenancy's conninfo instead)"
            )


def _conninfo(tenancy: Any) -> str:
    conninfo = tenancy.conninfo
    if not conninfo:
        raise TypeError(
            "the tenancy has no conninfo (it was built on a pool with a callable conninfo): "
            "build it with Tenancy(conninfo, ...) to use it with SQLAlchemy"
        )
    return str(conninfo)


def tenant_engine(
    tenancy: Tenancy, *, schema_translate_map: bool = False, **engine_kwargs: Any
) -> Engine:
    """A SQLAlchemy ``Engine`` whose connections are ``TenantConnection`` s of ``tenancy``.

    ``engine_kwargs`` go to ``create_engine`` (``pool_size``, ``max_overflow``, ``echo``,
    ``pool_pre_ping`` ...). A connection is bound to :func:`~tenantkit.current_tenant` when
    taken from the pool, or to ``session.info["tenant"]`` for a ``Session`` that names one;
    the path travels with the transaction's ``BEGIN``. ``schema_translate_map=True`` also
    renders the tenant's schema into every table that has none (``text()`` SQL is not
    rewritten: it runs on the ``search_path``, which is still set).
    """
    _check_kwargs(engine_kwargs)
    conninfo = _conninfo(tenancy)

    def creator() -> TenantConnection[Any]:
        conn = TenantConnection.connect(conninfo)
        _configure(tenancy, conn)
        return conn

    engine = create_engine("postgresql+psycopg://", creator=creator, **engine_kwargs)
    _tenant_dialect(engine.dialect)
    _install_pool_events(engine, tenancy, schema_translate_map)
    _listen_sessions()
    return engine


def async_tenant_engine(
    atenancy: AsyncTenancy, *, schema_translate_map: bool = False, **engine_kwargs: Any
) -> AsyncEngine:
    """Async twin of :func:`tenant_engine`: an ``AsyncEngine`` over ``AsyncTenantConnection`` s.

    Needs SQLAlchemy's asyncio extra (``greenlet``). Use it with ``AsyncSession``; the engine
    and its connections belong to the event loop that first uses them.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    _check_kwargs(engine_kwargs)
    conninfo = _conninfo(atenancy)

    async def creator() -> AsyncTenantConnection[Any]:
        conn = await AsyncTenantConnection.connect(conninfo)
        _configure(atenancy, conn)
        return conn

    engine = create_async_engine("postgresql+psycopg://", async_creator=creator, **engine_kwargs)
    _tenant_dialect(engine.sync_engine.dialect)
    _install_pool_events(engine.sync_engine, atenancy, schema_translate_map)
    _listen_sessions()
    return engine


# -- sessions ---------------------------------------------------------------------------------


@contextlib.contextmanager
def tenant_session(
    bind: Engine | sessionmaker[Any], tenant: Tenant | str, **session_kwargs: Any
) -> Iterator[Session]:
    """A ``Session`` working for ``tenant``, whatever the current tenant is.

    ``bind`` is a tenant engine or a ``sessionmaker`` over one. The block's work is
    committed at its end (rolled back on an exception) and the session closed, like
    ``sessionmaker.begin()``.
    """
    info = {**session_kwargs.pop("info", {}), SESSION_TENANT: tenant}
    session = (
        Session(bind=bind, info=info, **session_kwargs)
        if isinstance(bind, Engine)
        else bind(info=info, **session_kwargs)
    )
    with session, session.begin():
        yield session


@contextlib.asynccontextmanager
async def atenant_session(
    bind: AsyncEngine | Any, tenant: Tenant | str, **session_kwargs: Any
) -> AsyncIterator[AsyncSession]:
    """Async twin of :func:`tenant_session`: ``bind`` is an async tenant engine or an
    ``async_sessionmaker`` over one."""
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    info = {**session_kwargs.pop("info", {}), SESSION_TENANT: tenant}
    session = (
        AsyncSession(bind=bind, info=info, **session_kwargs)
        if isinstance(bind, AsyncEngine)
        else bind(info=info, **session_kwargs)
    )
    async with session, session.begin():
        yield session


def session_dependency(factory: sessionmaker[Any]) -> Callable[[], Iterator[Session]]:
    """A FastAPI / Starlette dependency yielding a ``Session`` for the routed request's tenant.

    tenantkit's ASGI middleware makes the routed tenant current; the session is bound to it
    when the dependency runs (``info["tenant"]``), so it stays that tenant's for the whole
    request. Without a current tenant it works on the shared path (strict mode: raises
    ``NoTenantSelected`` at its first statement). The session is closed after the response;
    commit in the endpoint.
    """

    def dependency() -> Iterator[Session]:
        tenant = current_tenant()
        with factory(info={SESSION_TENANT: tenant} if tenant is not None else {}) as session:
            yield session

    return dependency


def async_session_dependency(factory: Any) -> Callable[[], AsyncIterator[AsyncSession]]:
    """Async twin of :func:`session_dependency` for an ``async_sessionmaker``."""

    async def dependency() -> AsyncIterator[AsyncSession]:
        tenant = current_tenant()
        async with factory(info={SESSION_TENANT: tenant} if tenant is not None else {}) as session:
            yield session

    return dependency
