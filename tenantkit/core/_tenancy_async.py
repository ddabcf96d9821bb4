"""``AsyncTenancy``: the registry, tenant lifecycle and tenant-bound pooled connections.

One source for both APIs: the asyncio module of this pair is written by hand, and
``tools/async_to_sync.py`` generates the sync one from it (CI fails when it is stale). Where
the two must differ, an ``if True:  # ASYNC`` block holds the asyncio code and its ``else``
branch the sync code. Import both classes from :mod:`tenantkit.core.tenancy`.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..errors import (
    DomainNotFound,
    InvalidSchemaName,
    RegistryNotInstalled,
    TenantkitError,
    TenantNotFound,
)
from ._connection import AsyncTenantConnection, _TenantState
from ._tenancy_base import _TenancyBase, acheck_alive, aprobe_error
from .context import _current
from .models import Domain, RetiredSchema, Tenant, TenantLike, TenantState
from .names import normalize_host, schema_name_from, validate_schema_name
from .schema import acreate_schema, adrop_schema, alist_schemas, arename_schema
from .storage import (
    RETIRED_PREFIX,
    domain_from_row,
    retire_statement,
    tenant_from_row,
    translated,
)

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from ..migrations import MigrationSource

try:
    from psycopg_pool import PoolTimeout
except ImportError:  # optional dependency: without a pool there is no pool time-out

    class PoolTimeout(Exception):  # type: ignore[no-redef]
        """Stand-in: never raised without psycopg_pool."""


__all__ = ["AsyncProvisioner", "AsyncSchemaProvisioner", "AsyncTenancy"]

logger = logging.getLogger("tenantkit")


class AsyncProvisioner(Protocol):
    """Builds a tenant's schema inside the creating transaction."""

    async def provision(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        """Leave ``schema`` existing and fully migrated (do not commit)."""


class AsyncSchemaProvisioner:
    """The default provisioner: create the empty schema, nothing else."""

    def __init__(self, shared_schema: str = "public") -> None:
        self.shared_schema = shared_schema

    async def provision(self, conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        """Create ``schema`` on ``conn`` (inside the caller's transaction)."""
        await acreate_schema(conn, schema, shared_schema=self.shared_schema)


async def _aend(conn: psycopg.AsyncConnection[Any], ok: bool) -> None:
    """Commit or roll back like ``with conn:``; leave autocommit off for the next borrower."""
    if conn.closed:
        return
    if ok:
        await conn.commit()
    else:
        try:
            await conn.rollback()
        except Exception as exc:  # a broken connection: the pool replaces it
            logger.debug("rollback failed on %r: %s", conn, exc)
            return
    if conn.autocommit:  # psycopg_pool does not reset it for the next borrower
        await conn.set_autocommit(False)


async def _agetconn(tenancy: AsyncTenancy) -> psycopg.AsyncConnection[Any]:
    """A connection from the pool, or a direct one; connection failures say why, at once."""
    pool = tenancy.pool
    if pool is None:
        return await AsyncTenantConnection.connect(tenancy.conninfo)
    if not tenancy._connected_once and tenancy.conninfo:
        # Before the first success, a pool would wait its whole timeout on a server that is
        # not there and then say only "PoolTimeout": one direct attempt shows the cause now.
        error = await aprobe_error(tenancy.conninfo)
        if error is not None:
            raise error
    if not tenancy._opened:
        await tenancy.open()
    try:
        conn: psycopg.AsyncConnection[Any] = await pool.getconn()
    except PoolTimeout as exc:
        error = await aprobe_error(tenancy.conninfo) if tenancy.conninfo else None
        if error is not None:
            raise error from exc
        raise
    tenancy._connected_once = True
    return conn


class _ACheckout:
    """``AsyncTenancy.connection()``'s context manager: a class, as it is the per-request path."""

    __slots__ = ("_conn", "_path", "_tenancy", "_tenant", "_token")

    def __init__(self, tenancy: AsyncTenancy, path: bytes, tenant: TenantLike | None) -> None:
        self._tenancy = tenancy
        self._path = path
        self._tenant = tenant
        self._token: Token[TenantLike | None] | None = None
        self._conn: psycopg.AsyncConnection[Any]

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        tenancy = self._tenancy
        if self._tenant is not None:
            self._token = _current.set(self._tenant)
        try:
            conn = await _agetconn(tenancy)
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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        pool = self._tenancy.pool
        try:
            try:
                await _aend(conn, ok=exc_type is None)
            finally:
                if isinstance(conn, _TenantState) and not conn.closed:
                    conn._tk_bind(None)
                if pool is not None:
                    await pool.putconn(conn)
                else:
                    await conn.close()
        finally:
            if self._token is not None:
                _current.reset(self._token)


class AsyncTenancy(_TenancyBase):
    """Schema-per-tenant multi-tenancy on one database (asyncio API; ``Tenancy`` is sync).

    ``conninfo`` or ``pool`` (built with ``connection_class=AsyncTenantConnection``) say where;
    ``shared_schema`` holds the registry and shared tables; ``extra_schemas`` follow it on every
    path; ``pgbouncer=True`` keeps only transaction-scoped settings and state (required behind a
    transaction pooler: default mode refuses to run there, raising ``PoolerDetected``);
    ``strict=True`` makes statements on an unbound pooled connection raise ``NoTenantSelected``;
    ``migrations`` is the migrations directory, or a migration source
    (``tenantkit.alembic.AlembicSource``...): tenant creation then brings each new tenant to the
    head, and ``migrate()`` / ``plan()`` use it; ``prepared_statements`` turns psycopg's server-side
    prepared statements on or off (default: off in pgbouncer mode, where pgbouncer < 1.21 cannot
    route them).
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        pool: AsyncConnectionPool[Any] | None = None,
        shared_schema: str = "public",
        extra_schemas: Iterable[str] = (),
        pgbouncer: bool = False,
        strict: bool = False,
        migrations: str | os.PathLike[str] | MigrationSource | None = None,
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
            raise TypeError("AsyncTenancy() takes a conninfo or pool=, exactly one of them")
        self._own_pool = False
        self._opened = False
        self._provisioner: AsyncProvisioner | None = None
        self.pool: AsyncConnectionPool[Any] | None = pool
        if pool is not None:
            if not issubclass(pool.connection_class, _TenantState):
                raise TypeError(
                    "the pool must create tenant connections: build it with "
                    "AsyncConnectionPool(..., connection_class=tenantkit.AsyncTenantConnection)"
                )
            # A pool may take a callable conninfo; ours is only used without a pool.
            self.conninfo: str = pool.conninfo if isinstance(pool.conninfo, str) else ""
            self._opened = True
            return
        assert conninfo is not None
        self.conninfo = conninfo
        try:
            from psycopg_pool import AsyncConnectionPool
        except ImportError:  # optional: fall back to one connection per use
            return

        if True:  # ASYNC
            # psycopg_pool's async pool needs a running loop to open: it opens on first use.
            async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
                assert isinstance(conn, _TenantState)
                self._configure_conn(conn)

            open_now, name = False, "tenantkit-async"
        else:
            configure = self._configure_conn
            open_now, name = True, "tenantkit"
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            connection_class=AsyncTenantConnection,
            configure=configure,
            check=acheck_alive,
            name=name,
            open=open_now,
        )
        self._opened = open_now
        self._own_pool = True

    # -- provisioning -------------------------------------------------------------------
    @property
    def provisioner(self) -> AsyncProvisioner:
        """Object with ``provision(conn, schema)``; called inside ``create_tenant``'s transaction.

        Default: :class:`AsyncSchemaProvisioner`, or
        ``tenantkit.provisioning.MigrationProvisioner`` when migrations (a directory or a source)
        are set.
        Assign your own to customise tenant creation.
        """
        if self._provisioner is None:
            if self.migrations_dir is not None or self.migration_source is not None:
                from ..provisioning.provisioners import MigrationProvisioner  # type: ignore[import-not-found,unused-ignore]

                self._provisioner = MigrationProvisioner(self)
            else:
                self._provisioner = AsyncSchemaProvisioner(self.shared_schema)
        return self._provisioner

    @provisioner.setter
    def provisioner(self, value: AsyncProvisioner) -> None:
        self._provisioner = value

    # -- connections --------------------------------------------------------------------
    async def open(self) -> None:
        """Open the pool (done automatically on first use)."""
        if not self._opened and self.pool is not None:
            await self.pool.open()
        self._opened = True

    def connection(
        self, tenant: TenantLike | None = None
    ) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A pooled connection bound to ``tenant`` (default: :func:`current_tenant`).

        The tenant's path is applied with each transaction's ``BEGIN`` (same message, no extra
        round trip). On exit the transaction is committed (rolled back on error) and the
        connection returned to the pool. The tenant is also current (:func:`current_tenant`)
        inside the block.
        """
        tenant = self._pick(tenant)
        return _ACheckout(self, self._path_for(tenant), tenant)

    def admin_connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A pooled connection on the shared path (no tenant): registry and DDL work."""
        return _ACheckout(self, self._neutral, None)

    # -- registry -----------------------------------------------------------------------
    async def install(self) -> None:
        """Create the registry tables and triggers in the shared schema.

        Idempotent; concurrent calls (several processes deploying at once) serialise on an
        advisory transaction lock. Loads :attr:`public_tenant`.
        """
        async with self.admin_connection() as conn, conn.transaction():
            await conn.execute(self.registry.install_lock)
            for stmt in self.registry.install:
                await conn.execute(stmt)
        self._public = None
        await self.get_public_tenant()

    async def _fetch(self, conn: psycopg.AsyncConnection[Any], by: str, args: Any) -> Tenant:
        reg = self.registry
        if by == "schema" and args[0] == self.shared_schema:
            query, args = reg.select_public, ()
        else:
            query = {"schema": reg.select_by_schema, "id": reg.select_by_id}.get(
                by, reg.select_by_host
            )
        with translated():
            row = await (await conn.execute(query, args)).fetchone()
        if row is None:
            raise TenantNotFound(self._not_found(by, args))
        return tenant_from_row(row)

    async def _resolve(self, conn: psycopg.AsyncConnection[Any], tenant: TenantLike) -> Tenant:
        return await self._fetch(conn, "schema", (self._schema_arg(tenant),))

    async def get_tenant(
        self, schema: str | None = None, *, id: int | None = None, host: str | None = None
    ) -> Tenant:
        """The tenant with that schema name, id or host (``TenantNotFound`` otherwise)."""
        by, args = self._lookup_args(schema, id, host)
        async with self.admin_connection() as conn:
            return await self._fetch(conn, by, args)

    async def get_public_tenant(self) -> Tenant:
        """Fetch (and cache) the public tenant; see :attr:`public_tenant`."""
        try:
            self._public = await self.get_tenant(self.shared_schema)
        except TenantNotFound as exc:
            raise RegistryNotInstalled("the public tenant row is missing: call install()") from exc
        return self._public

    @property
    def public_tenant(self) -> Tenant:
        """The shared schema as a tenant (``is_public=True``), for routing public hosts.

        Loaded by ``install()`` or ``get_public_tenant()``; the sync API also loads it on
        first access (a property cannot wait for the database in async code).
        """
        if self._public is None:
            if True:  # ASYNC
                raise RegistryNotInstalled(
                    "the public tenant is not loaded yet: await install() or get_public_tenant()"
                )
            else:
                return self.get_public_tenant()
        return self._public

    async def tenants(
        self, *, state: TenantState | str | None = None, include_public: bool = False
    ) -> list[Tenant]:
        """Registered tenants by id, optionally only those in ``state``.

        The public tenant is left out unless ``include_public`` (so loops over tenants, such
        as migrations, never touch the shared schema by accident).
        """
        params = {"state": self._state_arg(state), "public": include_public}
        async with self.admin_connection() as conn:
            with translated():
                rows = await (await conn.execute(self.registry.select_all, params)).fetchall()
        return [tenant_from_row(r) for r in rows]

    async def create_tenant(
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
        return await self._create(schema, name, domains, metadata, self.provisioner)

    if True:  # ASYNC
        pass
    else:

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
            transaction). The source's domains and metadata are not copied: give ``domains``
            and ``metadata`` for the new tenant; ``name`` defaults to the schema name. Raises
            ``TenantNotFound`` for an unknown source, ``CloneError`` for structures cloning
            cannot reproduce (partitioned tables), and what :meth:`create_tenant` raises.
            """
            from ..provisioning.provisioners import CloneProvisioner

            validate_schema_name(schema, shared_schema=self.shared_schema)
            with self.admin_connection() as conn:
                origin = self._resolve(conn, source)
            self._not_public(origin, "cloned")
            cloner = CloneProvisioner(self.shared_schema, origin.schema, data=data)
            return self._create(schema, name, domains, metadata, cloner)

    async def _create(
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
        async with self.admin_connection() as conn:
            with translated(schema=schema):
                async with conn.transaction():
                    if schema is None:
                        assert name is not None
                        taken = set(await alist_schemas(conn))
                        schema = schema_name_from(
                            name, taken=taken, shared_schema=self.shared_schema
                        )
                    cur = await conn.execute(reg.insert, self._create_args(schema, name, metadata))
                    tenant = tenant_from_row(await cur.fetchone() or ())
                    if True:  # ASYNC
                        done = provisioner.provision(conn, schema)
                        if inspect.isawaitable(done):  # sync provisioners are welcome too
                            await done
                    else:
                        provisioner.provision(conn, schema)
                    for host in hosts:
                        args = {"host": host, "tid": tenant.id, "primary": False, "schema": schema}
                        with translated(host=host):
                            await conn.execute(reg.insert_domain, args)
                    cur = await conn.execute(reg.set_state, (TenantState.ACTIVE.value, tenant.id))
                    return tenant_from_row(await cur.fetchone() or ())

    async def rename_tenant(self, tenant: TenantLike, new_schema: str) -> Tenant:
        """Rename a tenant's schema (registry and schema together)."""
        validate_schema_name(new_schema, shared_schema=self.shared_schema)
        async with self.admin_connection() as conn:
            with translated(schema=new_schema):
                async with conn.transaction():
                    current = await self._resolve(conn, tenant)
                    self._not_public(current, "renamed")
                    cur = await conn.execute(self.registry.rename, (new_schema, current.id))
                    row = await cur.fetchone()
                    await arename_schema(
                        conn, current.schema, new_schema, shared_schema=self.shared_schema
                    )
                    if await self._has_migration_state(conn):
                        await conn.execute(
                            self.registry.rename_migrations, (new_schema, current.schema)
                        )
                    return tenant_from_row(row or ())

    async def _has_migration_state(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        cur = await conn.execute(self.registry.has_migration_state)
        row = await cur.fetchone()
        return bool(row and row[0])

    async def drop_tenant(self, tenant: TenantLike, *, cascade: bool = False) -> None:
        """Drop a tenant: its schema, domains and registry row, atomically.

        ``SchemaNotEmpty`` when the schema holds objects and ``cascade`` is false.
        """
        async with self.admin_connection() as conn:
            with translated():
                async with conn.transaction():
                    current = await self._resolve(conn, tenant)
                    self._not_public(current, "dropped")
                    await adrop_schema(
                        conn,
                        current.schema,
                        cascade=cascade,
                        missing_ok=True,
                        shared_schema=self.shared_schema,
                    )
                    if await self._has_migration_state(conn):
                        await conn.execute(self.registry.forget_migrations, (current.schema,))
                    await conn.execute(self.registry.delete, (current.id,))

    async def retire_tenant(
        self, tenant: TenantLike, *, lock_timeout: float | None = None
    ) -> RetiredSchema:
        """Unregister a tenant and keep its schema, tables intact, under a new reserved name.

        In one transaction the registry row and the domains are deleted (routers are notified
        as for a drop) and the schema is renamed to ``RETIRED_PREFIX`` + random hex, taking
        its migration state along; the schema name and the hosts are free again at once, and
        nothing is dropped (dropping a large schema is the slow part of a drop). Then hand the
        schema to ``Spares.adopt()`` to reuse it, or to :meth:`drop_retired`.

        ``lock_timeout`` (seconds) bounds the wait for locks another connection holds on the
        tenant (``psycopg.errors.LockNotAvailable`` after it); by default it waits. Raises
        ``TenantNotFound`` for an unknown tenant.
        """
        schema = self._schema_arg(tenant)
        timeout = None if lock_timeout is None else f"{max(1, round(lock_timeout * 1000))}ms"
        new_schema = RETIRED_PREFIX + secrets.token_hex(8)
        async with self.admin_connection() as conn:
            with translated():
                async with conn.transaction():
                    params = {"schema": schema, "timeout": timeout}
                    cur = await conn.execute(self.registry.retire_lock, params)
                    row = await cur.fetchone()
                    if row is None:
                        raise TenantNotFound(self._not_found("schema", (schema,)))
                    tenant_id, oid, is_public, has_state = row
                    if is_public:
                        raise TenantkitError(
                            f"the public tenant (shared schema {schema!r}) cannot be retired"
                        )
                    await conn.execute(
                        retire_statement(
                            self.shared_schema,
                            int(tenant_id),
                            schema,
                            new_schema,
                            move_state=bool(has_state),
                        )
                    )
        return RetiredSchema(schema=new_schema, oid=int(oid))

    async def drop_retired(self, schema: str, *, lock_timeout: float | None = None) -> None:
        """Drop a schema :meth:`retire_tenant` left, with its migration state; atomic.

        A schema already gone is fine. ``InvalidSchemaName`` for a name that is not a retired
        schema's (this never drops a tenant: use :meth:`drop_tenant` for those).
        ``lock_timeout`` as for :meth:`retire_tenant`.
        """
        if not schema.startswith(RETIRED_PREFIX):
            raise InvalidSchemaName(
                schema,
                f"not a retired schema (those start with {RETIRED_PREFIX!r}); "
                "drop tenants with drop_tenant()",
            )
        async with self.admin_connection() as conn:
            with translated():
                async with conn.transaction():
                    if lock_timeout is not None:
                        await conn.execute(
                            "SELECT pg_catalog.set_config('lock_timeout', %s, true)",
                            (f"{max(1, round(lock_timeout * 1000))}ms",),
                        )
                    await conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                    )
                    if await self._has_migration_state(conn):
                        await conn.execute(self.registry.forget_migrations, (schema,))

    async def update_metadata(self, tenant: TenantLike, changes: Mapping[str, Any]) -> Tenant:
        """Merge ``changes`` into a tenant's metadata (top-level keys replaced); the new tenant."""
        async with self.admin_connection() as conn:
            with translated():
                async with conn.transaction():
                    current = await self._resolve(conn, tenant)
                    cur = await conn.execute(
                        self.registry.merge_metadata, (Jsonb(dict(changes)), current.id)
                    )
                    return tenant_from_row(await cur.fetchone() or ())

    async def add_domain(self, tenant: TenantLike, host: str, *, primary: bool = False) -> Domain:
        """Register ``host`` (normalised) for a tenant; the first domain becomes primary."""
        host = normalize_host(host)
        reg = self.registry
        async with self.admin_connection() as conn:
            with translated(host=host):
                async with conn.transaction():
                    current = await self._resolve(conn, tenant)
                    if primary:
                        await conn.execute(reg.unset_primary, (current.id,))
                    args = {
                        "host": host,
                        "tid": current.id,
                        "primary": primary,
                        "schema": current.schema,
                    }
                    cur = await conn.execute(reg.insert_domain, args)
                    return domain_from_row(await cur.fetchone() or ())

    async def remove_domain(self, host: str) -> None:
        """Unregister ``host`` (``DomainNotFound`` if it is not registered)."""
        host = normalize_host(host)
        async with self.admin_connection() as conn:
            with translated():
                cur = await conn.execute(self.registry.delete_domain, (host,))
                if await cur.fetchone() is None:
                    raise DomainNotFound(f"host {host!r} is not registered; see domains()")

    async def set_primary_domain(self, host: str) -> Domain:
        """Make ``host`` its tenant's primary domain (the previous one stays, not primary)."""
        host = normalize_host(host)
        reg = self.registry
        async with self.admin_connection() as conn:
            with translated(host=host):
                async with conn.transaction():
                    row = await (await conn.execute(reg.select_domain, (host,))).fetchone()
                    if row is None:
                        raise DomainNotFound(
                            f"host {host!r} is not registered; register it with add_domain()"
                        )
                    await conn.execute(reg.unset_primary, (row[1],))
                    await conn.execute(reg.set_primary, (host,))
        return Domain(host=row[0], tenant_id=int(row[1]), schema=row[2], is_primary=True)

    async def domains(self, tenant: TenantLike | None = None) -> list[Domain]:
        """Domains of one tenant, or of all tenants (primary first)."""
        async with self.admin_connection() as conn:
            with translated():
                tid = None if tenant is None else (await self._resolve(conn, tenant)).id
                cur = await conn.execute(self.registry.select_domains, {"tid": tid})
                rows = await cur.fetchall()
        return [domain_from_row(r) for r in rows]

    async def domain_map(self) -> dict[str, Tenant]:
        """Every registered host of an active tenant -> its tenant, in one query (routing)."""
        async with self.admin_connection() as conn:
            with translated():
                rows = await (await conn.execute(self.registry.domain_map)).fetchall()
        return self._fold_domain_map(rows)

    # -- lifetime -----------------------------------------------------------------------
    async def close(self) -> None:
        """Close the pool this tenancy created (a pool passed in is left to its owner)."""
        if self._own_pool and self.pool is not None and self._opened:
            await self.pool.close()

    async def __aenter__(self) -> AsyncTenancy:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncTenancy shared_schema={self.shared_schema!r} pgbouncer={self.pgbouncer}>"
