"""Configuration and pure helpers shared by ``Tenancy`` and ``AsyncTenancy``."""

from __future__ import annotations

import os
import select
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from ..errors import DomainExists, NoTenantSelected, TenantkitError
from ._connection import _TenantState
from .context import current_tenant, path_sql, search_path_for
from .models import Tenant, TenantLike, TenantState, schema_of
from .names import normalize_host, validate_schema_name
from .storage import Registry, tenant_from_row

if TYPE_CHECKING:
    from ..introspection.catalog import DriftReport
    from ..migrations import ExecutorName, MigrationReport, MigrationSource, Plan, ProgressEvent
    from ..provisioning.provisioners import Spares


def _check_shared(name: str) -> str:
    # The shared schema may be "public" (the default); anything else must be a valid name.
    return name if name == "public" else validate_schema_name(name)


def _state_of(conn: psycopg.BaseConnection[Any]) -> _TenantState:
    if not isinstance(conn, _TenantState):
        raise TypeError(
            f"{type(conn).__name__} is not a tenant connection: create it as "
            "tenantkit.TenantConnection / AsyncTenantConnection (e.g. connection_class=)"
        )
    return conn


def check_alive(conn: psycopg.BaseConnection[Any]) -> None:
    """Pool ``check`` that costs no round trip: a connection the server closed is refused.

    A server restart or ``pg_terminate_backend()`` leaves an error message and EOF on the
    socket; the socket is then readable, so reading what is there (non-blocking) tells a dead
    connection from a live one. psycopg_pool discards a connection whose check raises and hands
    out another, so the first request after a restart does not fail.
    """
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK or conn.closed:
        raise psycopg.OperationalError("the pooled connection is closed")
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        # An idle connection has nothing to read unless the server spoke: a notice, a
        # notification, or a FATAL error followed by EOF. libpq may take the error and the EOF
        # in two reads, so read until nothing is left (a few times at most).
        for _ in range(4):
            if not poller.poll(0):
                break
            pgconn.consume_input()  # raises OperationalError on EOF
            if pgconn.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("the server closed the pooled connection")
    except (OSError, ValueError) as exc:  # a socket gone from under us
        msg = f"the pooled connection's socket is unusable: {exc}"
        raise psycopg.OperationalError(msg) from exc


async def acheck_alive(conn: psycopg.AsyncConnection[Any]) -> None:
    """Async twin of :func:`check_alive` (the check itself never blocks)."""
    check_alive(conn)


def probe_error(conninfo: str) -> psycopg.OperationalError | None:
    """Connect once, directly, to learn why the pool cannot: the real error, or None."""
    try:
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        return exc
    return None


async def aprobe_error(conninfo: str) -> psycopg.OperationalError | None:
    """Async twin of :func:`probe_error`."""
    try:
        async with await psycopg.AsyncConnection.connect(conninfo, connect_timeout=10) as conn:
            await conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        return exc
    return None


class _TenancyBase:
    """Settings and validation; no I/O."""

    def __init__(
        self,
        *,
        shared_schema: str,
        extra_schemas: Iterable[str],
        pgbouncer: bool,
        strict: bool,
        migrations: str | os.PathLike[str] | MigrationSource | None,
        prepared_statements: bool | None = None,
    ) -> None:
        self.shared_schema = _check_shared(shared_schema)
        self.extra_schemas: tuple[str, ...] = tuple(_check_shared(s) for s in extra_schemas)
        self.pgbouncer = pgbouncer
        #: Server-side prepared statements: None means off in pgbouncer mode, on otherwise.
        self.prepared_statements = prepared_statements
        self.strict = strict
        #: A checkout succeeded once: later pool time-outs are reported with a fresh probe.
        self._connected_once = False
        #: The tenant migrations: a directory of tenantkit's own files, or a migration source
        #: (``tenantkit.alembic.AlembicSource``, ``tenantkit.django``'s Django migrations...).
        self.migrations_dir: Path | None = None
        self.migration_source: MigrationSource | None = None
        if isinstance(migrations, (str, os.PathLike)):
            self.migrations_dir = Path(migrations)
        elif migrations is not None:
            from ..migrations import MigrationSource

            if not isinstance(migrations, MigrationSource):
                raise TypeError(
                    "migrations must be a directory or a migration source (load(), "
                    f"after_schema(), tenant_schemas), not {type(migrations).__name__}"
                )
            self.migration_source = migrations
        self.registry = Registry(self.shared_schema)
        self._base = (self.shared_schema, *self.extra_schemas)
        self._neutral = path_sql(
            search_path_for(
                None, shared_schema=self.shared_schema, extra_schemas=self.extra_schemas
            )
        )
        self._public: Tenant | None = None
        self._paths: dict[str, bytes] = {}
        self._spares: Spares | None = None

    def configure_connection(self, conn: psycopg.BaseConnection[Any]) -> None:
        """Configure a tenant connection made outside this tenancy's pool like its own.

        For integrations that own their connections (an ORM's pool, a framework's database
        backend): ``conn`` must be a :class:`~tenantkit.TenantConnection` or
        :class:`~tenantkit.AsyncTenantConnection`. It gets the tenancy's shared schema, extras,
        strict mode, pgbouncer mode and prepared-statement policy, and is bound to the shared
        path (no tenant) until :meth:`bind_connection`. No I/O.
        """
        self._configure_conn(_state_of(conn))
        _state_of(conn)._tk_bind(self._neutral)

    def bind_connection(self, conn: psycopg.BaseConnection[Any], tenant: TenantLike | None) -> None:
        """Bind a configured tenant connection to ``tenant`` from its next transaction on.

        The path rides on that transaction's ``BEGIN`` (no round trip now), and the first
        transaction after the bind discards temporary objects made before it, as for a change
        of hands. ``None`` unbinds: a strict tenancy's connection then refuses statements
        (``NoTenantSelected``), another one runs on the shared path. Inside a transaction the
        new path applies from the next statement. Validates ``tenant`` (``InvalidSchemaName``).
        """
        _state_of(conn)._tk_bind(None if tenant is None else self._path_for(tenant))

    def _configure_conn(self, conn: _TenantState) -> None:
        conn._tk_configure(
            self._neutral,
            self._base,
            strict=self.strict,
            pgbouncer=self.pgbouncer,
            prepare=self.prepared_statements,
        )

    def _path_for(self, tenant: TenantLike) -> bytes:
        """The path SQL for a tenant; the shared schema's name means the public tenant."""
        # Cached per schema: validation and quoting are done once per tenant, not per request.
        cached = self._paths.get(tenant.schema if isinstance(tenant, Tenant) else tenant)
        if cached is not None:
            return cached
        if len(self._paths) > 100_000:
            self._paths.clear()
        path = self._compute_path(tenant)
        self._paths[schema_of(tenant)] = path
        return path

    def _compute_path(self, tenant: TenantLike) -> bytes:
        if isinstance(tenant, Tenant):
            schema = tenant.schema
        else:
            schema = schema_of(tenant)
            if schema != self.shared_schema:
                validate_schema_name(schema, shared_schema=self.shared_schema)
        if schema == self.shared_schema:
            return self._neutral
        return path_sql(
            search_path_for(
                schema, shared_schema=self.shared_schema, extra_schemas=self.extra_schemas
            )
        )

    @staticmethod
    def _pick(tenant: TenantLike | None) -> TenantLike:
        if tenant is None:
            tenant = current_tenant()
        if tenant is None:
            raise NoTenantSelected(
                "no tenant given and none is current: pass one to connection(tenant), or set "
                "it with tenant_context() / set_current_tenant() (routing middleware does)"
            )
        return tenant

    def _schema_arg(self, tenant: TenantLike) -> str:
        schema = schema_of(tenant)
        if schema != self.shared_schema:
            validate_schema_name(schema, shared_schema=self.shared_schema)
        return schema

    def _not_public(self, tenant: Tenant, action: str) -> None:
        if tenant.is_public:
            raise TenantkitError(
                f"the public tenant (shared schema {tenant.schema!r}) cannot be {action}"
            )

    @staticmethod
    def _hosts(domains: Iterable[str]) -> list[str]:
        hosts: list[str] = []
        for host in domains:
            norm = normalize_host(host)
            if norm in hosts:
                raise DomainExists(f"host {norm!r} is given twice; list each host once")
            hosts.append(norm)
        return hosts

    @staticmethod
    def _fold_domain_map(rows: Iterable[Sequence[Any]]) -> dict[str, Tenant]:
        """``(host, *tenant row)`` rows -> host -> tenant, one Tenant object per tenant."""
        by_id: dict[int, Tenant] = {}
        result: dict[str, Tenant] = {}
        for row in rows:
            tenant = by_id.get(row[1]) or by_id.setdefault(row[1], tenant_from_row(row[1:]))
            result[row[0]] = tenant
        return result

    @staticmethod
    def _create_args(
        schema: str, name: str | None, metadata: Mapping[str, Any] | None
    ) -> tuple[str, str, str, Jsonb]:
        return (schema, name or schema, TenantState.PROVISIONING.value, Jsonb(dict(metadata or {})))

    @staticmethod
    def _state_arg(state: TenantState | str | None) -> str | None:
        return None if state is None else TenantState(state).value

    def _lookup_args(
        self, schema: str | None, id: int | None, host: str | None
    ) -> tuple[str, Sequence[Any]]:
        given = [k for k, v in (("schema", schema), ("id", id), ("host", host)) if v is not None]
        if len(given) != 1:
            raise TypeError("get_tenant() takes exactly one of schema, id= or host=")
        if host is not None:
            return "host", (normalize_host(host),)
        if id is not None:
            return "id", (int(id),)
        assert schema is not None
        return "schema", (self._schema_arg(schema),)  # a name that can never exist: raise

    def _not_found(self, by: str, args: Sequence[Any]) -> str:
        if by == "host":
            return f"no tenant has the host {args[0]!r}; register it with add_domain()"
        if not args:
            return "the public tenant row is missing: call install()"
        return f"no tenant with {by} {args[0]!r}; list them with tenants()"

    # Thin delegations to the migrations and catalog modules, imported on first use so the
    # core imports without them. Their parameters mirror the functions they call (a test
    # checks it), so users get real signatures and types.
    def plan(
        self,
        *,
        shared: bool = True,
        tenants: bool = True,
        schemas: Iterable[str] | str | None = None,
        migrations: Any = None,
        conninfo: str | None = None,
    ) -> Plan:
        """What is pending where, from one query: ``tenantkit.migrations.plan(self, ...)``."""
        from ..migrations import plan

        return plan(
            self,
            shared=shared,
            tenants=tenants,
            schemas=schemas,
            migrations=migrations,
            conninfo=conninfo,
        )

    def migrate(
        self,
        *,
        shared: bool = True,
        tenants: bool = True,
        schemas: Iterable[str] | str | None = None,
        jobs: int = 1,
        executor: ExecutorName = "sequential",
        chunk_size: int | None = None,
        fail_fast: bool = False,
        progress: Callable[[ProgressEvent], None] | None = None,
        migrations: Any = None,
        conninfo: str | None = None,
    ) -> MigrationReport:
        """Apply pending migrations: ``tenantkit.migrations.migrate(self, ...)``."""
        from ..migrations import migrate

        return migrate(
            self,
            shared=shared,
            tenants=tenants,
            schemas=schemas,
            jobs=jobs,
            executor=executor,
            chunk_size=chunk_size,
            fail_fast=fail_fast,
            progress=progress,
            migrations=migrations,
            conninfo=conninfo,
        )

    def drift(
        self, *, schemas: Sequence[str] | None = None, reference: str | None = None
    ) -> DriftReport:
        """Schema drift report: ``tenantkit.introspection.catalog.drift(self, ...)``."""
        from ..introspection.catalog import drift

        return drift(self, schemas=schemas, reference=reference)

    @property
    def spares(self) -> Spares:
        """The warm spare-schema pool, ``tenantkit.provisioning.Spares(self)`` (created once)."""
        if self._spares is None:
            from ..provisioning.provisioners import Spares

            self._spares = Spares(self)
        return self._spares
