"""Where a router's host map comes from: the source protocol and its implementations.

- :class:`DomainSource` / :class:`Subscription`: what :class:`tenantkit.web.routing.TenantResolver`
  needs from a source; :class:`Routes` (what a load returns) and :class:`Change` (what changed).
- :class:`StaticDomainSource`: a fixed mapping (configuration, development, tests).
- :class:`RegistryDomainSource`: the tenant registry of a ``Tenancy``/``AsyncTenancy``; one
  query per load (or per changed entry), and a :class:`RegistryListener` daemon thread
  (:mod:`tenantkit.web._registry_listener`) holding one dedicated connection that LISTENs on
  ``tenantkit_registry`` (the registry's triggers NOTIFY it with the tenant id or host of every
  changed row).

The I/O lives here so that :mod:`tenantkit.web.routing` stays pure.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import psycopg
from psycopg import sql

from ..core.models import Tenant, TenantState
from ..core.storage import DOMAINS_TABLE, TENANTS_TABLE, tenant_from_row, translated
from ..errors import RegistryNotInstalled
from ._registry_listener import APPLICATION_NAME, REGISTRY_CHANNEL, RegistryListener
from ._routing_table import Change, Routes

if TYPE_CHECKING:
    from ..core.storage import Registry

__all__ = [
    "REGISTRY_CHANNEL",
    "Change",
    "DomainSource",
    "RegistryDomainSource",
    "RegistryListener",
    "Routes",
    "StaticDomainSource",
    "Subscription",
]

logger = logging.getLogger("tenantkit.web.routing")


@runtime_checkable
class Subscription(Protocol):
    """A live change subscription returned by a source's ``subscribe()``.

    Optional extras a resolver uses when present: ``wait_live(timeout)``,
    ``wait_settled(timeout)`` (block until the first attempt to go live has an outcome) and
    ``error`` (a message when the subscription cannot work and the user asked it to, so
    routing must refuse to run rather than poll).
    """

    @property
    def live(self) -> bool:
        """True while every change is guaranteed to be reported to the callback."""
        ...

    def close(self) -> None:
        """Stop reporting changes and release resources."""
        ...


@runtime_checkable
class DomainSource(Protocol):
    """Where a resolver gets its host map from.

    ``load()`` returns every routable host mapped to its tenant. Optional methods a resolver
    uses when present:

    - ``load_tenants() -> Iterable[Tenant | str]``: all tenants, for subdomain/path/header
      modes, which select tenants by schema name;
    - ``load_routes() -> Routes``: hosts, tenants and the public tenant in one go (preferred
      over ``load()`` + ``load_tenants()``);
    - ``load_entries(change) -> Routes``: only what ``change`` names (the hosts it lists, and
      the tenants it lists with all their hosts), for incremental reloads;
    - ``subscribe(callback, *, on_changes=None) -> Subscription``: call ``callback()`` from
      any thread whenever the map may have changed, or ``on_changes(change)`` when the source
      knows exactly which entries changed (sources without ``load_entries`` may take only
      ``callback``).
    """

    def load(self) -> Mapping[str, Tenant | str]:
        """Return the current host -> tenant map (hosts need not be normalised)."""
        ...


class StaticDomainSource:
    """A :class:`DomainSource` over a fixed mapping (configuration, tests, single-tenant dev).

    Values are ``Tenant`` objects or schema names. ``update()`` replaces the mapping and
    notifies subscribers, so resolvers see the change on their next request.
    """

    def __init__(
        self,
        hosts: Mapping[str, Tenant | str] | None = None,
        *,
        tenants: Iterable[Tenant | str] = (),
    ) -> None:
        self._hosts: dict[str, Tenant | str] = dict(hosts or {})
        self._tenants: list[Tenant | str] = list(tenants)
        self._callbacks: list[Callable[[], None]] = []
        self.loads = 0

    def load(self) -> Mapping[str, Tenant | str]:
        """Return a copy of the mapping."""
        self.loads += 1
        return dict(self._hosts)

    def load_tenants(self) -> Iterable[Tenant | str]:
        """Return the explicit tenants plus every tenant named in the mapping."""
        return [*self._tenants, *self._hosts.values()]

    def update(
        self,
        hosts: Mapping[str, Tenant | str],
        *,
        tenants: Iterable[Tenant | str] | None = None,
    ) -> None:
        """Replace the mapping (and optionally the tenants) and tell subscribers."""
        self._hosts = dict(hosts)
        if tenants is not None:
            self._tenants = list(tenants)
        for callback in list(self._callbacks):
            callback()

    def subscribe(self, callback: Callable[[], None]) -> Subscription:
        """Call ``callback`` on every :meth:`update`."""
        self._callbacks.append(callback)
        return _StaticSubscription(self, callback)


@dataclass
class _StaticSubscription:
    source: StaticDomainSource
    callback: Callable[[], None]
    live: bool = True

    def close(self) -> None:
        if self.live:
            self.live = False
            self.source._callbacks.remove(self.callback)


class _RoutingQueries:
    """The registry statements routing needs, compact: one row per host (and per tenant
    without a host), empty metadata sent as NULL so that no JSON is parsed for it."""

    def __init__(self, registry: Registry) -> None:
        s = sql.Identifier(registry.shared_schema)
        t = sql.SQL("{}.{}").format(s, sql.Identifier(TENANTS_TABLE))
        d = sql.SQL("{}.{}").format(s, sql.Identifier(DOMAINS_TABLE))
        # The column order of registry.tenant_from_row after the host.
        cols = sql.SQL(
            "d.host, t.id, t.schema, t.name, t.state, t.created_at,"
            " NULLIF(t.metadata, '{}'::jsonb), t.is_public"
        )
        fmt = {"cols": cols, "t": t, "d": d}
        self.all = sql.SQL(
            "SELECT {cols} FROM {t} t LEFT JOIN {d} d ON d.tenant_id = t.id"
            " WHERE t.state = 'active'"
        ).format(**fmt)
        # Two index scans rather than one OR over the join.
        self.entries = sql.SQL(
            "SELECT {cols} FROM {t} t LEFT JOIN {d} d ON d.tenant_id = t.id"
            " WHERE t.state = 'active' AND t.id = ANY(%(ids)s::bigint[])"
            " UNION ALL"
            " SELECT {cols} FROM {d} d JOIN {t} t ON t.id = d.tenant_id"
            " WHERE t.state = 'active' AND d.host = ANY(%(hosts)s::text[])"
        ).format(**fmt)


_STATES = {state.value: state for state in TenantState}
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


def _tenant(row: Any) -> Tenant:
    # registry.tenant_from_row for the routing rows, at half the cost (a table of 10,000
    # tenants is built at every start-up): the state by dict lookup, one shared empty
    # metadata (sent as NULL).
    metadata = row[6]
    return Tenant(
        row[1],
        row[2],
        row[3],
        _STATES[row[4]],
        row[5],
        _NO_METADATA if metadata is None else MappingProxyType(dict(metadata)),
        row[7],
    )


def _routes(rows: Iterable[Any], tenant_ids: Collection[int] | None = None) -> Routes:
    """Rows of :class:`_RoutingQueries` as :class:`Routes`; one ``Tenant`` object per id.

    ``tenant_ids``: keep only these in ``Routes.tenants`` (the others came along for a host).
    """
    by_id: dict[int, Tenant] = {}
    hosts: dict[str, Tenant] = {}
    for row in rows:
        tenant = by_id.get(row[1])
        if tenant is None:
            tenant = by_id[row[1]] = _tenant(row)
        if row[0] is not None:
            hosts[row[0]] = tenant
    public = next((t for t in by_id.values() if t.is_public), None)
    tenants = [
        t for i, t in by_id.items() if not t.is_public and (tenant_ids is None or i in tenant_ids)
    ]
    return Routes(hosts, tenants, public)


class RegistryDomainSource:
    """A routing source reading the tenant registry of a ``Tenancy`` or ``AsyncTenancy``.

    A load is one query over the registry tables: every host of every active tenant, every
    active tenant, and the public tenant (:meth:`load_routes`); a change reloads only the
    entries it names (:meth:`load_entries`). With a ``Tenancy`` the queries run on its pool.
    With an ``AsyncTenancy`` (whose connections are bound to its event loop) they run on one
    dedicated sync connection of this source, from the worker thread the ASGI middleware
    loads in.

    ``listen_conninfo`` overrides the connection used for LISTEN and for those loads (default:
    the tenancy's ``conninfo``). LISTEN needs a direct connection to PostgreSQL: through a
    transaction-pooling pgbouncer notifications never arrive, which the listener detects; it
    then warns and routing polls, or, with ``require_listen=True``, routing refuses to run
    (``PoolerDetected``).

    ``loads`` and ``entry_loads`` count the queries run for full and incremental loads.
    """

    def __init__(
        self, tenancy: Any, *, listen_conninfo: str | None = None, require_listen: bool = False
    ) -> None:
        self.tenancy = tenancy
        self.listen_conninfo: str | None = listen_conninfo or tenancy.conninfo or None
        self.require_listen = require_listen
        self.loads = 0
        self.entry_loads = 0
        self._is_async = inspect.iscoroutinefunction(tenancy.domain_map)
        self._queries = _RoutingQueries(tenancy.registry)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        _sources.add(self)

    def _after_fork(self) -> None:
        # The parent's socket must not be used, nor closed explicitly (that would end the
        # parent's session): drop it (psycopg's PGconn skips PQfinish when collected in
        # another process) and connect anew when needed.
        self._conn = None
        self._lock = threading.Lock()

    @property
    def public_tenant(self) -> Tenant:
        """The tenancy's public (shared-schema) tenant (one query when not known yet).

        Resolvers do not need it: every load brings the public tenant along.
        """
        if self._is_async:
            try:
                tenant: Tenant = self.tenancy.public_tenant
            except RegistryNotInstalled:
                rows = self._query(self.tenancy.registry.select_public)
                if not rows:
                    raise
                return tenant_from_row(rows[0])
            return tenant
        tenant = self.tenancy.public_tenant
        return tenant

    def load_routes(self) -> Routes:
        """Every host of an active tenant, every active tenant and the public one: one query."""
        self.loads += 1
        return _routes(self._query(self._queries.all))

    def load_entries(self, change: Change) -> Routes:
        """The current state of what ``change`` names: its hosts, and its tenants with all
        their hosts (absent: gone or no longer active). One query."""
        self.entry_loads += 1
        params = {"ids": sorted(change.tenant_ids), "hosts": sorted(change.hosts)}
        return _routes(self._query(self._queries.entries, params), change.tenant_ids)

    def load(self) -> Mapping[str, Tenant | str]:
        """Every registered host of an active tenant -> its tenant, in one query."""
        return self.load_routes().hosts

    def load_tenants(self) -> Iterable[Tenant | str]:
        """Every active tenant (subdomain, path and header modes select them by schema)."""
        return self.load_routes().tenants

    def _query(self, query: sql.Composed, params: Mapping[str, Any] | None = None) -> list[Any]:
        if not self._is_async:
            with self.tenancy.admin_connection() as conn, translated():
                rows: list[Any] = conn.execute(query, params).fetchall()
                return rows
        with self._lock:
            if self._closed:
                # Still usable after close(), without keeping a connection open.
                with self._connect() as conn, translated():
                    rows = conn.execute(query, params).fetchall()
                    return rows
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            try:
                with translated():
                    rows = self._conn.execute(query, params).fetchall()
                    return rows
            except psycopg.OperationalError:
                self._conn.close()  # reconnect on the next load
                raise

    def _connect(self) -> psycopg.Connection[Any]:
        if not self.listen_conninfo:
            raise ValueError(_NO_CONNINFO)
        return psycopg.connect(
            self.listen_conninfo,
            autocommit=True,
            application_name=APPLICATION_NAME,
            prepare_threshold=None,  # safe behind a transaction pooler too
        )

    def subscribe(
        self, callback: Callable[[], None], *, on_changes: Callable[[Change], None] | None = None
    ) -> RegistryListener:
        """Start a :class:`RegistryListener` reporting registry changes."""
        if not self.listen_conninfo:
            raise ValueError(_NO_CONNINFO)
        return RegistryListener(
            self.listen_conninfo,
            callback,
            on_changes=on_changes,
            require_listen=self.require_listen,
        )

    def close(self) -> None:
        """Close the load connection (``AsyncTenancy`` only; listeners close on their own).

        Idempotent; loads after this use a short-lived connection each.
        """
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_sources: weakref.WeakSet[RegistryDomainSource] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for source in list(_sources):
        source._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)

_NO_CONNINFO = (
    "the tenancy has no conninfo to LISTEN with: pass listen_conninfo= to RegistryDomainSource"
)
