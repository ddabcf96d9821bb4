"""Schema lifecycle on a real server, with hypothesis (issue 3, acceptance 1)."""

from __future__ import annotations

import ctypes
import tempfile
import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.errors import InvalidSchemaName, SchemaExists, SchemaNotEmpty, SchemaNotFound
from tenantkit.names import MAX_IDENTIFIER_BYTES
from tenantkit.schema import (
    acreate_schema,
    adrop_schema,
    alist_schemas,
    arename_schema,
    aschema_exists,
    create_schema,
    drop_schema,
    list_schemas,
    rename_schema,
    schema_exists,
)

#: Accepted names: [a-z_][a-z0-9_]*, at most 63 bytes, no pg_ prefix, not reserved. A random
#: suffix keeps them unique across examples and xdist workers.
valid_names = st.from_regex(r"[a-z_][a-z0-9_]{0,40}", fullmatch=True).filter(
    lambda s: not s.startswith("pg_") and s not in ("public", "information_schema")
)

hostile_names = st.one_of(
    st.sampled_from(
        [
            "",
            "public",
            "information_schema",
            "pg_catalog",
            "pg_anything",
            'a"b',
            "a'b",
            "a;drop schema public cascade",
            "a\\b",
            "a\x00b",
            "a\nb",
            "a b",
            "Acme",
            "café",
            "9lives",
            "x" * (MAX_IDENTIFIER_BYTES + 1),
            "é" * 32,  # 64 bytes in UTF-8
        ]
    ),
    st.text(min_size=1).filter(
        lambda s: any(not (c.isascii() and (c.islower() or c.isdigit() or c == "_")) for c in s)
    ),
    st.from_regex(r"pg_[a-z0-9_]{0,20}", fullmatch=True),
    st.from_regex(r"[a-z_][a-z0-9_]{63,80}", fullmatch=True),
)


# The fixtures are per test, not per example: fine, each example uses unique names.
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def unique(name: str) -> str:
    suffix = "_" + uuid.uuid4().hex[:8]
    return name[: MAX_IDENTIFIER_BYTES - len(suffix)] + suffix


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=valid_names, new=valid_names)
def test_accepted_names_round_trip(conn: psycopg.Connection[Any], old: str, new: str) -> None:
    old, new = unique(old), unique(new)
    create_schema(conn, old)
    assert schema_exists(conn, old)
    assert old in list_schemas(conn)
    rename_schema(conn, old, new)
    assert not schema_exists(conn, old)
    assert schema_exists(conn, new)
    drop_schema(conn, new)
    assert not schema_exists(conn, new)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=hostile_names)
def test_hostile_names_rejected_before_any_sql(dsn: str, name: str) -> None:
    # A closed connection fails on any attempt to send SQL (OperationalError), so getting
    # InvalidSchemaName proves that nothing was sent.
    closed = psycopg.connect(dsn)
    closed.close()
    for call in (
        lambda: create_schema(closed, name),
        lambda: drop_schema(closed, name, cascade=True),
        lambda: rename_schema(closed, name, "fine_name"),
        lambda: rename_schema(closed, "fine_name", name),
        lambda: schema_exists(closed, name),
    ):
        with pytest.raises(InvalidSchemaName):
            call()


def test_nothing_sent_with_a_live_connection(conn: psycopg.Connection[Any]) -> None:
    # Belt and braces on a live connection: a libpq trace shows no message sent at all.
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            for name in ('x"; DROP SCHEMA public CASCADE; --', "public", "pg_toast", "Upper"):
                with pytest.raises(InvalidSchemaName):
                    create_schema(conn, name)
                with pytest.raises(InvalidSchemaName):
                    drop_schema(conn, name, cascade=True)
            conn.execute("SELECT 1")  # proves the trace works: this one is recorded
        finally:
            conn.pgconn.untrace()
            ctypes.CDLL(None).fflush(None)  # libpq traces through a buffered FILE*
        trace.seek(0)
        sent = [line.split("\t")[2] for line in trace if line.startswith("F")]
    assert sent == ["Query"]


def test_errors(conn: psycopg.Connection[Any], schema_name: str) -> None:
    create_schema(conn, schema_name)
    with pytest.raises(SchemaExists, match="already exists"):
        create_schema(conn, schema_name)
    conn.execute(f'CREATE TABLE "{schema_name}".t (x int)')
    with pytest.raises(SchemaNotEmpty, match="cascade=True"):
        drop_schema(conn, schema_name)
    drop_schema(conn, schema_name, cascade=True)
    with pytest.raises(SchemaNotFound, match="missing_ok"):
        drop_schema(conn, schema_name)
    drop_schema(conn, schema_name, missing_ok=True)
    with pytest.raises(SchemaNotFound):
        rename_schema(conn, schema_name, schema_name + "_x")
    assert "public" in list_schemas(conn)
    assert "pg_catalog" not in list_schemas(conn)
    assert "pg_catalog" in list_schemas(conn, include_system=True)


def test_custom_shared_schema_is_protected(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidSchemaName, match="shared"):
        create_schema(conn, "shared", shared_schema="shared")


async def test_async_twins(dsn: str, schema_name: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
        await acreate_schema(aconn, schema_name)
        assert await aschema_exists(aconn, schema_name)
        assert schema_name in await alist_schemas(aconn)
        await arename_schema(aconn, schema_name, schema_name + "_b")
        with pytest.raises(SchemaExists):
            await acreate_schema(aconn, schema_name + "_b")
        await adrop_schema(aconn, schema_name + "_b")
        assert not await aschema_exists(aconn, schema_name + "_b")
        with pytest.raises(InvalidSchemaName):
            await acreate_schema(aconn, "Bad")
