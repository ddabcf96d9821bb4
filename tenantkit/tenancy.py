"""``Tenancy``: the registry, tenant lifecycle and tenant-bound pooled connections (sync).

:class:`AsyncTenancy` (re-exported here) is the asyncio twin. Both are bound to a conninfo (a
``psycopg_pool`` pool is created when that package is installed, else one connection per use)
or to a pool you built with ``connection_class=TenantConnection``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from ._atenancy import AsyncSchemaProvisioner, AsyncTenancy
from ._connection import TenantConnection, _TenantState
from ._tenancy_base import _TenancyBase, check_alive, probe_error
from .errors import DomainNotFound, RegistryNotInstalled, TenantNotFound
from .models import Domain, Tenant, TenantLike, TenantState
from .names import normalize_host, schema_name_from, validate_schema_name
from .registry import domain_from_row, tenant_from_row, translated
from .schema import create_schema, drop_schema, list_schemas, rename_schema
from .search_path import _current

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

try:
    from psycopg_pool import PoolTimeout
except ImportError:  # optional dependency: without a pool there is no pool time-out

    class PoolTimeout(Exception):  # type: ignore[no-redef]
        """Stand-in: never raised without psycopg_pool."""


__all__ = [
    "AsyncSchemaProvisioner",
    "AsyncTenancy",
    "Provisioner",
    "SchemaProvisioner",
    "Tenancy",
]

logger = logging.getLogger("tenantkit")


class Provisioner(Protocol):
    """Builds a tenant's schema inside the creating transaction."""

    def provision(self, conn: psycopg.Connection[Any], schema: str) -> None:
        """Leave ``schema`` existing and fully migrated (do not commit)."""


class SchemaProvisioner:
    """The default provisioner: create the empty schema, nothing else."""

    def __init__(self, shared_schema: str = "public") -> None:
        self.shared_schema = shared_schema

    def provision(self, conn: psycopg.Connection[Any], schema: str) -> None:
        """Create ``schema`` on ``conn`` (inside the caller's transaction)."""
        create_schema(conn, schema, shared_schema=self.shared_schema)


def _end(conn: psycopg.Connection[Any], ok: bool) -> None:
    """Commit or roll back like ``with conn:``, then drop temporary objects if any."""
    if conn.closed:
        return
    if ok:
        conn.commit()
    else:
        try:
            conn.rollback()
        except Exception as exc:  # a broken connection: the pool replaces it
            logger.debug("rollback failed on %r: %s", conn, exc)
            return
    if conn.autocommit:  # psycopg_pool does not reset it for the next borrower
        conn.set_autocommit(False)


def _getconn(tenancy: Tenancy) -> psycopg.Connection[Any]:
    """A connection from the pool, or a direct one; connection failures say why, at once."""
    pool = tenancy.pool
    if pool is None:
        return TenantConnection.connect(tenancy.conninfo)
    if not tenancy._connected_once and tenancy.conninfo:
        # Before the first success, a pool would wait its whole timeout on a server that is
        # not there and then say only "PoolTimeout": one direct attempt shows the cause now.
        error = probe_error(tenancy.conninfo)
        if error is not None:
            raise error
    try:
        conn: psycopg.Connection[Any] = pool.getconn()
    except PoolTimeout as exc:
        error = probe_error(tenancy.conninfo) if tenancy.conninfo else None
        if error is not None:
            raise error from exc
        raise
    tenancy._connected_once = True
    return conn


class _Checkout:
    """``Tenancy.connection()``'s context manager: a class, as it is the per-request path."""

    __slots__ = ("_conn", "_path", "_tenancy", "_tenant", "_token")

    def __init__(self, tenancy: Tenancy, path: bytes, tenant: TenantLike | None) -> None:
        self._tenancy = tenancy
        self._path = path
        self._tenant = tenant
        self._token: Token[TenantLike | None] | None = None
        self._conn: psycopg.Connection[Any]

    def __enter__(self) -> psycopg.Connection[Any]:
        tenancy = self._tenancy
        if self._tenant is not None:
            self._token = _current.set(self._tenant)
        try:
            conn = _getconn(tenancy)
        except BaseException:
            if self._token is not None:
                _current.reset(self._token)
            raise
        state = conn  # narrowed below; `conn` keeps its psycopg type for the caller
        assert isinstance(state, _TenantState)
        if state._tk_neutral is not tenancy._neutral:
            tenancy._configure_conn(state)
        # A new borrower: the path rides on the first BEGIN, with a discard of any temporary
        # objects the previous borrower left.
        state._tk_bind(self._path)
        self._conn = conn
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        pool = self._tenancy.pool
        try:
            try:
                _end(conn, ok=exc_type is None)
            finally:
                if isinstance(conn, _TenantState) and not conn.closed:
                    conn._tk_bind(None)
                if pool is not None:
                    pool.putconn(conn)
                else:
                    conn.close()
        finally:
            if self._token is not None:
                _current.reset(self._token)


class Tenancy(_TenancyBase):
    """Schema-per-tenant multi-tenancy on one database (sync API).

    ``conninfo`` or ``pool`` (built with ``connection_class=TenantConnection``) say where;
    ``shared_schema`` holds the registry and shared tables; ``extra_schemas`` follow it on every
    path; ``pgbouncer=True`` keeps only transaction-scoped settings and state (required behind
    a transaction pooler: default mode refuses to run there, raising ``PoolerDetected``);
    ``strict=True`` makes statements on an unbound pooled connection raise
    ``NoTenantSelected``; ``migrations`` is the migrations directory (tenant creation then runs
    tenant migrations); ``prepared_statements`` turns psycopg's server-side prepared statements
    on or off (default: off in pgbouncer mode, where pgbouncer < 1.21 cannot route them).
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        pool: ConnectionPool[Any] | None = None,
        shared_schema: str = "public",
        extra_schemas: Iterable[str] = (),
        pgbouncer: bool = False,
        strict: bool = False,
        migrations: str | os.PathLike[str] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        prepared_statements: bool | None = None,
    ) -> None:
        super().__init__(
            shared_schema=shared_schema,
            extra_schemas=extra_schemas,
            pgbouncer=pgbouncer,
            strict=strict,
            migrations=migrations,
            prepared_statements=prepared_statements,
        )
        if (conninfo is None) == (pool is None):
            raise TypeError("Tenancy() takes a conninfo or pool=, exactly one of them")
        self._own_pool = False
        self._provisioner: Any = None
        self.pool: ConnectionPool[Any] | None = pool
        if pool is not None:
            if not issubclass(pool.connection_class, _TenantState):
                raise TypeError(
                    "the pool must create tenant connections: build it with "
                    "ConnectionPool(..., connection_class=tenantkit.TenantConnection)"
                )
            # A pool may take a callable conninfo; ours is only used without a pool.
            self.conninfo: str = pool.conninfo if isinstance(pool.conninfo, str) else ""
            return
        assert conninfo is not None
        self.conninfo = conninfo
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:  # optional: fall back to one connection per use
            return
        self.pool = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            connection_class=TenantConnection,
            configure=self._configure_conn,
            check=check_alive,
            name="tenantkit",
            open=True,
        )
        self._own_pool = True

    # -- provisioning -------------------------------------------------------------------
    @property
    def provisioner(self) -> Any:
        """Object with ``provision(conn, schema)``; called inside ``create_tenant``'s transaction.

        Default: :class:`SchemaProvisioner`, or ``tenantkit.provisioning.MigrationProvisioner``
        when a migrations directory is set. Assign your own to customise tenant creation.
        """
        if self._provisioner is None:
            if self.migrations_dir is not None:
                from .provisioning import MigrationProvisioner  # type: ignore[import-not-found,unused-ignore]

                self._provisioner = MigrationProvisioner(self)
            else:
                self._provisioner = SchemaProvisioner(self.shared_schema)
        return self._provisioner

    @provisioner.setter
    def provisioner(self, value: Any) -> None:
        self._provisioner = value

    # -- connections --------------------------------------------------------------------
    def connection(
        self, tenant: TenantLike | None = None
    ) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled connection bound to ``tenant`` (default: :func:`current_tenant`).

        The tenant's path is applied with the first transaction's ``BEGIN`` (no extra round
        trip, none at all when the connection already has it). On exit the transaction is
        committed (rolled back on error) and the connection returned to the pool. The tenant
        is also current (:func:`current_tenant`) inside the block.
        """
        tenant = self._pick(tenant)
        return _Checkout(self, self._path_for(tenant), tenant)

    def admin_connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled connection on the shared path (no tenant): registry and DDL work."""
        return _Checkout(self, self._neutral, None)

    # -- registry -----------------------------------------------------------------------
    def install(self) -> None:
        """Create the registry tables and triggers in the shared schema.

        Idempotent; concurrent calls (several processes deploying at once) serialise on an
        advisory transaction lock.
        """
        with self.admin_connection() as conn, conn.transaction():
            conn.execute(self.registry.install_lock)
            for stmt in self.registry.install:
                conn.execute(stmt)
        self._public = None

    def _fetch(self, conn: psycopg.Connection[Any], by: str, args: Any) -> Tenant:
        reg = self.registry
        if by == "schema" and args[0] == self.shared_schema:
            query, args = reg.select_public, ()
        else:
            query = {"schema": reg.select_by_schema, "id": reg.select_by_id}.get(
                by, reg.select_by_host
            )
        with translated():
            row = conn.execute(query, args).fetchone()
        if row is None:
            raise TenantNotFound(self._not_found(by, args))
        return tenant_from_row(row)

    def get_tenant(
        self, schema: str | None = None, *, id: int | None = None, host: str | None = None
    ) -> Tenant:
        """The tenant with that schema name, id or host (``TenantNotFound`` otherwise)."""
        by, args = self._lookup_args(schema, id, host)
        with self.admin_connection() as conn:
            return self._fetch(conn, by, args)

    def _resolve(self, conn: psycopg.Connection[Any], tenant: TenantLike) -> Tenant:
        return self._fetch(conn, "schema", (self._schema_arg(tenant),))

    @property
    def public_tenant(self) -> Tenant:
        """The shared schema as a tenant (``is_public=True``), for routing public hosts."""
        if self._public is None:
            try:
                self._public = self.get_tenant(self.shared_schema)
            except TenantNotFound as exc:
                raise RegistryNotInstalled(
                    "the public tenant row is missing: call Tenancy.install()"
                ) from exc
        return self._public

    def tenants(
        self, *, state: TenantState | str | None = None, include_public: bool = False
    ) -> list[Tenant]:
        """Registered tenants by id, optionally only those in ``state``.

        The public tenant is left out unless ``include_public`` (so loops over tenants, such
        as migrations, never touch the shared schema by accident).
        """
        params = {"state": self._state_arg(state), "public": include_public}
        with self.admin_connection() as conn, translated():
            rows = conn.execute(self.registry.select_all, params).fetchall()
        return [tenant_from_row(r) for r in rows]

    def create_tenant(
        self,
        schema: str | None = None,
        *,
        name: str | None = None,
        domains: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Tenant:
        """Create a tenant: registry row, schema (via the provisioner) and domains, atomically.

        Everything happens in one transaction, so an error or a lost connection at any step
        leaves nothing behind. Without ``schema`` one is derived from ``name``. The first
        domain becomes the primary one. Raises ``TenantExists``, ``SchemaExists``,
        ``DomainExists``, ``InvalidSchemaName`` or ``InvalidHostname``.
        """
        if schema is None and name is None:
            raise TypeError("create_tenant() needs a schema name or a display name=")
        return self._create(schema, name, domains, metadata, self.provisioner)

    def clone_tenant(
        self,
        source: TenantLike,
        schema: str,
        *,
        data: bool = False,
        name: str | None = None,
        domains: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Tenant:
        """Create tenant ``schema`` as a copy of tenant ``source``: same tables, indexes,
        constraints, views, functions and migration history; its rows too with ``data``.

        Atomic like :meth:`create_tenant` (registry rows, schema and domains in one
        transaction). The source's domains and metadata are not copied: give ``domains`` and
        ``metadata`` for the new tenant; ``name`` defaults to the schema name. Raises
        ``TenantNotFound`` for an unknown source, ``CloneError`` for structures cloning
        cannot reproduce (partitioned tables), and what :meth:`create_tenant` raises.
        """
        from .provisioning import CloneProvisioner

        validate_schema_name(schema, shared_schema=self.shared_schema)
        with self.admin_connection() as conn:
            origin = self._resolve(conn, source)
        self._not_public(origin, "cloned")
        cloner = CloneProvisioner(self.shared_schema, origin.schema, data=data)
        return self._create(schema, name, domains, metadata, cloner)

    def _create(
        self,
        schema: str | None,
        name: str | None,
        domains: Iterable[str],
        metadata: Mapping[str, Any] | None,
        provisioner: Any,
    ) -> Tenant:
        if schema is not None:
            validate_schema_name(schema, shared_schema=self.shared_schema)
        hosts = self._hosts(domains)  # validated before any SQL
        reg = self.registry
        with self.admin_connection() as conn, translated(schema=schema), conn.transaction():
            if schema is None:
                assert name is not None
                schema = schema_name_from(
                    name, taken=set(list_schemas(conn)), shared_schema=self.shared_schema
                )
            row = conn.execute(reg.insert, self._create_args(schema, name, metadata))
            tenant = tenant_from_row(row.fetchone() or ())
            provisioner.provision(conn, schema)
            for host in hosts:
                args = {"host": host, "tid": tenant.id, "primary": False, "schema": schema}
                with translated(host=host):
                    conn.execute(reg.insert_domain, args)
            row = conn.execute(reg.set_state, (TenantState.ACTIVE.value, tenant.id))
            return tenant_from_row(row.fetchone() or ())

    def rename_tenant(self, tenant: TenantLike, new_schema: str) -> Tenant:
        """Rename a tenant's schema (registry and schema together)."""
        validate_schema_name(new_schema, shared_schema=self.shared_schema)
        with (
            self.admin_connection() as conn,
            translated(schema=new_schema),
            conn.transaction(),
        ):
            current = self._resolve(conn, tenant)
            self._not_public(current, "renamed")
            row = conn.execute(self.registry.rename, (new_schema, current.id)).fetchone()
            rename_schema(conn, current.schema, new_schema, shared_schema=self.shared_schema)
            if self._has_migration_state(conn):
                conn.execute(self.registry.rename_migrations, (new_schema, current.schema))
            return tenant_from_row(row or ())

    def _has_migration_state(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(self.registry.has_migration_state).fetchone()
        return bool(row and row[0])

    def drop_tenant(self, tenant: TenantLike, *, cascade: bool = False) -> None:
        """Drop a tenant: its schema, domains and registry row, atomically.

        ``SchemaNotEmpty`` when the schema holds objects and ``cascade`` is false.
        """
        with self.admin_connection() as conn, translated(), conn.transaction():
            current = self._resolve(conn, tenant)
            self._not_public(current, "dropped")
            drop_schema(
                conn,
                current.schema,
                cascade=cascade,
                missing_ok=True,
                shared_schema=self.shared_schema,
            )
            if self._has_migration_state(conn):
                conn.execute(self.registry.forget_migrations, (current.schema,))
            conn.execute(self.registry.delete, (current.id,))

    def add_domain(self, tenant: TenantLike, host: str, *, primary: bool = False) -> Domain:
        """Register ``host`` (normalised) for a tenant; the first domain becomes primary."""
        host = normalize_host(host)
        reg = self.registry
        with self.admin_connection() as conn, translated(host=host), conn.transaction():
            current = self._resolve(conn, tenant)
            if primary:
                conn.execute(reg.unset_primary, (current.id,))
            args = {
                "host": host,
                "tid": current.id,
                "primary": primary,
                "schema": current.schema,
            }
            return domain_from_row(conn.execute(reg.insert_domain, args).fetchone() or ())

    def remove_domain(self, host: str) -> None:
        """Unregister ``host`` (``DomainNotFound`` if it is not registered)."""
        host = normalize_host(host)
        with self.admin_connection() as conn, translated():
            if conn.execute(self.registry.delete_domain, (host,)).fetchone() is None:
                raise DomainNotFound(f"host {host!r} is not registered; see domains()")

    def set_primary_domain(self, host: str) -> Domain:
        """Make ``host`` its tenant's primary domain (the previous one stays, not primary)."""
        host = normalize_host(host)
        reg = self.registry
        with self.admin_connection() as conn, translated(host=host), conn.transaction():
            row = conn.execute(reg.select_domain, (host,)).fetchone()
            if row is None:
                raise DomainNotFound(f"host {host!r} is not registered; add_domain() it")
            conn.execute(reg.unset_primary, (row[1],))
            conn.execute(reg.set_primary, (host,))
        return Domain(host=row[0], tenant_id=int(row[1]), schema=row[2], is_primary=True)

    def domains(self, tenant: TenantLike | None = None) -> list[Domain]:
        """Domains of one tenant, or of all tenants (primary first)."""
        with self.admin_connection() as conn, translated():
            tid = None if tenant is None else self._resolve(conn, tenant).id
            rows = conn.execute(self.registry.select_domains, {"tid": tid}).fetchall()
        return [domain_from_row(r) for r in rows]

    def domain_map(self) -> dict[str, Tenant]:
        """Every registered host of an active tenant -> its tenant, in one query (routing)."""
        with self.admin_connection() as conn, translated():
            rows = conn.execute(self.registry.domain_map).fetchall()
        by_id: dict[int, Tenant] = {}
        result: dict[str, Tenant] = {}
        for row in rows:
            tenant = by_id.get(row[1]) or by_id.setdefault(row[1], tenant_from_row(row[1:]))
            result[row[0]] = tenant
        return result

    # -- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the pool this tenancy created (a pool passed in is left to its owner)."""
        if self._own_pool and self.pool is not None:
            self.pool.close()

    def __enter__(self) -> Tenancy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Tenancy shared_schema={self.shared_schema!r} pgbouncer={self.pgbouncer}>"
