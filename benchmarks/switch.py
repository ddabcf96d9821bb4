"""Benchmark: the cost of switching tenants (issue 3, acceptance 3).

The same one-row query, one request = borrow a pooled connection, run it, commit, give it back:

(a) a plain psycopg_pool pool whose connections have a fixed ``search_path`` (no tenancy);
(b) ``Tenancy.connection(tenant)`` rotating over 100 tenants (the path changes every request);
(c) ``Tenancy.connection(tenant)`` with the tenant unchanged;
(d) the best hand-written switch, rotating over the same tenants: ``SET LOCAL`` sent with
    ``BEGIN`` and one prepared statement per tenant. This is PostgreSQL's own cost of
    changing the path, the floor for any schema-per-tenant library: ``b / d`` is what
    tenantkit adds on top of it.

Prints the time per request, the ratio to (a), the round trips per request counted on the client
(libpq trace: frontend ``Query`` and ``Sync`` messages) and the statements per request counted
on the server (``pg_stat_statements``). Targets: (b) ratio < 1.1, (c) adds no statement.

By default an embedded server is started with ``pg_stat_statements`` preloaded; ``--dsn`` uses a
server of yours instead (statements are then counted only if it preloads pg_stat_statements).

    python benchmarks/switch.py [--requests 1000] [--rounds 10] [--pgbouncer] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import ctypes
import os
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
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=10)
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

    def room_for_tenant_statements(conn: psycopg.Connection[Any]) -> None:
        conn.prepared_max = 512

    raw = ConnectionPool(
        fixed_dsn,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True},
        configure=room_for_tenant_statements,
    )
    fixed.wait()
    raw.wait()
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
        # The floor of any search_path switch, hand-written: SET LOCAL in the BEGIN message
        # and one prepared statement per tenant (a comment makes the query text differ), so
        # PostgreSQL keeps each tenant's plan. What is left is PostgreSQL's own switch cost.
        with raw.connection() as conn:  # autocommit: we send BEGIN ourselves
            conn.execute(begins[i % N_TENANTS])
            conn.execute(queries[i % N_TENANTS]).fetchone()

    variants = {
        "a fixed search_path": a,
        "b rotating 100 tenants": b,
        "c same tenant": c,
        "d hand-written floor, rot.": d,
    }
    pools = {"a fixed search_path": fixed, "b rotating 100 tenants": tenancy.pool}
    pools.update({"c same tenant": tenancy_c.pool, "d hand-written floor, rot.": raw})
    # Correctness first: each request sees its own tenant's row.
    for i in range(N_TENANTS):
        with tenancy.connection(tenants[i]) as conn:
            row = conn.execute(QUERY).fetchone()
            assert row is not None, tenants[i]
            assert row[1] == tenants[i], (row, tenants[i])

    for fn in variants.values():
        for i in range(300):
            fn(i)  # warm up: connections, prepared statements, cached paths
    # Requests interleaved round-robin, one of each variant in turn, and medians of single
    # requests: other processes on a shared machine then weigh on all variants alike.
    timings: dict[str, list[float]] = {name: [] for name in variants}
    clock = time.perf_counter
    for i in range(args.requests * args.rounds):
        for name, fn in variants.items():
            t0 = clock()
            fn(i)
            timings[name].append(clock() - t0)

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
    base = medians["a fixed search_path"]
    mode = "pgbouncer" if args.pgbouncer else "default"
    total = args.requests * args.rounds
    print(f"tenant switch benchmark ({mode} mode), {total} interleaved requests per variant")
    header = ("variant", "us/request", "ratio", "stmts/req", "round trips/req")
    print(f"{header[0]:28} {header[1]:>10} {header[2]:>6} {header[3]:>9} {header[4]:>15}")
    for name in variants:
        stmts, rts = stats[name]
        shown = f"{stmts:.2f}" if stmts is not None else "n/a"
        med = medians[name]
        print(f"{name:28} {med * 1e6:10.1f} {med / base:6.3f} {shown:>9} {rts:15.2f}")
    ratio = medians["b rotating 100 tenants"] / medians["d hand-written floor, rot."]
    print(f"b / d (tenantkit's switch relative to the hand-written floor): {ratio:.3f}")
    tenancy.close()
    tenancy_c.close()
    fixed.close()
    raw.close()


if __name__ == "__main__":
    main()
