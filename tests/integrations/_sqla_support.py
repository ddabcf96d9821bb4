"""Shared set-up for the tenantkit.sqlalchemy tests: a tenancy with tenants that own a row."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from _wire import traced
from psycopg import pq, sql
from sqlalchemy import Column, Integer, MetaData, String, Table

from tenantkit import Tenancy

metadata = MetaData()
#: The tenant table, unqualified: each tenant has one, the shared schema a decoy.
items = Table("items", metadata, Column("id", Integer, primary_key=True), Column("owner", String))


def tenant_names(n: int) -> list[str]:
    """``n`` unique schema names (safe under pytest-xdist)."""
    prefix = f"q{uuid.uuid4().hex[:8]}"
    return [f"{prefix}_{i:02d}" for i in range(n)]


@contextmanager
def populated(
    conninfo: str, shared: str, n: int, *, direct: str | None = None, **tenancy_kwargs: Any
) -> Iterator[tuple[Tenancy, list[str]]]:
    """A tenancy on ``conninfo`` whose ``n`` tenants each hold ``items`` with one own row.

    Set up over ``direct`` (default ``conninfo``) with qualified names, so nothing under test
    builds the fixtures; the shared schema's ``items`` holds ``'SHARED'`` (a query that runs
    without its tenant's path reads it). Everything is dropped afterwards.
    """
    direct = direct or conninfo
    names = tenant_names(n)
    with Tenancy(direct, shared_schema=shared, min_size=1, max_size=2) as admin:
        admin.install()
        for schema in names:
            admin.create_tenant(schema)
    with psycopg.connect(direct) as conn:
        for schema, owner in [(shared, "SHARED"), *((s, s) for s in names)]:
            table = sql.Identifier(schema, "items")
            conn.execute(
                sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, owner text)").format(table)
            )
            conn.execute(sql.SQL("INSERT INTO {} (owner) VALUES (%s)").format(table), (owner,))
    tenancy = Tenancy(conninfo, shared_schema=shared, min_size=1, max_size=2, **tenancy_kwargs)
    try:
        yield tenancy, names
    finally:
        tenancy.close()
        with psycopg.connect(direct, autocommit=True) as conn:
            for schema in [*names, shared]:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def round_trips(pgconn: pq.abc.PGconn, action: Callable[[], Any]) -> list[str]:
    """Run ``action`` and list what the client sent, one entry per round trip."""
    with tracing(pgconn) as sent:
        action()
    return sent


@contextmanager
def tracing(pgconn: pq.abc.PGconn) -> Iterator[list[str]]:
    """List (filled on exit) what the client sent in the block, one entry per round trip.

    From a libpq trace: a simple ``Query`` is one round trip, an extended-protocol exchange
    (Parse/Bind/Describe/Execute) ends with one ``Sync``. Works around async code too.
    """
    sent: list[str] = []
    with traced(pgconn) as messages:
        yield sent
    pending = ""
    for kind, text in messages:
        if kind == "Query":
            sent.append(f"Query {text}")
        elif kind == "Parse":
            pending = text
        elif kind == "Sync":
            sent.append(f"Sync {pending}")
            pending = ""
