"""Tests of tenantkit.routing (pure resolution) and the registry listener."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import datetime, timezone

import psycopg
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tenantkit.domain_sources import REGISTRY_CHANNEL, RegistryListener, StaticDomainSource
from tenantkit.models import Tenant, TenantState
from tenantkit.names import is_valid_hostname, normalize_host
from tenantkit.routing import Outcome, RoutingTable, TenantResolver


def tenant(schema: str, *, state: TenantState = TenantState.ACTIVE, public: bool = False) -> Tenant:
    return Tenant(
        id=abs(hash(schema)) % 10_000,
        schema=schema,
        name=schema,
        state=state,
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        is_public=public,
    )


ACME = tenant("acme")
GLOBEX = tenant("globex_corp")
PUBLIC = tenant("public", public=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoSubscribeSource:
    """A source that cannot report changes (so misses may reload)."""

    def __init__(self, hosts: Mapping[str, Tenant | str]) -> None:
        self.hosts = dict(hosts)
        self.loads = 0

    def load(self) -> Mapping[str, Tenant | str]:
        self.loads += 1
        return dict(self.hosts)


def resolver(hosts: Mapping[str, Tenant | str] | None = None, **kw: object) -> TenantResolver:
    source = StaticDomainSource(
        {"acme.example.com": ACME, "globex.test": GLOBEX} if hosts is None else hosts,
        tenants=[ACME, GLOBEX],
    )
    return TenantResolver(source, **kw)  # type: ignore[arg-type]


# -- property: resolution equals the normalised exact match ---------------------------------

_label = st.text(alphabet="abcxyz09-äöüéñ", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-") and not s.endswith("-") and "--" not in s
)
_hostname = st.lists(_label, min_size=1, max_size=4).map(".".join).filter(is_valid_hostname)


@st.composite
def _variant(draw: st.DrawFn, host: str) -> str:
    """The same host as a client might send it: case, port, trailing dot, IDNA form."""
    norm = normalize_host(host)
    base = draw(st.sampled_from([host, norm, norm.encode("ascii").decode("idna")]))
    base = "".join(c.upper() if draw(st.booleans()) else c for c in base)
    if draw(st.booleans()):
        base += "."
    if draw(st.booleans()):
        base += f":{draw(st.integers(1, 65535))}"
    return base


@settings(max_examples=100, deadline=None)
@given(
    table=st.dictionaries(_hostname, st.sampled_from(["a1", "b2", "c3", "d4"]), max_size=12),
    data=st.data(),
    strangers=st.lists(_hostname, max_size=5),
)
def test_resolution_is_normalised_exact_match(
    table: dict[str, str], data: st.DataObject, strangers: list[str]
) -> None:
    expected = {normalize_host(host): schema for host, schema in table.items()}
    res = TenantResolver(StaticDomainSource(table))
    for host in table:
        variant = data.draw(_variant(host))
        result = res.resolve(variant)
        assert result.outcome is Outcome.TENANT
        assert result.tenant == expected[normalize_host(host)]
        assert result.host == normalize_host(host)
    for host in strangers:
        assume(normalize_host(host) not in expected)
        result = res.resolve(data.draw(_variant(host)))
        assert result.outcome is Outcome.UNKNOWN
        assert result.tenant is None


# -- host mode ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["bad host", "a/b", "", "exa_mple.com", "[::1", "x:port", "-a.com", "a..b"]
)
def test_bad_host_is_invalid_not_unknown(host: str) -> None:
    result = resolver().resolve(host)
    assert result.outcome is Outcome.INVALID
    assert result.tenant is None


def test_missing_host_is_invalid() -> None:
    assert resolver().resolve(None).outcome is Outcome.INVALID


def test_unknown_host_is_unknown() -> None:
    result = resolver().resolve("evil.example.com")
    assert (result.outcome, result.tenant, result.host) == (
        Outcome.UNKNOWN,
        None,
        "evil.example.com",
    )


def test_public_hosts_and_public_tenant() -> None:
    res = resolver(public_hosts=["Example.COM"], public_tenant=PUBLIC)
    result = res.resolve("example.com:443")
    assert (result.outcome, result.tenant) == (Outcome.PUBLIC, PUBLIC)
    registered = resolver({"www.example.org": PUBLIC}).resolve("WWW.example.org")
    assert (registered.outcome, registered.tenant) == (Outcome.PUBLIC, PUBLIC)


@pytest.mark.parametrize("state", [TenantState.PROVISIONING, TenantState.FAILED, "dropping"])
def test_inactive_tenants_are_not_routable(state: TenantState) -> None:
    res = resolver({"new.test": tenant("new", state=TenantState(state))})
    assert res.resolve("new.test").outcome is Outcome.UNKNOWN


def test_strip_www_and_ip_literals() -> None:
    res = resolver({"acme.example.com": ACME, "[2001:db8::1]": GLOBEX}, strip_www=True)
    assert res.resolve("www.acme.example.com").tenant == ACME
    assert res.resolve("[2001:DB8:0::1]:8080").tenant == GLOBEX
    assert resolver().resolve("www.acme.example.com").outcome is Outcome.UNKNOWN


def test_bad_rows_in_the_table_are_skipped() -> None:
    res = resolver({"bad host": ACME, "globex.test": GLOBEX})
    assert res.resolve("globex.test").tenant == GLOBEX


# -- forwarded headers ----------------------------------------------------------------------


def test_forwarded_host_only_from_trusted_proxies() -> None:
    res = resolver(trusted_proxies=["10.0.0.0/8", "::1"])
    fwd = "acme.example.com"
    assert res.resolve("lb", client="10.1.2.3", forwarded=fwd).tenant == ACME
    assert res.resolve("lb", client="::1", forwarded=fwd).tenant == ACME
    # Untrusted client: the header is ignored and the Host is used.
    assert res.resolve("globex.test", client="192.0.2.9", forwarded=fwd).tenant == GLOBEX
    assert res.resolve("globex.test", client="unix:/sock", forwarded=fwd).tenant == GLOBEX
    # The proxy appends: the right-most value is the one it vouches for.
    spoofed = "acme.example.com, globex.test"
    assert res.resolve("lb", client="10.0.0.1", forwarded=spoofed).tenant == GLOBEX
    assert res.resolve("lb", client="10.0.0.1", forwarded=" ,").outcome is Outcome.INVALID
    assert res.resolve("lb", client="10.0.0.1", forwarded="a b").outcome is Outcome.INVALID


def test_standard_forwarded_header() -> None:
    res = resolver(trusted_proxies=["127.0.0.1"], forwarded_header="forwarded")
    value = 'for=1.2.3.4;host=evil.test, for=5.6.7.8;proto=https;host="acme.example.com"'
    assert res.resolve("lb", client="127.0.0.1", forwarded=value).tenant == ACME
    missing = res.resolve("lb", client="127.0.0.1", forwarded="for=1.2.3.4")
    assert missing.outcome is Outcome.INVALID


# -- subdomain, path and header modes -------------------------------------------------------


def test_subdomain_mode() -> None:
    res = resolver(mode="subdomain", base_domain="Example.com", public_tenant=PUBLIC)
    assert res.resolve("acme.example.com").tenant == ACME
    assert res.resolve("globex-corp.example.com").tenant == GLOBEX
    assert res.resolve("GLOBEX_CORP.example.com").outcome is Outcome.INVALID
    assert res.resolve("globex.test").tenant == GLOBEX  # a registered custom domain
    assert res.resolve("example.com").outcome is Outcome.PUBLIC
    for host in ("nobody.example.com", "a.acme.example.com", "acme.other.com"):
        assert res.resolve(host).outcome is Outcome.UNKNOWN, host
    with pytest.raises(ValueError, match="base_domain"):
        resolver(mode="subdomain")


def test_path_mode() -> None:
    res = resolver(mode="path", path_prefix="/t/")
    result = res.resolve("app.test", path="/t/acme/orders/1")
    assert (result.outcome, result.tenant, result.prefix) == (Outcome.TENANT, ACME, "/t/acme")
    assert res.resolve("app.test", path="/t/globex-corp").prefix == "/t/globex-corp"
    assert res.resolve("app.test", path="/t/globex.test/x").tenant == GLOBEX  # domain alias
    assert res.resolve("app.test", path="/pricing").outcome is Outcome.PUBLIC
    for path in ("/t/", "/t/nobody/x", "/t/%2e%2e/x"):
        assert res.resolve("app.test", path=path).outcome is Outcome.UNKNOWN, path
    assert res.resolve("bad host", path="/t/acme").outcome is Outcome.INVALID
    restricted = resolver(mode="path", public_hosts=["app.test"])
    assert restricted.resolve("other.test", path="/t/acme").outcome is Outcome.UNKNOWN
    with pytest.raises(ValueError, match="path_prefix"):
        resolver(mode="path", path_prefix="/")


def test_header_mode() -> None:
    res = resolver(mode="header", header="X-Tenant")
    assert res.resolve("svc", header_value="acme").tenant == ACME
    assert res.resolve("svc", header_value="acme.example.com").tenant == ACME
    assert res.resolve("svc").outcome is Outcome.PUBLIC
    assert res.resolve("svc", header_value="nobody").outcome is Outcome.UNKNOWN
    assert res.resolve("svc", header_value=" ").outcome is Outcome.INVALID
    internal = resolver(mode="header", trusted_proxies=["10.0.0.0/8"])
    assert internal.resolve("svc", client="10.0.0.2", header_value="acme").tenant == ACME
    outsider = internal.resolve("svc", client="203.0.113.5", header_value="acme")
    assert (outsider.outcome, outsider.tenant) == (Outcome.PUBLIC, None)


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        resolver(mode="cookie")
    with pytest.raises(ValueError, match="forwarded_header"):
        resolver(forwarded_header="x-real-host")


# -- caching --------------------------------------------------------------------------------


def test_warm_resolution_does_not_load_and_changes_invalidate() -> None:
    source = StaticDomainSource({"a.test": ACME})
    res = TenantResolver(source)
    assert res.subscribed
    for _ in range(100):
        assert res.resolve("a.test").tenant == ACME
    assert source.loads == 1
    source.update({"b.test": GLOBEX})
    assert res.resolve("a.test").outcome is Outcome.UNKNOWN
    assert res.resolve("b.test").tenant == GLOBEX
    assert source.loads == 2
    res.close()
    subscribed: bool = res.subscribed
    assert not subscribed
    source.update({})
    assert res.resolve("b.test").tenant == GLOBEX  # no longer subscribed: cached


def test_ttl_is_a_safety_net() -> None:
    clock = Clock()
    source = StaticDomainSource({"a.test": ACME})
    res = TenantResolver(source, ttl=60, subscribe=False, clock=clock)
    res.resolve("a.test")
    clock.now += 59
    res.resolve("a.test")
    assert source.loads == 1
    clock.now += 2
    assert res.cached_table() is None
    res.resolve("a.test")
    assert source.loads == 2


def test_misses_reload_at_most_once_per_negative_ttl() -> None:
    clock = Clock()
    source = NoSubscribeSource({"a.test": ACME})
    res = TenantResolver(source, negative_ttl=5, clock=clock)
    assert not res.subscribed
    res.resolve("a.test")
    assert source.loads == 1
    source.hosts["new.test"] = GLOBEX
    clock.now += 10
    # A miss may mean a domain added a moment ago: one reload finds it.
    assert res.resolve("new.test").tenant == GLOBEX
    assert source.loads == 2
    # A flood of random hosts costs at most one reload per negative_ttl.
    for i in range(1000):
        assert res.resolve(f"random{i}.test").outcome is Outcome.UNKNOWN
    assert source.loads == 2
    clock.now += 6
    res.resolve("random0.test")  # its negative entry and the reload window have expired
    assert source.loads == 3
    res.resolve("random1.test")
    assert source.loads == 3


def test_subscribed_resolver_never_reloads_on_miss() -> None:
    source = StaticDomainSource({"a.test": ACME})
    res = TenantResolver(source, negative_ttl=0)
    for i in range(50):
        res.resolve(f"x{i}.test")
    assert source.loads == 1


def test_concurrent_first_requests_load_once() -> None:
    source = StaticDomainSource({"a.test": ACME})
    res = TenantResolver(source)
    barrier = threading.Barrier(8)

    def hit() -> None:
        barrier.wait()
        assert res.resolve("a.test").tenant == ACME

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert source.loads == 1


def test_table_snapshot_and_schemas() -> None:
    res = resolver(mode="header", public_tenant=PUBLIC)
    table = res.table()
    assert isinstance(table, RoutingTable)
    assert table.hosts["acme.example.com"] == ACME
    assert set(table.schemas) == {"acme", "globex_corp"}
    # Schema strings work as tenants too.
    assert resolver({"s.test": "plain_schema"}).resolve("s.test").tenant == "plain_schema"


# -- the registry listener (real server, no registry needed) -------------------------------


def test_listener_reports_notifications_and_reconnects(conn: psycopg.Connection, dsn: str) -> None:
    calls: list[float] = []
    event = threading.Event()

    def callback() -> None:
        calls.append(1)
        event.set()

    listener = RegistryListener(dsn, callback, poll_interval=0.05)
    try:
        assert listener.wait_live(5)
        assert event.wait(2)  # the initial "you may have missed something" call
        event.clear()
        for _ in range(20):  # a burst is coalesced
            conn.execute(f"NOTIFY {REGISTRY_CHANNEL}")
        assert event.wait(1)
        count = len(calls)
        assert count <= 4
        # Kill its backend: it reconnects, goes live again and reports a possible miss.
        event.clear()
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'tenantkit-router' AND datname = current_database()"
        )
        assert event.wait(5)
        assert listener.wait_live(5)
    finally:
        listener.close()
    assert not listener.live


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_subscribes_again() -> None:
    source = StaticDomainSource({"a.test": ACME})
    res = TenantResolver(source)
    assert res.resolve("a.test").tenant == ACME
    pid = os.fork()
    if pid == 0:  # the child: the subscription did not survive the fork, the table is stale
        ok = res.cached_table() is None and not res.subscribed
        ok = ok and res.resolve("a.test").tenant == ACME and res.subscribed
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert res.cached_table() is not None  # the parent is untouched
    res.close()
