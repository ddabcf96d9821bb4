"""Benchmark: the cost of switching tenants (issue 3, acceptance 3).

The same one-row query, one request = borrow a pooled connection, run it, commit, give it back:

(a) a plain psycopg_pool pool whose connections have a fixed ``search_path`` (no tenancy);
(b) ``Tenancy.connection(tenant)`` rotating over 100 tenants (the path changes every request);
(c) ``Tenancy.connection(tenant)`` with the tenant unchanged;
(d) a hand-written switch, rotating over the same tenants: ``SET LOCAL`` sent with ``BEGIN``
    and one prepared statement per tenant (what one would write without tenantkit);
(e) no switch at all: (a)'s fixed path, reading the same 100 tenant tables in rotation by
    schema-qualified name. Touching a different table every request costs PostgreSQL (and
    the client) more than touching one; that share of (b)'s extra time belongs to
    schema-per-tenant itself, not to the switch: (e) is the floor (b) cannot go below,
    and ``b / e`` is what switching adds on top of it.

Each variant is timed interleaved request by request with (a) (a, X, a, X, ...), in blocks of
--requests; its ratio is the median over the blocks of its median over (a)'s median. Pairs,
not all variants in one rotation: every variant has its own server backend, and the ones that
rotate over 100 tables (b, d, e) evict each other's cached catalog entries, plans and buffers
from the CPU caches on every request when run back to back, which would charge each of them
for the others (measured: +0.15 on b's ratio). Pairs give every variant the same
neighbour, and shared-machine noise still weighs on both sides of each ratio alike.

Prints the time per request, the ratio to (a), the round trips per request counted on the client
(libpq trace: backend ``ReadyForQuery`` messages) and the statements per request counted on the
server (``pg_stat_statements``). Targets: (b) ratio < 1.1, (c) adds no statement.

By default an embedded server is started with ``pg_stat_statements`` preloaded; ``--dsn`` uses a
server of yours instead (statements are then counted only if it preloads pg_stat_statements).

    python benchmarks/switch.py [--requests 1000] [--rounds 10] [--pgbouncer] [--dsn DSN]
                                [--all-interleaved]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from tenantkit.core.tenancy import Tenancy
from tenantkit.server import temporary_database, with_dbname

QUERY = "SELECT id, v FROM items WHERE id = 1"
N_TENANTS = 100


@contextmanager
def server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    from tenantkit.server import EmbeddedServer

    settings = {"shared_preload_libraries": "pg_stat_statements"}
    with EmbeddedServer(settings=settings) as srv:
        yield srv.conninfo


def setup(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with Tenancy(dsn, min_size=1, max_size=1) as tenancy:
        tenancy.install()
        schemas = ["fixed"] + [f"bench_{i:03d}" for i in range(N_TENANTS)]
        with tenancy.admin_connection() as conn, conn.transaction():
            for schema in schemas:
                ident = sql.Identifier(schema)
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
                conn.execute(
                    sql.SQL("CREATE TABLE {}.items (id int PRIMARY KEY, v text)").format(ident)
                )
                conn.execute(
                    sql.SQL("INSERT INTO {}.items VALUES (1, %s)").format(ident), (schema,)
                )
        for schema in schemas[1:]:
            with tenancy.admin_connection() as conn:
                conn.execute(tenancy.registry.insert, (schema, schema, "active", "{}"))
    return schemas[1:]


def count_statements(dsn: str) -> int | None:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s"
                " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
                " AND s.query NOT LIKE '%pg_stat_statements%'"
            ).fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def reset_statements(dsn: str) -> None:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
    except psycopg.Error:
        pass


def round_trips(conn: psycopg.Connection[Any], run: Callable[[int], None], n: int) -> float:
    """Round trips per request: backend ReadyForQuery messages in a libpq trace."""
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            for i in range(n):
                run(i)
        finally:
            conn.pgconn.untrace()
            # libpq writes the trace through a buffered FILE*: flush it before reading.
            ctypes.CDLL(None).fflush(None)
        trace.seek(0)
        count = sum(1 for line in trace if line.startswith("B") and "\tReadyForQuery" in line)
    return count / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pgbouncer", action="store_true", help="tenancy in pgbouncer mode")
    parser.add_argument("--dsn", default=os.environ.get("PGTENANTS_BENCH_DSN"))
    parser.add_argument(
        "--all-interleaved",
        action="store_true",
        help="time all variants in one request-by-request rotation (the old method)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin this process (and the embedded server it starts) to one CPU",
    )
    args = parser.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        # On an idle multi-core machine a variant whose backend the scheduler puts on a core
        # that went idle pays that core's wake-up latency on every round trip (measured here:
        # a baseline 3x slower than every other variant). One core for the client and the
        # server it starts makes each round trip the same context switch for all variants.
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})

    with server(args.dsn) as server_dsn, temporary_database(server_dsn, prefix="tk_bench") as dsn:
        run_bench(dsn, args)


def run_bench(dsn: str, args: argparse.Namespace) -> None:
    tenants = setup(dsn)
    fixed_dsn = with_dbname(
        dsn, str(conninfo_to_dict(dsn)["dbname"]), options="-c search_path=fixed,public"
    )
    fixed = ConnectionPool(fixed_dsn, min_size=1, max_size=1, open=True)
    tenancy = Tenancy(dsn, min_size=1, max_size=1, pgbouncer=args.pgbouncer)

    def room_for_tenant_statements(conn: psycopg.Connection[Any]) -> None:
        conn.prepared_max = 512

    raw = ConnectionPool(
        fixed_dsn,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True},
        configure=room_for_tenant_statements,
    )
    floor = ConnectionPool(
        fixed_dsn, min_size=1, max_size=1, configure=room_for_tenant_statements, open=True
    )
    fixed.wait()
    raw.wait()
    floor.wait()
    # b and c get a tenancy (and a one-connection pool) each, so interleaving them does not
    # make c switch tenants.
    tenancy_c = Tenancy(dsn, min_size=1, max_size=1, pgbouncer=args.pgbouncer)
    for t in (tenancy, tenancy_c):
        assert t.pool is not None
        t.pool.wait()

    def a(i: int) -> None:
        with fixed.connection() as conn:
            conn.execute(QUERY).fetchone()

    def b(i: int) -> None:
        with tenancy.connection(tenants[i % N_TENANTS]) as conn:
            conn.execute(QUERY).fetchone()

    def c(i: int) -> None:
        with tenancy_c.connection(tenants[0]) as conn:
            conn.execute(QUERY).fetchone()

    begins = [f'BEGIN; SET LOCAL search_path TO "{t}", public, pg_temp'.encode() for t in tenants]
    queries = [f"{QUERY} /* {t} */" for t in tenants]

    def d(i: int) -> None:
        # Hand-written: SET LOCAL in the BEGIN message and one prepared statement per tenant
        # (a comment makes the query text differ), so PostgreSQL keeps each tenant's plan.
        with raw.connection() as conn:  # autocommit: we send BEGIN ourselves
            conn.execute(begins[i % N_TENANTS])
            conn.execute(queries[i % N_TENANTS]).fetchone()

    qualified = [f"SELECT id, v FROM {t}.items WHERE id = 1" for t in tenants]

    def e(i: int) -> None:
        # No switch: the fixed path, the tenants' tables by qualified name (one prepared
        # statement each, like b and d).
        with floor.connection() as conn:
            conn.execute(qualified[i % N_TENANTS]).fetchone()

    variants = {
        "a fixed search_path": a,
        "b rotating 100 tenants": b,
        "c same tenant": c,
        "d hand-written, rotating": d,
        "e no switch, 100 tables": e,
    }
    pools = {"a fixed search_path": fixed, "b rotating 100 tenants": tenancy.pool}
    pools.update({"c same tenant": tenancy_c.pool, "d hand-written, rotating": raw})
    pools["e no switch, 100 tables"] = floor
    # Correctness first: each request sees its own tenant's row.
    for i in range(N_TENANTS):
        with tenancy.connection(tenants[i]) as conn:
            row = conn.execute(QUERY).fetchone()
            assert row is not None, tenants[i]
            assert row[1] == tenants[i], (row, tenants[i])

    for fn in variants.values():
        for i in range(10 * N_TENANTS):
            fn(i)  # warm up: connections, cached paths, prepared statements (5 runs each)
    # Each variant alternates request by request with (a), in blocks of --requests that
    # rotate over the variants (see the module docstring). A variant's ratio is the median,
    # over its blocks, of its median over the median of the (a) requests of the same block:
    # a burst of load from elsewhere spoils a block, not the result.
    base_name = "a fixed search_path"
    others = [name for name in variants if name != base_name]
    timings: dict[str, list[float]] = {name: [] for name in variants}
    block_ratios: dict[str, list[float]] = {name: [] for name in others}
    clock = time.perf_counter
    for r in range(args.rounds):
        if args.all_interleaved:  # the old way: a, b, c, d, e, a, b, ... (for comparison)
            block: dict[str, list[float]] = {name: [] for name in variants}
            for i in range(r * args.requests, (r + 1) * args.requests):
                for name, fn in variants.items():
                    t0 = clock()
                    fn(i)
                    block[name].append(clock() - t0)
            for name, runs in block.items():
                timings[name].extend(runs)
            for name in others:
                block_ratios[name].append(
                    statistics.median(block[name]) / statistics.median(block[base_name])
                )
            continue
        for name in others[r % len(others) :] + others[: r % len(others)]:
            fn = variants[name]
            mine: list[float] = []
            theirs: list[float] = []
            for i in range(r * args.requests, (r + 1) * args.requests):
                t0 = clock()
                a(i)
                t1 = clock()
                fn(i)
                t2 = clock()
                theirs.append(t1 - t0)
                mine.append(t2 - t1)
            timings[name].extend(mine)
            timings[base_name].extend(theirs)
            block_ratios[name].append(statistics.median(mine) / statistics.median(theirs))

    stats: dict[str, tuple[float | None, float]] = {}
    for name, fn in variants.items():
        pool = pools[name]
        assert pool is not None
        for i in range(50):
            fn(i)
        reset_statements(dsn)
        n = 500
        for i in range(n):
            fn(i)
        counted = count_statements(dsn)
        with pool.connection() as conn:
            pass
        conn_rt = pool.getconn()
        pool.putconn(conn_rt)
        rts = round_trips(conn_rt, fn, 200)
        stats[name] = (counted / n if counted is not None else None, rts)

    medians = {name: statistics.median(runs) for name, runs in timings.items()}
    ratios = {name: statistics.median(runs) for name, runs in block_ratios.items()}
    ratios[base_name] = 1.0
    mode = "pgbouncer" if args.pgbouncer else "default"
    total = args.requests * args.rounds
    how = "all variants in turn" if args.all_interleaved else "each alternating with a"
    print(f"tenant switch benchmark ({mode} mode), {total} requests per variant, {how}")
    header = ("variant", "us/request", "ratio", "stmts/req", "round trips/req")
    print(f"{header[0]:28} {header[1]:>10} {header[2]:>6} {header[3]:>9} {header[4]:>15}")
    for name in variants:
        stmts, rts = stats[name]
        shown = f"{stmts:.2f}" if stmts is not None else "n/a"
        med = medians[name]
        print(f"{name:28} {med * 1e6:10.1f} {ratios[name]:6.3f} {shown:>9} {rts:15.2f}")
    b_name, d_name, e_name = "b rotating 100 tenants", "d hand-written, rotating", others[-1]
    # Ratios of ratios: each variant against the (a) requests it was timed with.
    print(
        f"b / d (tenantkit's switch vs the hand-written one): {ratios[b_name] / ratios[d_name]:.3f}"
    )
    print(
        "b / e (what switching adds to reading 100 tables without a switch): "
        f"{ratios[b_name] / ratios[e_name]:.3f}"
    )
    tenancy.close()
    tenancy_c.close()
    fixed.close()
    raw.close()
    floor.close()


if __name__ == "__main__":
    main()
