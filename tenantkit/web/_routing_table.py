"""The routing table: its values, how it is built from a source's rows, and patched by entry.

Pure: no I/O. :class:`~tenantkit.web.routing.TenantResolver` feeds a :class:`TableBuilder` what its
source loaded and answers requests from the resulting :class:`RoutingTable`;
:mod:`tenantkit.web.routing` and :mod:`tenantkit.web.sources` re-export the public values.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.names import is_valid_hostname, normalize_host
from ..errors import InvalidHostname

if TYPE_CHECKING:
    from ..core.models import Tenant

logger = logging.getLogger("tenantkit.web.routing")

# Hosts that are certainly their own normalisation (plain lower-case ASCII labels, no A-label,
# a last label starting with a letter, at most 253 characters): a table load takes them as
# they are instead of normalising 10,000 of them. A strict subset of what normalize_host()
# returns unchanged; tests/tenantkit/test_routing.py checks that it stays one.
CANONICAL_HOST = re.compile(
    r"(?=[a-z0-9.-]{1,253}\Z)(?!.*xn--)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
    r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


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
    #: The tenant public requests run as (the resolver's ``public_tenant``, or the source's).
    public_tenant: Tenant | str | None = None


@dataclass(frozen=True)
class Routes:
    """What a source load returns.

    ``hosts`` maps hosts (need not be normalised) to tenants; ``tenants`` lists tenants that
    may be selected by schema name (subdomain, path and header modes) even without a host;
    ``public`` is the source's public tenant, if it knows one.
    """

    hosts: Mapping[str, Tenant | str]
    tenants: Collection[Tenant | str] = ()
    public: Tenant | str | None = None


@dataclass(frozen=True)
class Change:
    """Entries a source reports as changed: tenants by id, and hosts.

    A resolver reloads just these (through the source's ``load_entries``) instead of the
    whole table.
    """

    tenant_ids: frozenset[int] = field(default_factory=frozenset)
    hosts: frozenset[str] = field(default_factory=frozenset)


def schema_of(tenant: Tenant | str) -> str:
    return tenant if isinstance(tenant, str) else tenant.schema


def routable(tenant: Tenant | str) -> bool:
    """Whether requests may be served as ``tenant``."""
    # A tenant being provisioned, failed or dropping must not serve requests: its schema may
    # be incomplete or about to disappear. ``state`` is a str enum, so compare by value.
    return isinstance(tenant, str) or tenant.is_public or tenant.state == "active"


def is_public(tenant: Tenant | str) -> bool:
    return not isinstance(tenant, str) and tenant.is_public


def tenant_answer(tenant: Tenant | str, host: str, prefix: str = "") -> Resolution:
    """The answer for a request selecting ``tenant`` (PUBLIC for the public tenant)."""
    if is_public(tenant):
        return Resolution(Outcome.PUBLIC, tenant, host, prefix)
    return Resolution(Outcome.TENANT, tenant, host, prefix)


class TableBuilder:
    """Builds :class:`RoutingTable` values for one resolver's configuration.

    ``answers`` (host and subdomain modes) holds a :class:`Resolution` per known host, by
    precedence: a public host, then a registered host, then a tenant's subdomain spelling
    ``<schema>.<base_domain>``.
    """

    def __init__(
        self,
        *,
        mode: str,
        strip_www: bool,
        base_domain: str | None,
        public_hosts: frozenset[str],
    ) -> None:
        self.mode = mode
        self.strip_www = strip_www
        self.base_domain = base_domain
        self.public_keys = public_hosts | ({base_domain} if base_domain is not None else set())
        self.answers = mode in ("host", "subdomain")

    def key(self, host: str) -> str | None:
        """The table key of a host from the source (``None``: skipped, loudly)."""
        if CANONICAL_HOST.fullmatch(host) and not (
            self.strip_www and host.startswith("www.") and host.count(".") > 1
        ):
            return host
        try:
            return normalize_host(host, strip_www=self.strip_www)
        except InvalidHostname:
            # One bad row must not take routing down for everyone: skip it, loudly.
            logger.warning("ignoring invalid host %r in the domain table", host)
            return None

    def subdomain_key(self, schema: str) -> str | None:
        """``<schema>.<base_domain>`` (``_`` spelled ``-``) when that is a valid host."""
        if self.base_domain is None:
            return None
        host = f"{schema.replace('_', '-')}.{self.base_domain}"
        return host if CANONICAL_HOST.fullmatch(host) or is_valid_hostname(host) else None

    def build(
        self,
        loaded_hosts: Mapping[str, Tenant | str],
        tenants: Iterable[Tenant | str] | None,
        public: Tenant | str | None,
        version: int,
        loaded_at: float,
    ) -> RoutingTable:
        """A table from a full load (``tenants=None``: the tenants of the hosts)."""
        hosts: dict[str, Tenant | str] = {}
        for host, tenant in loaded_hosts.items():
            if routable(tenant):
                key = self.key(host)
                if key is not None:
                    hosts[key] = tenant
        schemas: dict[str, Tenant | str] = {}
        if self.mode != "host":
            for tenant in hosts.values() if tenants is None else tenants:
                if routable(tenant) and not is_public(tenant):
                    schemas[schema_of(tenant)] = tenant
        answers: dict[str, Resolution] = {}
        if self.answers:
            # Lowest precedence first, so that later ones win.
            for schema, tenant in schemas.items():
                sub = self.subdomain_key(schema)
                if sub is not None:
                    answers[sub] = Resolution(Outcome.TENANT, tenant, sub)
            for host, tenant in hosts.items():
                answers[host] = tenant_answer(tenant, host)
            for host in self.public_keys:
                answers[host] = Resolution(Outcome.PUBLIC, public, host)
        return RoutingTable(hosts, schemas, version, loaded_at, answers, public)

    def patch(
        self, table: RoutingTable, change: Change, routes: Routes, *, public_from_source: bool
    ) -> RoutingTable | None:
        """``table`` with the entries ``change`` names replaced by ``routes`` (what the source
        has for them now); ``None`` when only a full reload will do.

        Untouched entries stay the very same objects.
        """
        ids = change.tenant_ids
        public = table.public_tenant
        if public_from_source and public is not None and getattr(public, "id", None) in ids:
            return None  # the public tenant changed: every public answer carries it
        hosts = dict(table.hosts)
        schemas = dict(table.schemas)
        touched: set[str | None] = set()
        for host in change.hosts:
            key = self.key(host)
            if key is not None:
                hosts.pop(key, None)
                touched.add(key)
        if ids:
            for key, tenant in table.hosts.items():
                if getattr(tenant, "id", None) in ids:
                    hosts.pop(key, None)
                    touched.add(key)
            for schema, tenant in table.schemas.items():
                if getattr(tenant, "id", None) in ids:
                    del schemas[schema]
                    touched.add(self.subdomain_key(schema))
        for host, tenant in routes.hosts.items():
            if routable(tenant):
                key = self.key(host)
                if key is not None:
                    hosts[key] = tenant
                    touched.add(key)
        if self.mode != "host":
            for tenant in routes.tenants:
                if routable(tenant) and not is_public(tenant):
                    schema = schema_of(tenant)
                    schemas[schema] = tenant
                    touched.add(self.subdomain_key(schema))
        answers = table.resolved
        if self.answers:
            answers = dict(answers)
            for key in touched:
                if key is not None:
                    answer = self._answer(key, hosts, schemas, public)
                    if answer is None:
                        answers.pop(key, None)
                    else:
                        answers[key] = answer
        return RoutingTable(hosts, schemas, table.version, table.loaded_at, answers, public)

    def _answer(
        self,
        key: str,
        hosts: Mapping[str, Tenant | str],
        schemas: Mapping[str, Tenant | str],
        public: Tenant | str | None,
    ) -> Resolution | None:
        """The answer for one key, by the precedence of :meth:`build`."""
        if key in self.public_keys:
            return Resolution(Outcome.PUBLIC, public, key)
        tenant = hosts.get(key)
        if tenant is not None:
            return tenant_answer(tenant, key)
        label, dot, rest = key.partition(".")
        if dot and rest == self.base_domain:
            tenant = schemas.get(label.replace("-", "_"))
            if tenant is not None and self.subdomain_key(schema_of(tenant)) == key:
                return Resolution(Outcome.TENANT, tenant, key)
        return None
