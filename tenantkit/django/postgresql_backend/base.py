"""``ENGINE: "tenantkit.django.postgresql_backend"``: Django's psycopg 3 backend on tenantkit.

What differs from django-tenants' backend, and why:

* Connections are :class:`tenantkit.TenantConnection` objects (direct, or from Django's pool
  with ``OPTIONS["pool"]``), in their ``session_path`` mode (``OPTIONS["session_path"]``, on
  unless ``pgbouncer``): each remembers the ``search_path`` it set for its session, so a
  repeat tenant sends exactly the statements plain Django sends. The remembered path is
  forgotten on a failure or rollback that may undo it and before any statement whose text may
  change it; path-changing functions on the server are looked for once per connection and
  every minute, and turn the mode off for that connection (see
  :mod:`tenantkit.core._connection`).
* A tenant switch rides on the message of the next statement: with Django's default
  client-side binding ``SET search_path TO ...; DISCARD TEMP; <statement>`` in one
  simple-query message, which PostgreSQL runs as one implicit transaction (``nextset()``
  skips the prefix's results); with server-side binding the path and the statement travel in
  one pipeline; in a transaction it goes with ``BEGIN`` and is remembered once ``COMMIT``
  succeeds. One round trip either way. Without the mode the prefix is ``SET LOCAL``, and
  nothing outlives the statement (pgbouncer mode: ``BEGIN``, ``SET LOCAL``, the statement
  and ``COMMIT`` in one pipeline). Statements PostgreSQL refuses in a transaction
  (``... CONCURRENTLY``, ``VACUUM``...), named cursors and the first statement of a
  connection (the pooler check) go through ``TenantConnection``'s own autocommit path
  instead: one extra round trip when the path must be sent.
* The current tenant is not an attribute of the connection object but a ContextVar
  (:mod:`tenantkit.django._state`): ``connection.set_tenant()`` in one thread or asyncio task
  never changes what another one's queries see, and the path is taken from it at every
  statement, so a pooled connection cannot carry one request's tenant into the next.
* Schema names are validated (django-tenants' rule, 63 *bytes*) before any SQL exists and
  always quoted.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base as pg_base
from django.db.backends.postgresql.base import CursorMixin
from django.utils.module_loading import import_string
from psycopg import pq
from psycopg.client_cursor import ClientCursorMixin

from .. import _core, _state
from .._names import check_schema_name, is_valid_schema_name
from .._state import FakeTenant
from ..conf import tenant_settings
from .introspection import DatabaseSchemaIntrospection

__all__ = [
    "DatabaseWrapper",
    "FakeTenant",
    "_check_schema_name",
    "is_valid_schema_name",
]

_IDLE = pq.TransactionStatus.IDLE

#: Statements PostgreSQL refuses in a pipeline or transaction: sent on their own.
_NO_PIPELINE = re.compile(
    rb"^\s*(?:VACUUM|REINDEX|CLUSTER|CHECKPOINT|(?:CREATE|DROP|ALTER)\s+(?:DATABASE|TABLESPACE|"
    rb"SUBSCRIPTION)|ALTER\s+SYSTEM)\b|\bCONCURRENTLY\b",
    re.IGNORECASE,
)

_SET_LOCAL = b"SET LOCAL search_path TO "
_SET_SESSION = b"SET search_path TO "
_DISCARD = b"DISCARD TEMP"

#: OPTIONS keys of this backend (removed before the rest reaches psycopg).
_OWN_OPTIONS = ("pgbouncer", "session_path")


def _check_schema_name(name: str) -> None:
    """django-tenants' validator name: raise ``ValidationError`` for an invalid schema name."""
    check_schema_name(name)


def _bind_current(conn: Any) -> None:
    """Bind ``conn`` to the path of the current tenant when it is not bound to it already."""
    tenant, include_public = _state.current()
    path = _state.path_for(tenant.schema_name, include_public)
    if conn._tk_want is not path:
        _core.bind(conn, path)


def _outside_transaction(conn: Any, query: Any) -> bool:
    """Whether this statement runs outside a transaction and must carry the path with it."""
    if not conn.autocommit or conn.pgconn.transaction_status != _IDLE:
        return False
    if not (conn._tk_verified or conn._tk_pgbouncer):
        # The first statement of a connection checks, in a message of tenantkit's own, that
        # no pooler sits in between.
        return False
    if isinstance(query, str):
        text = query[:200].encode()
    elif isinstance(query, bytes):
        text = query[:200]
    else:
        return True
    return not _NO_PIPELINE.search(text)


class _TenantStatements:
    """Cursor mixin: each statement runs on the current tenant's path, in one round trip."""

    _conn: Any
    #: Whether an autocommit statement may carry its path (in front of it or in a pipeline).
    _tk_pipeline = True
    #: Client-side binding (simple-query protocol): the path goes in front of the statement.
    _tk_simple = False
    #: A ``TenantCursor`` below in the MRO already wraps the start (``_checked_start``).
    _tk_wrapped = False

    def _start_query(self, query: Any = None) -> Any:
        # tenantkit's own cursor hook: check the transaction start and apply a switch made in
        # the middle of a transaction (schema_context() inside atomic()).
        conn = self._conn
        start = super()._start_query(query)  # type: ignore[misc]
        if self._tk_wrapped or (
            conn._tk_local is None
            and conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS
        ):
            return start
        return conn._tk_around_query(start)

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        """Run ``query`` on the current tenant's path (see the module docstring)."""
        conn = self._conn
        _bind_current(conn)
        if _core.path_holds(conn) or not (self._tk_pipeline and _outside_transaction(conn, query)):
            # In a transaction (the path rode on BEGIN), or the session path is known to be
            # the tenant's already: the statement alone, as plain Django sends it.
            result = super().execute(query, params, **kwargs)  # type: ignore[misc]
            if isinstance(query, str) and query.startswith("ROLLBACK TO SAVEPOINT"):
                # Django's savepoint_rollback(): a tenant switch made after the savepoint
                # was undone with it; the next statement must carry the path again.
                _core.rearm(conn)
            return result
        if self._tk_simple and isinstance(query, (str, bytes)):
            return self._tk_prefixed(query, params, **kwargs)
        if conn._tk_pgbouncer:
            method = super().execute  # type: ignore[misc]
            return self._tk_in_transaction(method, query, params, **kwargs)
        want = conn._tk_want or conn._tk_neutral
        with conn.pipeline():
            result = super().execute(query, params, **kwargs)  # type: ignore[misc]
        # The implicit transaction of the pipeline committed, with its DISCARD TEMP and path.
        _core.discarded(conn)
        _core.learn_session(conn, want)  # the hook read the statement
        return result

    def _tk_prefixed(self, query: str | bytes, params: Any, **kwargs: Any) -> Any:
        # Client-side binding sends one simple-query message: what the statement needs goes
        # in front of it, in the implicit transaction the message runs in. The path is set
        # for the session when the backend remembers it (OPTIONS["session_path"]), else as
        # SET LOCAL (nothing stays on the connection: safe behind pgbouncer too).
        conn = self._conn
        discard = conn._tk_discard or conn._tk_pgbouncer
        want = conn._tk_want
        parts = []
        if not conn._tk_cache:
            parts.append(_SET_LOCAL + want)
        elif conn._tk_session != want:
            parts.append(_SET_SESSION + want)
        if discard:
            parts.append(_DISCARD)
        prefix = b"".join(part + b"; " for part in parts)
        if params is not None:
            prefix = prefix.replace(b"%", b"%%")  # the statement's placeholders are merged
        if isinstance(query, str):
            text: str | bytes = prefix.decode() + query
        else:
            text = prefix + query
        _core.note_statement(conn, query)
        saved = _core.unbind_for_statement(conn)
        try:
            super().execute(text, params, **kwargs)  # type: ignore[misc]
        finally:
            _core.rebind(conn, saved)
        for _ in parts:
            self.nextset()  # type: ignore[attr-defined]  # past the prefix's results, to the statement's own
        if discard:
            _core.discarded(conn)
        _core.learn_session(conn, want)
        return self

    def _tk_in_transaction(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        # pgbouncer mode: BEGIN (with SET LOCAL and DISCARD TEMP), the statement and COMMIT
        # travel in one pipeline; Django's autocommit mode is restored afterwards (switching
        # it on an idle connection costs no round trip).
        conn = self._conn
        conn.autocommit = False
        try:
            with conn.pipeline():
                try:
                    result = method(*args, **kwargs)
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
        finally:
            if conn.pgconn.transaction_status != _IDLE:
                conn.rollback()
            conn.autocommit = True
        return result

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        """``executemany`` on the current tenant's path (one pipeline, as psycopg does)."""
        conn = self._conn
        _bind_current(conn)
        if _outside_transaction(conn, query) and conn._tk_pgbouncer:
            method = super().executemany  # type: ignore[misc]
            return self._tk_in_transaction(method, query, params_seq, **kwargs)
        return super().executemany(query, params_seq, **kwargs)  # type: ignore[misc]

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        """``COPY`` on the current tenant's path."""
        _bind_current(self._conn)
        return super().copy(statement, params, **kwargs)  # type: ignore[misc]


class Cursor(_TenantStatements, pg_base.Cursor, _core.TenantCursor):
    """Django's client-side binding cursor on a tenant connection."""

    _tk_simple = True
    _tk_wrapped = True


class ServerBindingCursor(_TenantStatements, pg_base.ServerBindingCursor, _core.TenantCursor):
    """Django's server-side binding cursor (``OPTIONS["server_side_binding"]``)."""

    _tk_wrapped = True


class ServerSideCursor(
    _TenantStatements, CursorMixin, ClientCursorMixin[Any, Any], psycopg.ServerCursor[Any]
):
    """Django's named cursor (``QuerySet.iterator()``) on the current tenant's path."""

    # psycopg runs no named cursor in a pipeline; in autocommit mode the path takes its own
    # round trip (Django declares such cursors WITH HOLD there).
    _tk_pipeline = False


class NamedServerBindingCursor(_TenantStatements, CursorMixin, psycopg.ServerCursor[Any]):
    """A named cursor with server-side binding (``OPTIONS["server_side_binding"]``)."""

    _tk_pipeline = False


class DatabaseWrapper(pg_base.DatabaseWrapper):
    """Django's PostgreSQL backend with django-tenants' tenant API on tenantkit's connections.

    ``OPTIONS["pgbouncer"] = True`` is for a transaction-pooling pgbouncer: only
    transaction-scoped settings (``SET LOCAL``), server-side prepared statements off. Without
    it, the first transaction of each connection checks that no pooler sits in between and
    refuses to run if one does (``tenantkit.errors.PoolerDetected``).
    """

    @property
    def include_public_schema(self) -> bool:
        """Whether the public schema follows the current tenant's on the path."""
        return _state.current()[1]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Tables, sequences and constraints as the current schema sees them.
        self.introspection = DatabaseSchemaIntrospection(self)
        options = self.settings_dict.get("OPTIONS", {})
        self.tenantkit_pgbouncer = bool(options.get("pgbouncer", False))
        # Remember each connection's session path (never behind pgbouncer: not our session).
        self.tenantkit_session_path = bool(options.get("session_path", True))

    # -- the tenant API (django-tenants' names) -----------------------------------------

    @property
    def tenant(self) -> Any:
        """The current tenant of this thread / task (a ``FakeTenant`` for a bare schema)."""
        return _state.current()[0]

    @tenant.setter
    def tenant(self, value: Any) -> None:
        # django-tenants code resets with ``connection.tenant = None``: the public schema.
        if value is None:
            self.set_schema_to_public()
        else:
            self.set_tenant(value)

    @property
    def schema_name(self) -> str:
        """The current schema of this thread / task."""
        return str(_state.current()[0].schema_name)

    @schema_name.setter
    def schema_name(self, value: str) -> None:
        self.set_schema(value)

    def set_tenant(self, tenant: Any, include_public: bool = True) -> None:
        """Make ``tenant`` current in this thread / task (no statement is sent).

        Its path is sent with the next statement or transaction start.
        """
        previous = _state.current()[0]
        _state.set_current(tenant, include_public)
        self.set_settings_schema(tenant.schema_name)
        extra = tenant_settings().extra_set_tenant_method
        if extra:
            import_string(extra)(self, tenant)
        if getattr(previous, "schema_name", None) != tenant.schema_name:
            _clear_content_types()

    def set_schema(
        self, schema_name: str, include_public: bool = True, tenant_type: str | None = None
    ) -> None:
        """Make the schema ``schema_name`` current (a ``FakeTenant``)."""
        self.set_tenant(FakeTenant(schema_name, tenant_type), include_public)

    def set_schema_to_public(self) -> None:
        """Make the public schema current."""
        self.set_tenant(_state.public_tenant())

    def set_settings_schema(self, schema_name: str) -> None:
        """django-tenants compatibility: ``settings_dict["SCHEMA"]`` follows the tenant."""
        self.settings_dict["SCHEMA"] = schema_name

    def get_schema(self) -> str:
        """Deprecated (as in django-tenants): use ``connection.schema_name``."""
        warnings.warn(
            "connection.get_schema() is deprecated, use connection.schema_name instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.schema_name

    def get_tenant(self) -> Any:
        """Deprecated (as in django-tenants): use ``connection.tenant``."""
        warnings.warn(
            "connection.get_tenant() is deprecated, use connection.tenant instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.tenant

    # -- connections --------------------------------------------------------------------

    def get_connection_params(self) -> dict[str, Any]:
        """Django's parameters, with this backend's cursor classes and options removed."""
        params: dict[str, Any] = super().get_connection_params()
        for key in _OWN_OPTIONS:
            params.pop(key, None)
        if self.alias == pg_base.NO_DB_ALIAS:
            # Django's connection to the maintenance database (CREATE DATABASE for tests):
            # no tenant there, a plain connection with Django's own cursors.
            return params
        factory = params.get("cursor_factory")
        if factory is pg_base.ServerBindingCursor:
            params["cursor_factory"] = ServerBindingCursor
        elif factory is pg_base.Cursor:
            params["cursor_factory"] = Cursor
        elif not (isinstance(factory, type) and issubclass(factory, _TenantStatements)):
            raise ImproperlyConfigured(
                "OPTIONS['cursor_factory'] must be a tenantkit.django.postgresql_backend.base "
                "cursor class: other cursors would not carry the tenant's search_path"
            )
        return params

    @property
    def pool(self) -> Any:
        """Django's connection pool (``OPTIONS["pool"]``), creating tenant connections."""
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == pg_base.NO_DB_ALIAS or not pool_options:
            return None
        pools = self._connection_pools
        if self.alias not in pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            try:
                from psycopg_pool import ConnectionPool
            except ImportError as err:
                raise ImproperlyConfigured(
                    "Error loading psycopg_pool module.\nDid you install psycopg[pool]?"
                ) from err
            kwargs = self.get_connection_params()
            kwargs["autocommit"] = True  # Django sets the mode it wants on checkout
            checks = self.settings_dict["CONN_HEALTH_CHECKS"]
            pool = ConnectionPool(
                kwargs=kwargs,
                open=False,
                connection_class=_core.TenantConnection,
                configure=self._configure_pooled,
                check=ConnectionPool.check_connection if checks else None,
                **({} if pool_options is True else pool_options),
            )
            pools.setdefault(self.alias, pool)
        return pools[self.alias]

    def _configure_pooled(self, connection: Any) -> None:
        self._configure_tenancy(connection)
        self._configure_connection(connection)

    def _configure_tenancy(self, connection: Any) -> None:
        conf = tenant_settings()
        base = (conf.public_schema_name, *conf.extra_search_paths)
        neutral = _state.path_for(conf.public_schema_name)
        _core.configure(
            connection,
            neutral,
            base,
            pgbouncer=self.tenantkit_pgbouncer,
            session_path=self.tenantkit_session_path,
        )

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """A tenant connection (from the pool when ``OPTIONS["pool"]`` is set)."""
        if self.alias == pg_base.NO_DB_ALIAS:
            return super().get_new_connection(conn_params)
        if self.pool:
            connection = super().get_new_connection(conn_params)
        else:
            # Django calls Database.connect(); the same, with tenantkit's connection class.
            original: Any = pg_base.DatabaseWrapper.Database
            self.Database = _ConnectModule(original)
            try:
                connection = super().get_new_connection(conn_params)
            finally:
                del self.Database  # the class attribute again
            self._configure_tenancy(connection)
        # A connection that changes hands: temporary objects of the previous user go.
        _core.bind(connection, None)
        return connection

    def _close(self) -> None:
        if (
            self.connection is not None
            and self.pool
            and _core.is_tenant_connection(self.connection)
            and not self.connection.closed
        ):
            _core.bind(self.connection, None)
        super()._close()

    def create_cursor(self, name: str | None = None) -> Any:
        """Django's cursor; named cursors get the tenant-aware server-side class."""
        if name and _core.is_tenant_connection(self.connection):
            binding = self.settings_dict["OPTIONS"].get("server_side_binding") is True
            cls = NamedServerBindingCursor if binding else ServerSideCursor
            return cls(
                self.connection, name=name, scrollable=False, withhold=self.connection.autocommit
            )
        return super().create_cursor(name)


class _ConnectModule:
    """``psycopg`` as Django's ``Database``, whose ``connect()`` makes tenant connections."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return _core.TenantConnection.connect(*args, **kwargs)


def _clear_content_types() -> None:
    # django-tenants clears ContentType's cache on every switch: ids may differ per schema when
    # contenttypes is a tenant app. Only then is it needed.
    if "django.contrib.contenttypes" not in tenant_settings().tenant_apps:
        return
    try:
        from django.contrib.contenttypes.models import ContentType
    except Exception:  # contenttypes not installed
        return
    ContentType.objects.clear_cache()
