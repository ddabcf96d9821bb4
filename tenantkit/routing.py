"""Request -> tenant resolution: pure logic over a cached routing table.

Nothing here talks to a database. A :class:`TenantResolver` asks a
:class:`~tenantkit.domain_sources.DomainSource` for the host -> tenant map (the registry, through
:class:`~tenantkit.domain_sources.RegistryDomainSource`, or any mapping through
:class:`~tenantkit.domain_sources.StaticDomainSource`), keeps it in memory as an immutable
:class:`RoutingTable`, and answers every request from that table. The table is reloaded only when
the source reports a change (LISTEN/NOTIFY for the registry), when it is older than ``ttl`` (a
safety net for lost notifications), or, for sources that cannot report changes, after a miss at
most once per ``negative_ttl`` seconds, so random hosts cannot turn into database load.

Fail-closed rules: an invalid Host is :attr:`Outcome.INVALID` (HTTP 400), a valid host that is
neither public nor a tenant's is :attr:`Outcome.UNKNOWN` (HTTP 404), never another tenant;
tenants that are not ``active`` are not routable; forwarded host headers are read only from
configured trusted proxies.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import InvalidHostname
from .names import is_valid_hostname, normalize_host

if TYPE_CHECKING:
    from types import TracebackType

    from .domain_sources import DomainSource, Subscription
    from .models import Tenant

__all__ = [
    "Outcome",
    "Resolution",
    "RoutingMode",
    "RoutingTable",
    "TenantResolver",
]

logger = logging.getLogger("tenantkit.routing")

RoutingMode = Literal["host", "subdomain", "path", "header"]

# Keys accepted from a path segment or a tenant header before any lookup: a schema name or a
# DNS label (``-`` stands for ``_`` because schema names allow ``_`` and hostnames do not).
_KEY_RE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,62}")
# Bounded caches are cleared wholesale when full: O(1), and a flood of random hosts can cost
# at most this much memory.
_CACHE_MAX = 4096


class Outcome(str, enum.Enum):
    """What a request resolved to."""

    #: A routable tenant: ``Resolution.tenant`` is set.
    TENANT = "tenant"
    #: A public host (or no tenant selected in path/header mode): serve the public app.
    PUBLIC = "public"
    #: A valid request naming no routable tenant: HTTP 404, never another tenant.
    UNKNOWN = "unknown"
    #: A malformed Host (or forwarded host, or tenant header): HTTP 400.
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The result of resolving one request.

    ``tenant`` is the tenant for :attr:`Outcome.TENANT`, the resolver's public tenant (or
    ``None``) for :attr:`Outcome.PUBLIC`, else ``None``. ``host`` is the normalised host used
    (``None`` when it was invalid). ``prefix`` is the part of the path that selected the
    tenant in path mode (``"/t/acme"``), to move from the path to the mount point.
    ``reason`` explains UNKNOWN/INVALID outcomes for logs; never show it to clients.
    """

    outcome: Outcome
    tenant: Tenant | str | None = None
    host: str | None = None
    prefix: str = ""
    reason: str = ""


@dataclass(frozen=True)
class RoutingTable:
    """An immutable snapshot of what can be routed, as loaded from a source.

    ``hosts`` maps normalised hosts to tenants; ``schemas`` maps schema names to tenants (for
    subdomain, path and header modes). Only routable tenants are present.
    """

    hosts: Mapping[str, Tenant | str]
    schemas: Mapping[str, Tenant | str]
    version: int = 0
    loaded_at: float = 0.0
    #: Ready answers for the hosts the table knows (host and subdomain modes): a warm
    #: request costs one dictionary lookup and allocates nothing.
    resolved: Mapping[str, Resolution] = field(default_factory=dict)


def _schema_of(tenant: Tenant | str) -> str:
    return tenant if isinstance(tenant, str) else tenant.schema


def _routable(tenant: Tenant | str) -> bool:
    # A tenant being provisioned, failed or dropping must not serve requests: its schema may
    # be incomplete or about to disappear. ``state`` is a str enum, so compare by value.
    return isinstance(tenant, str) or tenant.is_public or tenant.state == "active"


def _is_public(tenant: Tenant | str) -> bool:
    return not isinstance(tenant, str) and tenant.is_public


def _last_forwarded_host(header: str, kind: str) -> str | None:
    """The host set by the nearest proxy: the right-most entry (earlier ones are client-made)."""
    last = header.rsplit(",", 1)[-1].strip()
    if kind == "x-forwarded-host":
        return last or None
    for pair in last.split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name.strip().lower() == "host":
            return value.strip().strip('"') or None
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

    The table is reloaded when the source reports a change, after ``ttl`` seconds, and (for
    sources without a live subscription) after a miss, at most once per ``negative_ttl``.
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
        self._clock = clock
        self._lock = threading.Lock()
        self._table: RoutingTable | None = None
        self._version = 0
        self._hosts_cache: dict[str, str | None] = {}
        self._trust_cache: dict[str, bool] = {}
        self._negative = _Negative()
        self._subscription: Subscription | None = None
        self._resubscribe = False
        subscribe_fn = getattr(source, "subscribe", None)
        if subscribe and callable(subscribe_fn):
            self._subscription = subscribe_fn(self.invalidate)
            _subscribed_resolvers.add(self)

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
        cls, tenancy: Any, *, listen_conninfo: str | None = None, **options: Any
    ) -> TenantResolver:
        """A resolver fed by ``tenancy``'s registry, invalidated by LISTEN/NOTIFY.

        ``options`` are this class's keyword arguments; ``public_tenant`` defaults to
        ``tenancy.public_tenant``.
        """
        # Imported here so that importing this module never pulls in the I/O side.
        from .domain_sources import RegistryDomainSource

        source = RegistryDomainSource(tenancy, listen_conninfo=listen_conninfo)
        options.setdefault("public_tenant", source.public_tenant)
        return cls(source, **options)

    # -- table management ---------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        """True while the source's change subscription is live."""
        return self._subscription is not None and self._subscription.live

    def wait_subscribed(self, timeout: float = 5.0) -> bool:
        """Block until the change subscription is live (at startup, in tests); return it."""
        subscription = self._subscription
        if subscription is None:
            return False
        wait_live = getattr(subscription, "wait_live", None)
        if callable(wait_live):
            return bool(wait_live(timeout))
        return subscription.live

    def invalidate(self) -> None:
        """Mark the table stale: the next request reloads it. Safe from any thread."""
        # A counter, not a flag: a load that started before this call carries the old
        # version and so stays stale, even if it finishes afterwards.
        self._version += 1

    def cached_table(self) -> RoutingTable | None:
        """The current table if it is fresh, else ``None``. Never does I/O."""
        table = self._table
        if (
            table is not None
            and table.version == self._version
            and self._clock() - table.loaded_at < self.ttl
        ):
            return table
        return None

    def table(self) -> RoutingTable:
        """The current table, loading it from the source first if it is stale."""
        return self.cached_table() or self.refresh()

    def refresh(self, *, force: bool = False) -> RoutingTable:
        """Load the table from the source (one thread loads; concurrent callers wait)."""
        with self._lock:
            if not force:
                table = self.cached_table()
                if table is not None:
                    return table
            if self._resubscribe:
                self._resubscribe = False
                subscribe_fn = getattr(self.source, "subscribe", None)
                if callable(subscribe_fn):
                    self._subscription = subscribe_fn(self.invalidate)
            version = self._version
            started = self._clock()
            table = self._build(version, started)
            self._table = table
            return table

    def _build(self, version: int, loaded_at: float) -> RoutingTable:
        hosts: dict[str, Tenant | str] = {}
        for host, tenant in self.source.load().items():
            if not _routable(tenant):
                continue
            try:
                hosts[normalize_host(host, strip_www=self.strip_www)] = tenant
            except InvalidHostname:
                # One bad row must not take routing down for everyone: skip it, loudly.
                logger.warning("ignoring invalid host %r in the domain table", host)
        schemas: dict[str, Tenant | str] = {}
        if self.mode != "host":
            load_tenants = getattr(self.source, "load_tenants", None)
            tenants = load_tenants() if callable(load_tenants) else hosts.values()
            for tenant in tenants:
                if _routable(tenant) and not _is_public(tenant):
                    schemas[_schema_of(tenant)] = tenant
        return RoutingTable(hosts, schemas, version, loaded_at, self._answers(hosts, schemas))

    def _answers(
        self, hosts: Mapping[str, Tenant | str], schemas: Mapping[str, Tenant | str]
    ) -> dict[str, Resolution]:
        """Precomputed resolutions, written lowest precedence first so that later ones win."""
        if self.mode not in ("host", "subdomain"):
            return {}
        answers: dict[str, Resolution] = {}
        public = list(self.public_hosts)
        if self.base_domain is not None:
            public.append(self.base_domain)
            for schema, tenant in schemas.items():
                host = f"{schema.replace('_', '-')}.{self.base_domain}"
                if is_valid_hostname(host):
                    answers[host] = Resolution(Outcome.TENANT, tenant, host)
        for host, tenant in hosts.items():
            answers[host] = self._tenant(tenant, host)
        for host in public:
            answers[host] = Resolution(Outcome.PUBLIC, self.public_tenant, host)
        return answers

    def close(self) -> None:
        """Stop the change subscription and close the source if it has a ``close()``.

        The table stays usable until it goes stale.
        """
        self._resubscribe = False
        _subscribed_resolvers.discard(self)
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        close_source = getattr(self.source, "close", None)
        if callable(close_source):
            close_source()

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
        worker thread, as :class:`tenantkit.asgi.ASGITenantMiddleware` does.
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
        norm = self._normalise(host)
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

    def _normalise(self, host: str) -> str | None:
        cache = self._hosts_cache
        try:
            return cache[host]
        except KeyError:
            pass
        try:
            norm: str | None = normalize_host(host, strip_www=self.strip_www)
        except InvalidHostname:
            norm = None
        if len(cache) >= _CACHE_MAX:
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

    def _tenant(self, tenant: Tenant | str, host: str, prefix: str = "") -> Resolution:
        if _is_public(tenant):
            return Resolution(Outcome.PUBLIC, tenant, host, prefix)
        return Resolution(Outcome.TENANT, tenant, host, prefix)

    def _by_host(self, table: RoutingTable, host: str) -> Resolution:
        if host in self.public_hosts:
            return Resolution(Outcome.PUBLIC, self.public_tenant, host)
        tenant = table.hosts.get(host)
        if tenant is None:
            return Resolution(Outcome.UNKNOWN, host=host, reason="host not registered")
        return self._tenant(tenant, host)

    def _by_key(self, table: RoutingTable, key: str) -> Tenant | str | None:
        """A tenant by schema name (``-`` read as ``_``), else by a registered domain alias."""
        key = key.strip().lower()
        if _KEY_RE.fullmatch(key):
            tenant = table.schemas.get(key.replace("-", "_"))
            if tenant is not None:
                return tenant
        try:
            alias = normalize_host(key)
        except InvalidHostname:
            return None
        tenant = table.hosts.get(alias)
        return None if tenant is None or _is_public(tenant) else tenant

    def _by_subdomain(self, table: RoutingTable, host: str) -> Resolution:
        base = self.base_domain
        if host == base or host in self.public_hosts:
            return Resolution(Outcome.PUBLIC, self.public_tenant, host)
        tenant = table.hosts.get(host)
        if tenant is not None:
            return self._tenant(tenant, host)
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
            return Resolution(Outcome.PUBLIC, self.public_tenant, host)
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
            return Resolution(Outcome.PUBLIC, self.public_tenant, host)
        if not value.strip():
            return Resolution(Outcome.INVALID, host=host, reason="empty tenant header")
        tenant = self._by_key(table, value)
        if tenant is None:
            return Resolution(Outcome.UNKNOWN, host=host, reason="no tenant for this header")
        return Resolution(Outcome.TENANT, tenant, host)
