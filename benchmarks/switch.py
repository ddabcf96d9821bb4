"""Benchmark: the cost of switching tenants (issue 3, acceptance 3).

The same one-row query, one request = borrow a pooled connection, run it, commit, give it back:

(a) a plain psycopg_pool pool whose connections have a fixed ``search_path`` (no tenancy);
(b) ``Tenancy.connection(tenant)`` rotating over 100 tenants (the path changes every request);
(c) ``Tenancy.connection(tenant)`` with the tenant unchanged.

Prints the time per request, the ratio to (a), the round trips per request counted on the client
(libpq trace: frontend ``Query`` and ``Sync`` messages) and the statements per request counted
on the server (``pg_stat_statements``). Targets: (b) ratio < 1.1, (c) adds no statement.

By default an embedded server is started with ``pg_stat_statements`` preloaded; ``--dsn`` uses a
server of yours instead (statements are then counted only if it preloads pg_stat_statements).

    python benchmarks/switch.py [--requests 500] [--rounds 40] [--pgbouncer] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from tenantkit.tenancy import Tenancy

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


def with_db(conninfo: str, dbname: str, **extra: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    params.update(dbname=dbname, **extra)
    return make_conninfo(**params)


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
    parser.add_argument("--requests", type=int, default=500, help="requests per round")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--pgbouncer", action="store_true", help="tenancy in pgbouncer mode")
    parser.add_argument("--dsn", default=os.environ.get("PGTENANTS_BENCH_DSN"))
    args = parser.parse_args()

    with server(args.dsn) as server_dsn:
        dbname = f"tk_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        try:
            run_bench(with_db(server_dsn, dbname), args)
        finally:
            with psycopg.connect(server_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname))
                )


def run_bench(dsn: str, args: argparse.Namespace) -> None:
    tenants = setup(dsn)
    fixed_dsn = with_db(dsn, conninfo_to_dict(dsn)["dbname"], options="-c search_path=fixed,public")
    fixed = ConnectionPool(fixed_dsn, min_size=1, max_size=1, open=True)
    tenancy = Tenancy(dsn, min_size=1, max_size=1, pgbouncer=args.pgbouncer)
    raw = ConnectionPool(fixed_dsn, min_size=1, max_size=1, kwargs={"autocommit": True})
    fixed.wait()
    raw.wait()
    assert tenancy.pool is not None
    tenancy.pool.wait()

    def a(i: int) -> None:
        with fixed.connection() as conn:
            conn.execute(QUERY).fetchone()

    def b(i: int) -> None:
        with tenancy.connection(tenants[i % N_TENANTS]) as conn:
            conn.execute(QUERY).fetchone()

    def c(i: int) -> None:
        with tenancy.connection(tenants[0]) as conn:
            conn.execute(QUERY).fetchone()

    paths = [f'SET search_path TO "{t}", public, pg_temp' for t in tenants]

    def d(i: int) -> None:
        # The floor of any schema-per-tenant switch: a hand-written SET per request, sent in
        # the same message as BEGIN, on the fixed pool (what PostgreSQL itself costs).
        with raw.connection() as conn:  # autocommit: we send BEGIN ourselves
            conn.execute(f"BEGIN; {paths[i % N_TENANTS]}".encode())
            conn.execute(QUERY).fetchone()

    variants = {
        "a fixed search_path": a,
        "b rotating 100 tenants": b,
        "c same tenant": c,
        "d hand-written SET, rotating": d,
    }
    # Correctness first: each request sees its own tenant's row.
    for i in range(N_TENANTS):
        with tenancy.connection(tenants[i]) as conn:
            row = conn.execute(QUERY).fetchone()
            assert row is not None, tenants[i]
            assert row[1] == tenants[i], (row, tenants[i])

    for fn in variants.values():
        for i in range(300):
            fn(i)  # warm up: connections, prepared statements, cached paths
    # Many short rounds in a shuffled order, ratios taken within a round: other processes on
    # the machine then weigh on all variants alike.
    timings: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffler = random.Random(42)
    for _ in range(args.rounds):
        shuffler.shuffle(order)
        for name in order:
            fn = variants[name]
            t0 = time.perf_counter()
            for i in range(args.requests):
                fn(i)
            timings[name].append((time.perf_counter() - t0) / args.requests)

    stats: dict[str, tuple[float | None, float]] = {}
    for name, fn in variants.items():
        pool = {a: fixed, d: raw}.get(fn, tenancy.pool)
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

    base_runs = timings["a fixed search_path"]
    mode = "pgbouncer" if args.pgbouncer else "default"
    print(f"tenant switch benchmark ({mode} mode), {args.requests} requests x {args.rounds} rounds")
    print(
        f"{'variant':28} {'us/request':>10} {'ratio':>6} {'stmts/req':>9} {'round trips/req':>15}"
    )
    for name in variants:
        med = statistics.median(timings[name])
        ratio = statistics.median(t / b for t, b in zip(timings[name], base_runs, strict=True))
        stmts, rts = stats[name]
        shown = f"{stmts:.2f}" if stmts is not None else "n/a"
        print(f"{name:28} {med * 1e6:10.1f} {ratio:6.3f} {shown:>9} {rts:15.2f}")
    floor = statistics.median(
        b / d
        for b, d in zip(
            timings["b rotating 100 tenants"], timings["d hand-written SET, rotating"], strict=True
        )
    )
    print(f"b / d (tenantkit's cost of a switch relative to a hand-written SET): {floor:.3f}")
    tenancy.close()
    fixed.close()
    raw.close()


if __name__ == "__main__":
    main()
