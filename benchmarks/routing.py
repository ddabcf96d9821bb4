"""Benchmark: routing overhead per request, and routing at scale.

Part ``apps`` (issue 5, acceptance 4): routed vs unrouted requests/s of a one-query WSGI app and
a one-query ASGI app. Each request runs one query (``SELECT ... FROM items``) on a pooled
connection, rotating over the tenants' hosts:

- *bare*: the app is told its tenant in the environ/scope by the driver and calls
  ``tenancy.connection(tenant)``: the same ``search_path`` switches, no routing;
- *routed*: the same app behind ``WSGITenantMiddleware`` / ``ASGITenantMiddleware`` (registry
  source, LISTEN/NOTIFY), calling ``tenancy.connection()`` with the routed current tenant.

The apps are driven in-process (the WSGI callable / the ASGI coroutine called in a loop with a
synthetic environ/scope), so no HTTP client is measured. Short rounds alternate (AB BA ...)
and the overhead is the median of each routed round's time over its neighbouring bare round's,
so load from other processes on a shared machine hits both sides alike. Target: overhead
< 10%, and no routing load (registry query) during the measured requests.

Part ``scale`` (issue 17): registries of ``--small`` (100) and ``--scale`` (10,000) tenants,
made by bulk INSERTs into the registry tables (routing reads only those: no schema is created):

- *table load*: ``refresh(force=True)`` of a resolver (one query and the table build), and a
  fresh resolver up to its first answer; target < 150 ms at 10,000;
- *warm lookup*: ``resolve()`` with hosts rotating over every tenant, as browsers send them
  (canonical) and with a port (the cached normalisation); target: the 10,000-tenant figure
  within 1.5x of the 100-tenant one;
- *entry reload*: what a changed domain costs (``reload_entries``, one small query and a
  patched table) against a full load;
- *close*: ``WSGITenantMiddleware.close()`` of a middleware built from a ``Tenancy`` (its
  LISTEN thread and connection).

    PGTENANTS_DSN=... python benchmarks/routing.py [--part apps|scale|all] [--requests 250]
        [--rounds 60] [--tenants 100] [--small 100] [--scale 10000]

Without PGTENANTS_DSN an embedded server is started.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import wsgiref.util
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from psycopg import sql

from tenantkit.core.models import Tenant
from tenantkit.core.tenancy import AsyncTenancy, Tenancy
from tenantkit.server import server_conninfo_from_env, temporary_database
from tenantkit.web.asgi import ASGITenantMiddleware, Message, Receive, Scope, Send
from tenantkit.web.routing import TenantResolver
from tenantkit.web.sources import RegistryDomainSource
from tenantkit.web.wsgi import WSGITenantMiddleware

QUERY = "SELECT id, v FROM items WHERE id = 1"
TARGET = 0.10


class CountingSource(RegistryDomainSource):
    """The registry source, counting its loads (each one a registry query)."""

    loads = 0

    def load(self) -> Mapping[str, Tenant]:
        self.loads += 1
        return super().load()

    def load_routes(self) -> Any:  # the one-query load of tenantkit >= issue 17
        self.loads += 1
        return super().load_routes()  # type: ignore[misc]


def setup(dsn: str, n: int) -> dict[str, Tenant]:
    """``n`` tenants, each with a domain and an ``items`` table holding one row."""
    hosts: dict[str, Tenant] = {}
    with Tenancy(dsn, max_size=1) as tenancy:
        tenancy.install()
        for i in range(n):
            host = f"t{i}.bench.test"
            hosts[host] = tenancy.create_tenant(f"bench_{i:03d}", domains=[host])
        with tenancy.admin_connection() as conn:
            for t in hosts.values():
                table = sql.Identifier(t.schema, "items")
                conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(table))
                conn.execute(sql.SQL("INSERT INTO {} VALUES (1, %s)").format(table), [t.schema])
    return hosts


def bench_wsgi(dsn: str, hosts: dict[str, Tenant], args: argparse.Namespace) -> dict[str, Any]:
    tenancy = Tenancy(dsn, min_size=1, max_size=1)
    source = CountingSource(tenancy)

    def bare(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with tenancy.connection(environ["bench.tenant"]) as conn:
            row = conn.execute(QUERY).fetchone()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(row).encode()]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with tenancy.connection() as conn:  # the routed current tenant
            row = conn.execute(QUERY).fetchone()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(row).encode()]

    resolver = TenantResolver(source, public_tenant=tenancy.public_tenant)
    resolver.wait_subscribed(5)
    routed = WSGITenantMiddleware(app, resolver)
    environs = []
    for host, tenant in hosts.items():
        environ: dict[str, Any] = {"HTTP_HOST": host, "PATH_INFO": "/"}
        wsgiref.util.setup_testing_defaults(environ)
        environ["bench.tenant"] = tenant
        environs.append(environ)
    n_env = len(environs)

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def run(wsgi_app: Any, n: int) -> float:
        began = time.perf_counter()
        for i in range(n):
            result = wsgi_app(dict(environs[i % n_env]), start_response)
            for _ in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return time.perf_counter() - began

    # Correctness first: each routed request saw its own tenant's row.
    for environ in environs:
        body = b"".join(routed(dict(environ), start_response)).decode()
        assert environ["bench.tenant"].schema in body, body
    try:
        return measure({"bare": bare, "routed": routed}, run, source, args)
    finally:
        resolver.close()
        tenancy.close()


def bench_asgi(dsn: str, hosts: dict[str, Tenant], args: argparse.Namespace) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        atenancy = AsyncTenancy(dsn, min_size=1, max_size=1)
        await atenancy.install()
        source = CountingSource(atenancy)
        start = {"type": "http.response.start", "status": 200, "headers": []}

        async def bare(scope: Scope, receive: Receive, send: Send) -> None:
            async with atenancy.connection(scope["bench.tenant"]) as conn:
                row = await (await conn.execute(QUERY)).fetchone()
            await send(start)
            await send({"type": "http.response.body", "body": str(row).encode()})

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            async with atenancy.connection() as conn:  # the routed current tenant
                row = await (await conn.execute(QUERY)).fetchone()
            await send(start)
            await send({"type": "http.response.body", "body": str(row).encode()})

        resolver = TenantResolver(source, public_tenant=atenancy.public_tenant)
        resolver.wait_subscribed(5)
        routed = ASGITenantMiddleware(app, resolver)
        scopes: list[dict[str, Any]] = [
            {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/",
                "raw_path": b"/",
                "root_path": "",
                "query_string": b"",
                "headers": [(b"host", host.encode()), (b"user-agent", b"bench")],
                "client": ("127.0.0.1", 40000),
                "server": ("127.0.0.1", 80),
                "bench.tenant": tenant,
            }
            for host, tenant in hosts.items()
        ]
        n_scopes = len(scopes)
        bodies: list[bytes] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                bodies.append(message["body"])

        async def run(asgi_app: Any, n: int) -> float:
            began = time.perf_counter()
            for i in range(n):
                await asgi_app(dict(scopes[i % n_scopes]), receive, send)
            elapsed = time.perf_counter() - began
            bodies.clear()
            return elapsed

        for scope in scopes:
            await routed(dict(scope), receive, send)
            assert scope["bench.tenant"].schema in bodies.pop().decode()
        try:
            return await ameasure({"bare": bare, "routed": routed}, run, source, args)
        finally:
            resolver.close()
            await atenancy.close()

    return asyncio.run(main())


def measure(
    apps: dict[str, Any], run: Callable[[Any, int], float], source: CountingSource, args: Any
) -> dict[str, Any]:
    timings: dict[str, list[float]] = {name: [] for name in apps}
    loads_before = source.loads
    for app in apps.values():
        run(app, 300)  # warm up: plans, cached paths, caches
    for order in _orders(list(apps), args.rounds):
        for name in order:
            timings[name].append(run(apps[name], args.requests) / args.requests)
    return {"timings": timings, "loads": source.loads - loads_before}


async def ameasure(
    apps: dict[str, Any], run: Callable[[Any, int], Any], source: CountingSource, args: Any
) -> dict[str, Any]:
    timings: dict[str, list[float]] = {name: [] for name in apps}
    loads_before = source.loads
    for app in apps.values():
        await run(app, 300)
    for order in _orders(list(apps), args.rounds):
        for name in order:
            timings[name].append(await run(apps[name], args.requests) / args.requests)
    return {"timings": timings, "loads": source.loads - loads_before}


def _orders(names: list[str], rounds: int) -> list[list[str]]:
    # Short rounds in alternating order (AB BA AB ...): on a shared machine the load drifts,
    # and each routed round is compared with the bare round next to it.
    return [names if r % 2 == 0 else names[::-1] for r in range(rounds)]


def report(label: str, result: dict[str, Any]) -> bool:
    bares, routeds = result["timings"]["bare"], result["timings"]["routed"]
    bare, routed = statistics.median(bares), statistics.median(routeds)
    # The median of the paired ratios: robust against load from other processes.
    overhead = statistics.median(r / b for b, r in zip(bares, routeds, strict=True)) - 1
    ok: bool = overhead < TARGET and result["loads"] == 0
    print(
        f"{label:<5} bare {1 / bare:8.0f} req/s  routed {1 / routed:8.0f} req/s  "
        f"ratio {1 / (1 + overhead):5.3f}  overhead {overhead * 100:+5.1f}%  "
        f"(+{(routed - bare) * 1e6:.1f} us/request)  routing loads while measured: "
        f"{result['loads']}  {'OK' if ok else 'MISSED'}"
    )
    return ok


# -- routing at scale (issue 17) -----------------------------------------------------------

LOAD_TARGET = 0.150
FLAT_TARGET = 1.5


def bulk_registry(dsn: str, n: int) -> tuple[str, list[str]]:
    """A registry of ``n`` tenants with one host each, in two INSERTs; returns (shared, hosts)."""
    shared = f"bench_routing_{n}"
    with Tenancy(dsn, shared_schema=shared, max_size=1) as tenancy:
        tenancy.install()
        with tenancy.admin_connection() as conn:
            tenants = sql.Identifier(shared, "tenantkit_tenants")
            domains = sql.Identifier(shared, "tenantkit_domains")
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (schema, name) SELECT 't' || lpad(i::text, 5, '0'),"
                    " 'Tenant ' || i FROM generate_series(1, %s) i"
                ).format(tenants),
                [n],
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (host, tenant_id, is_primary) SELECT schema || %s, id, true"
                    " FROM {} WHERE NOT is_public"
                ).format(domains, tenants),
                [f".n{n}.bench.test"],
            )
            rows = conn.execute(
                sql.SQL("SELECT host FROM {} ORDER BY host").format(domains)
            ).fetchall()
    return shared, [r[0] for r in rows]


def seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def lookup_seconds(resolver: TenantResolver, hosts: list[str], rounds: int = 7) -> float:
    """Median seconds per ``resolve()`` over rounds of 100,000 lookups, hosts rotating."""
    count = 100_000
    sequence = (hosts * (count // len(hosts) + 1))[:count]
    resolve = resolver.resolve
    for host in hosts:  # warm: each spelling seen once
        resolve(host)
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        for host in sequence:
            resolve(host)
        times.append((time.perf_counter() - began) / count)
    return statistics.median(times)


def bench_scale(dsn: str, n: int) -> dict[str, float]:
    shared, hosts = bulk_registry(dsn, n)
    out: dict[str, float] = {}
    with Tenancy(dsn, shared_schema=shared, max_size=2) as tenancy:
        resolver = TenantResolver.from_tenancy(tenancy, subscribe=False)
        resolver.refresh(force=True)
        out["table load"] = seconds(lambda: resolver.refresh(force=True), 9)

        def first_answer() -> None:
            fresh = TenantResolver.from_tenancy(tenancy, subscribe=False)
            fresh.resolve(hosts[-1])
            fresh.close()

        out["fresh resolver, first answer"] = seconds(first_answer, 5)
        out["warm lookup, canonical host"] = lookup_seconds(resolver, hosts)
        out["warm lookup, host:port"] = lookup_seconds(resolver, [h + ":8443" for h in hosts])
        reload_entries = getattr(resolver, "reload_entries", None)
        if callable(reload_entries):
            from tenantkit.web.sources import Change

            change = Change(hosts=frozenset({hosts[len(hosts) // 2]}))
            out["entry reload (one domain)"] = seconds(lambda: reload_entries(change), 21)
        resolver.close()

        def noop(environ: Any, start_response: Callable[..., Any]) -> Iterable[bytes]:
            return []

        closes = []
        for _ in range(10):
            middleware = WSGITenantMiddleware(noop, tenancy)
            middleware.resolver.wait_subscribed(5)
            warm = getattr(middleware, "warm", None)
            if callable(warm):
                warm()  # the background load done: close() alone is measured
            close = getattr(middleware, "close", middleware.resolver.close)
            began = time.perf_counter()
            close()
            closes.append(time.perf_counter() - began)
        out["middleware close()"] = statistics.median(closes)
    return out


def report_scale(small: int, large: int, a: dict[str, float], b: dict[str, float]) -> bool:
    print(f"routing at scale: {small} vs {large} tenants (one host each), medians")
    print(f"{'':32} {small:>12} {large:>12} {'ratio':>8}")
    for key in a:
        unit, factor = ("us", 1e6) if "lookup" in key else ("ms", 1e3)
        print(
            f"{key:32} {a[key] * factor:9.2f} {unit} {b[key] * factor:9.2f} {unit} "
            f"{b[key] / a[key]:7.2f}x"
        )
    load_ok = b["table load"] < LOAD_TARGET
    flat = b["warm lookup, canonical host"] / a["warm lookup, canonical host"]
    flat_ok = flat <= FLAT_TARGET
    print(
        f"table load at {large}: {b['table load'] * 1e3:.1f} ms (target < {LOAD_TARGET * 1e3:.0f} "
        f"ms) {'OK' if load_ok else 'MISSED'}; warm lookup {large}/{small}: {flat:.2f}x "
        f"(target <= {FLAT_TARGET}x) {'OK' if flat_ok else 'MISSED'}"
    )
    return load_ok and flat_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["apps", "scale", "all"], default="all")
    parser.add_argument("--requests", type=int, default=250, help="requests per round")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--small", type=int, default=100, help="scale part: baseline tenants")
    parser.add_argument("--scale", type=int, default=10_000, help="scale part: tenants")
    args = parser.parse_args()
    ok = True
    with (
        server_conninfo_from_env() as server,
        temporary_database(server, prefix="tk_bench_routing") as dsn,
    ):
        if args.part in ("apps", "all"):
            hosts = setup(dsn, args.tenants)
            wsgi = bench_wsgi(dsn, hosts, args)
            asgi = bench_asgi(dsn, hosts, args)
            print(
                f"one-query app, {args.tenants} tenants rotating, {args.rounds} rounds x "
                f"{args.requests} requests per side, alternating; req/s: median round; "
                f"overhead: median of paired round ratios; target < {TARGET:.0%}"
            )
            ok = report("WSGI", wsgi) & report("ASGI", asgi)
        if args.part in ("scale", "all"):
            small = bench_scale(dsn, args.small)
            large = bench_scale(dsn, args.scale)
            ok = report_scale(args.small, args.scale, small, large) and ok
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
