"""Request -> tenant resolution: pure logic over a cached routing table.

Nothing here talks to a database. A :class:`TenantResolver` asks a
:class:`~tenantkit.web.sources.DomainSource` for the host -> tenant map (the registry, through
:class:`~tenantkit.web.sources.RegistryDomainSource`, or any mapping through
:class:`~tenantkit.web.sources.StaticDomainSource`), keeps it in memory as an immutable
:class:`RoutingTable`, and answers every request from that table. The table is reloaded only when
the source reports a change (LISTEN/NOTIFY for the registry: a change naming entries reloads
just those, on the listener's thread), when it is older than ``ttl`` (a safety net for lost
notifications; ``fallback_ttl`` while a subscription is down or cannot work, e.g. behind a
transaction pooler), or, for sources that cannot report changes, after a miss at most once per
``negative_ttl`` seconds, so random hosts cannot turn into database load.
:meth:`TenantResolver.warm` loads the table at start-up, so that no request pays for it.

Warm lookups cost the same whatever the number of tenants: a Host header already in canonical
form (what browsers send) is one dictionary lookup in the table's precomputed answers; other
spellings go through a normalisation cache sized to the table.

Fail-closed rules: an invalid Host is :attr:`Outcome.INVALID` (HTTP 400), a valid host that is
neither public nor a tenant's is :attr:`Outcome.UNKNOWN` (HTTP 404), never another tenant;
tenants that are not ``active`` are not routable; forwarded host headers are read only from
configured trusted proxies.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..core.names import normalize_host
from ..errors import InvalidHostname, PoolerDetected
from ._routing_table import (
    Change,
    Outcome,
    Resolution,
    RoutingTable,
    TableBuilder,
    is_public,
    tenant_answer,
)

if TYPE_CHECKING:
    from types import TracebackType

    from ..core.models import Tenant
    from .sources import DomainSource, Subscription

__all__ = [
    "Outcome",
    "Resolution",
    "RoutingMode",
    "RoutingTable",
    "TenantResolver",
]

logger = logging.getLogger("tenantkit.web.routing")

RoutingMode = Literal["host", "subdomain", "path", "header"]

# Keys accepted from a path segment or a tenant header before any lookup: a schema name or a
# DNS label (``-`` stands for ``_`` because schema names allow ``_`` and hostnames do not).
_KEY_RE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,62}")
# Bounded caches are cleared wholesale when full: O(1), and a flood of random hosts can cost
# at most this much memory.
_CACHE_MAX = 4096


#: HTTP's optional whitespace (RFC 9110 5.6.3): the only characters a header value may be
#: trimmed of. ``str.strip()`` would also remove \x1c-\x1f, \x85 and \xa0, so a forwarded
#: ``acme.example\x85`` would route to acme while the same Host header is rejected.
_OWS = " \t"


def _last_forwarded_host(header: str, kind: str) -> str | None:
    """The host set by the nearest proxy: the right-most entry (earlier ones are client-made)."""
    last = header.rsplit(",", 1)[-1].strip(_OWS)
    if kind == "x-forwarded-host":
        return last or None
    for pair in last.split(";"):
        name, sep, value = pair.strip(_OWS).partition("=")
        if sep and name.strip(_OWS).lower() == "host":
            return value.strip(_OWS).strip('"') or None
    return None


@dataclass
class _Negative:
    # Hosts that missed recently (host -> expiry) and when a miss last forced a reload.
    until: dict[str, float] = field(default_factory=dict)
    last_reload: float = float("-inf")


_subscribed_resolvers: weakref.WeakSet[TenantResolver] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for resolver in list(_subscribed_resolvers):
        resolver._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


class TenantResolver:
    """Resolve requests to tenants from an in-memory table fed by a domain source.

    Modes (``mode=``):

    - ``"host"`` (default): the normalised Host must be a registered domain.
    - ``"subdomain"``: ``<tenant>.<base_domain>`` selects the tenant whose schema is
      ``<tenant>`` (``-`` read as ``_``) or a domain alias ``<tenant>``; registered full
      domains still work; ``base_domain`` itself is public.
    - ``"path"``: ``/<path_prefix>/<tenant>/...`` selects the tenant (``Resolution.prefix``
      says what to move from the path to the mount point); other paths are public.
    - ``"header"``: the ``header`` request header (``X-Tenant``) names the tenant; requests
      without it are public. With ``trusted_proxies`` set, only those clients may use it.

    ``public_hosts`` are served by the public app in host/subdomain mode; in path/header mode,
    when given, they are the only hosts accepted (others are UNKNOWN). ``strip_www`` drops a
    leading ``www.``. ``trusted_proxies`` (addresses or CIDRs) are the only clients whose
    ``forwarded_header`` (``"x-forwarded-host"`` or ``"forwarded"``) replaces the Host.

    The table is reloaded when the source reports a change (only the changed entries when
    the source says which), after ``ttl`` seconds (``fallback_ttl`` while a requested change
    subscription is not live: lost, or impossible behind a transaction pooler), and (for
    sources without a live subscription) after a miss, at most once per ``negative_ttl``.
    Call :meth:`warm` at start-up so that no request pays for the first load.
    Thread-safe; :meth:`resolve` performs no I/O once the table is loaded.
    """

    def __init__(
        self,
        source: DomainSource,
        *,
        mode: RoutingMode = "host",
        base_domain: str | None = None,
        path_prefix: str = "t",
        header: str = "X-Tenant",
        public_hosts: Iterable[str] = (),
        public_tenant: Tenant | str | None = None,
        strip_www: bool = False,
        trusted_proxies: Iterable[str] = (),
        forwarded_header: Literal["x-forwarded-host", "forwarded"] = "x-forwarded-host",
        ttl: float = 300.0,
        negative_ttl: float = 5.0,
        fallback_ttl: float = 5.0,
        subscribe: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("host", "subdomain", "path", "header"):
            raise ValueError(f"unknown routing mode {mode!r}: use host, subdomain, path or header")
        if mode == "subdomain" and not base_domain:
            raise ValueError("subdomain mode needs base_domain='example.com'")
        if forwarded_header not in ("x-forwarded-host", "forwarded"):
            raise ValueError("forwarded_header must be 'x-forwarded-host' or 'forwarded'")
        self.source = source
        self.mode: RoutingMode = mode
        self.strip_www = strip_www
        self.base_domain = normalize_host(base_domain, strip_www=False) if base_domain else None
        if mode == "path" and not path_prefix.strip("/"):
            # Without a prefix every first path segment would name a tenant and nothing
            # would be left for the public app.
            raise ValueError("path mode needs a non-empty path_prefix such as 't'")
        self.path_prefix = "/" + path_prefix.strip("/") + "/"
        self.header = header
        self.public_hosts = frozenset(normalize_host(h, strip_www=strip_www) for h in public_hosts)
        self.public_tenant = public_tenant
        self.trusted_proxies = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        self.forwarded_header = forwarded_header
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.fallback_ttl = fallback_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._table: RoutingTable | None = None
        self._version = 0
        self._hosts_cache: dict[str, str | None] = {}
        self._trust_cache: dict[str, bool] = {}
        self._negative = _Negative()
        self._builder = TableBuilder(
            mode=mode,
            strip_www=strip_www,
            base_domain=self.base_domain,
            public_hosts=self.public_hosts,
        )
        # Set by from_tenancy(): public requests run as the public tenant each load brings.
        self._public_from_source = False
        self._closed = False
        self._subscription: Subscription | None = None
        self._resubscribe = False
        if subscribe:
            self._subscription = self._subscribe()
            if self._subscription is not None:
                _subscribed_resolvers.add(self)

    def _subscribe(self) -> Subscription | None:
        subscribe_fn = getattr(self.source, "subscribe", None)
        if not callable(subscribe_fn):
            return None
        if callable(getattr(self.source, "load_entries", None)):
            # The source can say what changed and reload just that.
            subscription: Subscription = subscribe_fn(
                self.invalidate, on_changes=self.reload_entries
            )
        else:
            subscription = subscribe_fn(self.invalidate)
        return subscription

    def _after_fork(self) -> None:
        # Only the forking thread survives a fork (gunicorn --preload, multiprocessing): the
        # listener thread is gone while its "live" flag was copied, and a lock held by another
        # thread would never be released. Start afresh; subscribe again on the next load.
        self._lock = threading.Lock()
        self._subscription = None
        self._resubscribe = True
        self.invalidate()

    @classmethod
    def from_tenancy(
        cls,
        tenancy: Any,
        *,
        listen_conninfo: str | None = None,
        require_listen: bool = False,
        **options: Any,
    ) -> TenantResolver:
        """A resolver fed by ``tenancy``'s registry, kept current by LISTEN/NOTIFY.

        ``options`` are this class's keyword arguments; ``public_tenant`` defaults to the
        registry's public tenant, read with each load (building the resolver runs no query,
        so an app module imports without a database). ``listen_conninfo`` is a direct
        address of PostgreSQL for LISTEN when the tenancy connects through a transaction
        pooler; without it, routing detects the pooler, warns and polls, or with
        ``require_listen=True`` refuses to route (``PoolerDetected``).
        """
        # Imported here so that importing this module never pulls in the I/O side.
        from .sources import RegistryDomainSource

        source = RegistryDomainSource(
            tenancy, listen_conninfo=listen_conninfo, require_listen=require_listen
        )
        from_source = "public_tenant" not in options
        resolver = cls(source, **options)
        resolver._public_from_source = from_source
        return resolver

    # -- table management ---------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        """True while the source's change subscription is live (notifications do arrive)."""
        return self._subscription is not None and self._subscription.live

    def wait_subscribed(self, timeout: float = 5.0) -> bool:
        """Block until the change subscription is live (at startup, in tests); return it.

        Returns ``False`` early when the subscription gave up (behind a transaction pooler);
        raises ``PoolerDetected`` when it gave up and ``require_listen`` was asked for.
        """
        self._ensure_subscription()
        subscription = self._subscription
        if subscription is None:
            return False
        wait_live = getattr(subscription, "wait_live", None)
        live = bool(wait_live(timeout)) if callable(wait_live) else subscription.live
        self._raise_if_failed()
        return live

    def warm(self, timeout: float = 5.0) -> RoutingTable:
        """Load the table now, so that no request pays for it (call it at start-up).

        Waits up to ``timeout`` seconds for the change subscription's first attempt to go
        live (a table loaded before it would be reloaded once it is), then loads the table
        unless a fresh one is there. Raises what the source raises (the database may be
        down: requests then load it lazily), and ``PoolerDetected`` as :meth:`refresh`.
        """
        self.settle(timeout)
        return self.table()

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` for the subscription's first attempt to have an outcome;
        return :attr:`subscribed`. Does not raise (see :meth:`wait_subscribed`)."""
        self._ensure_subscription()
        wait_settled = getattr(self._subscription, "wait_settled", None)
        if callable(wait_settled):
            wait_settled(timeout)
        return self.subscribed

    def invalidate(self) -> None:
        """Mark the table stale: the next request reloads it. Safe from any thread."""
        # A counter, not a flag: a load that started before this call carries the old
        # version and so stays stale, even if it finishes afterwards.
        self._version += 1

    def reload_entries(self, change: Change) -> None:
        """Reload just the entries ``change`` names, in the calling thread (the listener's).

        Needs a source with ``load_entries``; otherwise, or when that fails, or when the
        change touches the public tenant, the whole table is invalidated instead. Requests
        keep using the current table until the patched one replaces it.
        """
        load_entries = getattr(self.source, "load_entries", None)
        if not callable(load_entries):
            self.invalidate()
            return
        if self.strip_www:
            # "www.x" and "x" share one key: reload both spellings, whichever exist.
            extra = {h[4:] if h.startswith("www.") else "www." + h for h in change.hosts}
            change = type(change)(change.tenant_ids, change.hosts | extra)
        with self._lock:
            table = self._table
            if table is None or table.version != self._version:
                return  # nothing loaded yet, or a full reload is due: it sees the change
            try:
                routes = load_entries(change)
            except Exception as exc:
                logger.warning("could not reload changed routing entries (%s); reloading all", exc)
                self.invalidate()
                return
            patched = self._builder.patch(
                table, change, routes, public_from_source=self._public_from_source
            )
            if patched is None:
                self.invalidate()
            else:
                self._table = patched

    def cached_table(self) -> RoutingTable | None:
        """The current table if it is fresh, else ``None``. Never does I/O."""
        table = self._table
        if table is None or table.version != self._version:
            return None
        ttl = self.ttl
        subscription = self._subscription
        if subscription is not None and not subscription.live:
            if getattr(subscription, "error", None):
                return None  # refresh() raises it: routing must not run on a stale table
            # Changes may go unnoticed: poll.
            ttl = min(ttl, self.fallback_ttl)
        if self._clock() - table.loaded_at < ttl:
            return table
        return None

    def table(self) -> RoutingTable:
        """The current table, loading it from the source first if it is stale."""
        return self.cached_table() or self.refresh()

    def refresh(self, *, force: bool = False) -> RoutingTable:
        """Load the table from the source (one thread loads; concurrent callers wait).

        Raises ``PoolerDetected`` when LISTEN was required (``require_listen``) but cannot
        work where the source connects.
        """
        self._ensure_subscription()
        with self._lock:
            self._raise_if_failed()
            if not force:
                table = self.cached_table()
                if table is not None:
                    return table
            version = self._version
            started = self._clock()
            table = self._build(version, started)
            self._table = table
            return table

    def _ensure_subscription(self) -> None:
        if self._resubscribe:  # after a fork
            with self._lock:
                if self._resubscribe:
                    self._resubscribe = False
                    self._subscription = self._subscribe()

    def _raise_if_failed(self) -> None:
        error = getattr(self._subscription, "error", None)
        if error:
            raise PoolerDetected(f"routing cannot run: {error}")

    def _build(self, version: int, loaded_at: float) -> RoutingTable:
        source = self.source
        load_routes = getattr(source, "load_routes", None)
        if callable(load_routes):
            routes = load_routes()
            loaded_hosts, tenants, public = routes.hosts, routes.tenants, routes.public
        else:
            loaded_hosts, public = source.load(), None
            load_tenants = getattr(source, "load_tenants", None)
            tenants = None if self.mode == "host" or not callable(load_tenants) else load_tenants()
        if not self._public_from_source:
            public = self.public_tenant
        return self._builder.build(loaded_hosts, tenants, public, version, loaded_at)

    def close(self) -> None:
        """Stop the change subscription and close the source if it has a ``close()``.

        Idempotent. The table stays usable until it goes stale.
        """
        self._closed = True
        self._resubscribe = False
        _subscribed_resolvers.discard(self)
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
        close_source = getattr(self.source, "close", None)
        if callable(close_source):
            close_source()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> TenantResolver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- resolution ---------------------------------------------------------------------

    def resolve(
        self,
        host: str | None,
        *,
        path: str = "/",
        client: str | None = None,
        forwarded: str | None = None,
        header_value: str | None = None,
    ) -> Resolution:
        """Resolve one request, loading the table first if needed (sync callers).

        ``host`` is the raw Host header, ``client`` the peer address, ``forwarded`` the raw
        value of the configured forwarded header and ``header_value`` that of the tenant
        header (header mode). Async callers use :meth:`resolve_in` with a table loaded in a
        worker thread, as :class:`tenantkit.web.asgi.ASGITenantMiddleware` does.
        """
        args = (host, path, client, forwarded, header_value)
        result = self.resolve_in(self.table(), *args)
        if result.outcome is Outcome.UNKNOWN and self.should_reload_on_miss(result):
            result = self.resolve_in(self.refresh(force=True), *args)
        return result

    def should_reload_on_miss(self, result: Resolution) -> bool:
        """Whether a miss justifies reloading the table now (and record the miss).

        Never with a live subscription (the table is then authoritative); otherwise at most
        once per ``negative_ttl`` overall, and not for a host that missed within it.
        """
        if self.subscribed or result.host is None:
            return False
        now = self._clock()
        neg = self._negative
        if neg.until.get(result.host, 0.0) > now:
            return False
        if len(neg.until) >= _CACHE_MAX:
            neg.until.clear()
        neg.until[result.host] = now + self.negative_ttl
        if now - neg.last_reload < self.negative_ttl:
            return False
        neg.last_reload = now
        return True

    def resolve_in(
        self,
        table: RoutingTable,
        host: str | None,
        path: str = "/",
        client: str | None = None,
        forwarded: str | None = None,
        header_value: str | None = None,
    ) -> Resolution:
        """Resolve one request against ``table``. Pure: no I/O, no table reload."""
        if forwarded is not None and client is not None and self._trusted(client):
            host = _last_forwarded_host(forwarded, self.forwarded_header)
            if host is None:
                return Resolution(Outcome.INVALID, reason="empty forwarded host from proxy")
        if host is None:
            return Resolution(Outcome.INVALID, reason="no Host header")
        # The common case, O(1) whatever the number of tenants: the header is already in
        # canonical form (a table key is its own normalisation; with strip_www a "www."
        # spelling is not, so it takes the long way).
        answer = table.resolved.get(host)
        if answer is not None and not (self.strip_www and host.startswith("www.")):
            return answer
        norm = self._normalise(host, len(table.resolved))
        if norm is None:
            return Resolution(Outcome.INVALID, reason="malformed Host header")
        answer = table.resolved.get(norm)
        if answer is not None:
            return answer
        mode = self.mode
        if mode == "host":
            return self._by_host(table, norm)
        if mode == "subdomain":
            return self._by_subdomain(table, norm)
        if self.public_hosts and norm not in self.public_hosts:
            return Resolution(Outcome.UNKNOWN, host=norm, reason="host not in public_hosts")
        if mode == "path":
            return self._by_path(table, norm, path)
        return self._by_header(table, norm, client, header_value)

    def _normalise(self, host: str, table_size: int = 0) -> str | None:
        cache = self._hosts_cache
        try:
            return cache[host]
        except KeyError:
            pass
        try:
            norm: str | None = normalize_host(host, strip_www=self.strip_www)
        except InvalidHostname:
            norm = None
        # Sized to the table, so that the spellings of every known host fit (a cache smaller
        # than the hosts in rotation would be cleared before any entry is used twice).
        if len(cache) >= max(_CACHE_MAX, 2 * table_size):
            cache.clear()
        cache[host] = norm
        return norm

    def _trusted(self, client: str) -> bool:
        cache = self._trust_cache
        trusted = cache.get(client)
        if trusted is None:
            try:
                addr = ipaddress.ip_address(client)
            except ValueError:
                trusted = False  # a unix socket path or garbage: not a configured proxy
            else:
                trusted = any(addr in net for net in self.trusted_proxies)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[client] = trusted
        return trusted

    def _by_host(self, table: RoutingTable, host: str) -> Resolution:
        if host in self.public_hosts:
            return Resolution(Outcome.PUBLIC, table.public_tenant, host)
        tenant = table.hosts.get(host)
        if tenant is None:
            return Resolution(Outcome.UNKNOWN, host=host, reason="host not registered")
        return tenant_answer(tenant, host)

    def _by_key(self, table: RoutingTable, key: str) -> Tenant | str | None:
        """A tenant by schema name (``-`` read as ``_``), else by a registered domain alias."""
        key = key.strip(_OWS).lower()
        if _KEY_RE.fullmatch(key):
            tenant = table.schemas.get(key.replace("-", "_"))
            if tenant is not None:
                return tenant
        try:
            alias = normalize_host(key)
        except InvalidHostname:
            return None
        tenant = table.hosts.get(alias)
        return None if tenant is None or is_public(tenant) else tenant

    def _by_subdomain(self, table: RoutingTable, host: str) -> Resolution:
        base = self.base_domain
        if host == base or host in self.public_hosts:
            return Resolution(Outcome.PUBLIC, table.public_tenant, host)
        tenant = table.hosts.get(host)
        if tenant is not None:
            return tenant_answer(tenant, host)
        assert base is not None  # checked in __init__
        label, dot, rest = host.partition(".")
        if dot and rest == base:
            tenant = self._by_key(table, label)
            if tenant is not None:
                return Resolution(Outcome.TENANT, tenant, host)
        return Resolution(Outcome.UNKNOWN, host=host, reason="no tenant for this subdomain")

    def _by_path(self, table: RoutingTable, host: str, path: str) -> Resolution:
        prefix = self.path_prefix
        if not path.startswith(prefix):
            return Resolution(Outcome.PUBLIC, table.public_tenant, host)
        key, _, _ = path[len(prefix) :].partition("/")
        tenant = self._by_key(table, key) if key else None
        if tenant is None:
            return Resolution(Outcome.UNKNOWN, host=host, reason="no tenant for this path")
        return Resolution(Outcome.TENANT, tenant, host, prefix + key)

    def _by_header(
        self, table: RoutingTable, host: str, client: str | None, value: str | None
    ) -> Resolution:
        if value is None or (
            self.trusted_proxies and (client is None or not self._trusted(client))
        ):
            # No tenant named, or named by a client not allowed to: the public side.
            return Resolution(Outcome.PUBLIC, table.public_tenant, host)
        if not value.strip(_OWS):
            return Resolution(Outcome.INVALID, host=host, reason="empty tenant header")
        if "," in value:
            # Two tenant headers, joined by the server (WSGI) or the client: ambiguous.
            return Resolution(Outcome.INVALID, host=host, reason="several tenant headers")
        tenant = self._by_key(table, value)
        if tenant is None:
            return Resolution(Outcome.UNKNOWN, host=host, reason="no tenant for this header")
        return Resolution(Outcome.TENANT, tenant, host)
