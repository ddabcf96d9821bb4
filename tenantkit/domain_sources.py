"""Where a router's host map comes from: the source protocol and its implementations.

- :class:`DomainSource` / :class:`Subscription`: what :class:`tenantkit.routing.TenantResolver`
  needs from a source.
- :class:`StaticDomainSource`: a fixed mapping (configuration, development, tests).
- :class:`RegistryDomainSource`: the tenant registry of a ``Tenancy``/``AsyncTenancy``; one
  query per reload, and a :class:`RegistryListener` daemon thread holding one dedicated
  connection that LISTENs on ``tenantkit_registry`` (the registry's triggers NOTIFY it on every
  change to tenants or domains).

The I/O lives here so that :mod:`tenantkit.routing` stays pure.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import psycopg
from psycopg import sql

from .errors import RegistryNotInstalled
from .registry import NOTIFY_CHANNEL, tenant_from_row, translated

if TYPE_CHECKING:
    from .models import Tenant

__all__ = [
    "REGISTRY_CHANNEL",
    "DomainSource",
    "RegistryDomainSource",
    "RegistryListener",
    "StaticDomainSource",
    "Subscription",
]

logger = logging.getLogger("tenantkit.routing")

#: The channel the registry triggers NOTIFY on every tenants/domains change.
REGISTRY_CHANNEL = NOTIFY_CHANNEL


@runtime_checkable
class Subscription(Protocol):
    """A live change subscription returned by a source's ``subscribe()``."""

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

    ``load()`` returns every routable host mapped to its tenant. A source may also offer
    ``load_tenants() -> Iterable[Tenant | str]`` (all tenants, for subdomain/path/header
    modes, which select tenants by schema name) and ``subscribe(callback) -> Subscription``
    (call ``callback()`` from any thread whenever the map may have changed).
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


class RegistryListener:
    """A daemon thread LISTENing on ``channel`` and calling ``callback`` on each change.

    ``live`` is true while the LISTEN is established: notifications sent while it is false
    may have been missed, so the callback is called again each time it (re)connects. On a
    lost connection it reconnects with a capped exponential backoff.
    """

    def __init__(
        self,
        conninfo: str,
        callback: Callable[[], None],
        *,
        channel: str = REGISTRY_CHANNEL,
        poll_interval: float = 0.25,
        coalesce: float = 0.005,
        max_backoff: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self._callback = callback
        self._poll = poll_interval
        self._coalesce = coalesce
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._live = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"tenantkit-listen-{channel}", daemon=True
        )
        self._thread.start()

    @property
    def live(self) -> bool:
        """True while every change is being reported."""
        return self._live.is_set()

    def wait_live(self, timeout: float | None = None) -> bool:
        """Block until the LISTEN is established (or ``timeout``); return :attr:`live`."""
        return self._live.wait(timeout)

    def close(self) -> None:
        """Stop the thread (within one poll interval) and close its connection."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self._poll * 4 + 1)

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.conninfo, autocommit=True, application_name="tenantkit-router"
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    backoff = 0.05
                    # Changes made before the LISTEN took effect were not notified. Report
                    # them before going live, so that a caller seeing ``live`` knows the
                    # table it loads next is complete.
                    self._notify()
                    self._live.set()
                    self._listen(conn)
            except psycopg.Error as exc:
                if self._live.is_set() or backoff >= self._max_backoff:
                    logger.warning("registry listener lost its connection: %s", exc)
            except Exception:  # the thread must survive a failing callback
                logger.exception("registry listener callback failed")
            finally:
                self._live.clear()
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff)

    def _listen(self, conn: psycopg.Connection[object]) -> None:
        while not self._stop.is_set():
            # stop_after=1 returns as soon as something arrives; the timeout bounds how long
            # close() waits for us.
            got = any(True for _ in conn.notifies(timeout=self._poll, stop_after=1))
            if got:
                # Creating many tenants sends a burst: report it once.
                for _ in conn.notifies(timeout=self._coalesce):
                    pass
                self._notify()

    def _notify(self) -> None:
        self._callback()


class RegistryDomainSource:
    """A routing source reading the tenant registry of a ``Tenancy`` or ``AsyncTenancy``.

    With a ``Tenancy``, ``load()`` is ``tenancy.domain_map()``. With an ``AsyncTenancy`` (whose
    methods are coroutines bound to its event loop) the same registry query runs on one
    dedicated sync connection of this source, from the worker thread the ASGI middleware
    loads in. ``listen_conninfo`` overrides the connection used for LISTEN and for those
    loads (default: the tenancy's ``conninfo``); it must reach the server directly, not
    through a transaction-pooling pgbouncer, which does not support LISTEN.
    """

    def __init__(self, tenancy: Any, *, listen_conninfo: str | None = None) -> None:
        self.tenancy = tenancy
        self.listen_conninfo: str | None = listen_conninfo or tenancy.conninfo or None
        self._is_async = inspect.iscoroutinefunction(tenancy.domain_map)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        _sources.add(self)

    def _after_fork(self) -> None:
        # The parent's socket must not be used, nor closed explicitly (that would end the
        # parent's session): drop it (psycopg's PGconn skips PQfinish when collected in
        # another process) and connect anew when needed.
        self._conn = None
        self._lock = threading.Lock()

    @property
    def public_tenant(self) -> Tenant:
        """The tenancy's public (shared-schema) tenant.

        For an ``AsyncTenancy`` that has not loaded it yet (the app is usually built before
        the event loop runs), it is read here with one sync query.
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

    def load(self) -> Mapping[str, Tenant]:
        """Every registered host of an active tenant -> its tenant, in one query."""
        if not self._is_async:
            result: Mapping[str, Tenant] = self.tenancy.domain_map()
            return result
        by_id: dict[int, Tenant] = {}
        hosts: dict[str, Tenant] = {}
        for row in self._query(self.tenancy.registry.domain_map):
            tenant = by_id.get(row[1]) or by_id.setdefault(row[1], tenant_from_row(row[1:]))
            hosts[row[0]] = tenant
        return hosts

    def load_tenants(self) -> Iterable[Tenant]:
        """Every active tenant (subdomain, path and header modes select them by schema)."""
        if not self._is_async:
            tenants: Iterable[Tenant] = self.tenancy.tenants(state="active")
            return tenants
        params = {"state": "active", "public": False}
        return [tenant_from_row(r) for r in self._query(self.tenancy.registry.select_all, params)]

    def _query(self, query: sql.Composed, params: Mapping[str, Any] | None = None) -> list[Any]:
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                if not self.listen_conninfo:
                    raise ValueError(_NO_CONNINFO)
                self._conn = psycopg.connect(
                    self.listen_conninfo, autocommit=True, application_name="tenantkit-router"
                )
            try:
                with translated():
                    rows: list[Any] = self._conn.execute(query, params).fetchall()
                    return rows
            except psycopg.OperationalError:
                self._conn.close()  # reconnect on the next load
                raise

    def subscribe(self, callback: Callable[[], None]) -> RegistryListener:
        """Start a :class:`RegistryListener` calling ``callback`` on registry changes."""
        if not self.listen_conninfo:
            raise ValueError(_NO_CONNINFO)
        return RegistryListener(self.listen_conninfo, callback)

    def close(self) -> None:
        """Close the load connection (``AsyncTenancy`` only; listeners close on their own)."""
        with self._lock:
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
