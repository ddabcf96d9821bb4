"""Benchmark: a request through a SQLAlchemy Session, with tenant rotation vs without tenancy.

One request = a ``Session`` from a ``sessionmaker``, one ORM-style ``select`` of a row by
primary key, ``commit()``, close (the connection goes back to SQLAlchemy's pool).

(a) a plain SQLAlchemy engine over psycopg, its connections' ``search_path`` fixed at connect
    time (no tenancy at all);
(b) ``tenantkit.sqlalchemy.tenant_engine``, the current tenant rotating over 50 tenants (every
    request switches), each reading its own ``items`` table.

The same for asyncio (``AsyncSession``, ``async_tenant_engine``). Requests of (a) and (b) are
interleaved one by one (a, b, a, b, ...) in blocks of ``--requests``; the ratio is the median
over the blocks of (b)'s median over (a)'s. Also printed: round trips and statements per request
sent by the client (libpq trace of one block's connection: a simple ``Query`` may hold several
statements and is one round trip; an extended-protocol exchange ends with one ``Sync``).

Part of (b)'s extra time is schema-per-tenant itself (50 tables instead of one keep the server's
caches busier), not the switch; ``benchmarks/switch.py`` separates the two for plain psycopg.

    python benchmarks/sqlalchemy.py [--requests 500] [--rounds 5] [--dsn DSN]
"""

from __future__ import annotations

# ruff: noqa: E402
import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and this file would shadow
# the real ``sqlalchemy`` package it is named after: drop that entry before importing it.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

import argparse
import asyncio
import ctypes
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
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from tenantkit import AsyncTenancy, Tenancy, tenant_context
from tenantkit.sqlalchemy import async_tenant_engine, tenant_engine

N_TENANTS = 50
items = Table("items", MetaData(), Column("id", Integer, primary_key=True), Column("v", String))
QUERY = select(items.c.v).where(items.c.id == 1)


@contextmanager
def database(dsn: str | None) -> Iterator[str]:
    """A fresh database on ``dsn``'s server, or on an embedded server; dropped afterwards."""
    if dsn is None:
        from tenantkit import EmbeddedServer

        with EmbeddedServer() as srv, database(srv.conninfo) as inner:
            yield inner
        return
    name = f"tk_bench_sqla_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def setup(dsn: str) -> list[str]:
    """The ``fixed`` schema for (a) and ``N_TENANTS`` tenants, each with its ``items`` row."""
    names = [f"bench_{i:03d}" for i in range(N_TENANTS)]
    with Tenancy(dsn, min_size=1, max_size=1) as tenancy:
        tenancy.install()
        for name in names:
            tenancy.create_tenant(name)
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE SCHEMA fixed")
        for schema in ["fixed", *names]:
            table = sql.Identifier(schema, "items")
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(table))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1, %s)").format(table), (schema,))
    return names


@contextmanager
def traced(pgconn: Any) -> Iterator[list[str]]:
    """What the client sent in the block: one entry per round trip (see the module doc)."""
    sent: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield sent
        finally:
            pgconn.untrace()
            ctypes.CDLL(None).fflush(None)  # libpq traces through a buffered FILE*
        trace.seek(0)
        pending = ""
        for line in trace:
            parts = line.rstrip("\n").split("\t")
            if parts[0] != "F" or len(parts) < 3:
                continue
            text = "\t".join(parts[3:]).strip()
            if parts[2] == "Query":
                sent.append(text)
            elif parts[2] == "Parse":
                pending = text
            elif parts[2] == "Sync":
                sent.append(pending)


def per_request(sent: list[str], requests: int) -> tuple[float, float]:
    """(round trips, statements) per request."""
    statements = sum(len(s.split("; ")) for s in sent)
    return len(sent) / requests, statements / requests


def ratio_report(label: str, times: dict[str, list[list[int]]], wire: dict[str, Any]) -> None:
    base_blocks, tk_blocks = times["plain"], times["tenant"]
    ratios = [
        statistics.median(t) / statistics.median(b)
        for b, t in zip(base_blocks, tk_blocks, strict=True)
    ]
    for key in ("plain", "tenant"):
        flat = [x for block in times[key] for x in block]
        trips, stmts = wire[key]
        print(
            f"{label:5} {key:7} median {statistics.median(flat) / 1000:8.1f} us/request"
            f"   round trips {trips:.2f}   statements {stmts:.2f}"
        )
    ratio = statistics.median(ratios)
    print(f"{label:5} ratio tenant/plain (median of block medians): {ratio:.3f}")


def bench_sync(dsn: str, names: list[str], args: argparse.Namespace) -> None:
    options = "-c search_path=fixed"
    plain = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(dsn, options=options),
        pool_size=1,
        max_overflow=0,
    )
    tenancy = Tenancy(dsn, min_size=1, max_size=1)
    engine = tenant_engine(tenancy, pool_size=1, max_overflow=0)
    plain_sessions, tenant_sessions = sessionmaker(plain), sessionmaker(engine)

    def plain_request(_: str) -> None:
        with plain_sessions() as session:
            session.execute(QUERY).one()
            session.commit()

    def tenant_request(name: str) -> None:
        with tenant_context(name), tenant_sessions() as session:
            assert session.execute(QUERY).scalar_one() == name
            session.commit()

    runs: dict[str, Callable[[str], None]] = {"plain": plain_request, "tenant": tenant_request}
    times: dict[str, list[list[int]]] = {"plain": [], "tenant": []}
    for _ in range(args.requests):  # warm-up: connections, caches, prepared statements
        for name in names[:1]:
            plain_request(name), tenant_request(name)
    for _ in range(args.rounds):
        block: dict[str, list[int]] = {"plain": [], "tenant": []}
        for i in range(args.requests):
            name = names[i % len(names)]
            for key, run in runs.items():
                start = time.perf_counter_ns()
                run(name)
                block[key].append(time.perf_counter_ns() - start)
        for key in block:
            times[key].append(block[key])
    wire: dict[str, Any] = {}
    for key, eng in (("plain", plain), ("tenant", engine)):
        raw = eng.raw_connection()
        pgconn = raw.driver_connection.pgconn  # type: ignore[union-attr]
        raw.close()
        with traced(pgconn) as sent:
            for i in range(len(names)):
                runs[key](names[i])
        wire[key] = per_request(sent, len(names))
    plain.dispose()
    engine.dispose()
    tenancy.close()
    ratio_report("sync", times, wire)


def bench_async(dsn: str, names: list[str], args: argparse.Namespace) -> None:
    async def main() -> None:
        async def connect() -> psycopg.AsyncConnection[Any]:
            return await psycopg.AsyncConnection.connect(dsn, options="-c search_path=fixed")

        plain = create_async_engine(
            "postgresql+psycopg://", async_creator=connect, pool_size=1, max_overflow=0
        )
        async with AsyncTenancy(dsn, min_size=1, max_size=1) as atenancy:
            engine = async_tenant_engine(atenancy, pool_size=1, max_overflow=0)
            plain_sessions, tenant_sessions = async_sessionmaker(plain), async_sessionmaker(engine)

            async def plain_request(_: str) -> None:
                async with plain_sessions() as session:
                    (await session.execute(QUERY)).one()
                    await session.commit()

            async def tenant_request(name: str) -> None:
                with tenant_context(name):
                    async with tenant_sessions() as session:
                        assert (await session.execute(QUERY)).scalar_one() == name
                        await session.commit()

            runs = {"plain": plain_request, "tenant": tenant_request}
            times: dict[str, list[list[int]]] = {"plain": [], "tenant": []}
            for _ in range(args.requests):
                await plain_request(names[0])
                await tenant_request(names[0])
            for _ in range(args.rounds):
                block: dict[str, list[int]] = {"plain": [], "tenant": []}
                for i in range(args.requests):
                    name = names[i % len(names)]
                    for key, run in runs.items():
                        start = time.perf_counter_ns()
                        await run(name)
                        block[key].append(time.perf_counter_ns() - start)
                for key in block:
                    times[key].append(block[key])
            wire: dict[str, Any] = {}
            for key, eng in (("plain", plain), ("tenant", engine)):
                async with eng.connect() as conn:
                    raw = await conn.get_raw_connection()
                    pgconn = raw.driver_connection.pgconn  # type: ignore[union-attr]
                with traced(pgconn) as sent:
                    for i in range(len(names)):
                        await runs[key](names[i])
                wire[key] = per_request(sent, len(names))
            await engine.dispose()
        await plain.dispose()
        ratio_report("async", times, wire)

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per block and side")
    parser.add_argument("--rounds", type=int, default=5, help="blocks")
    parser.add_argument("--dsn", help="a server of yours (default: an embedded one)")
    args = parser.parse_args()
    with database(args.dsn) as dsn:
        names = setup(dsn)
        host = conninfo_to_dict(dsn).get("host", "?")
        print(f"{N_TENANTS} tenants, {args.rounds} x {args.requests} requests per side, {host}")
        bench_sync(dsn, names, args)
        bench_async(dsn, names, args)


if __name__ == "__main__":
    main()
