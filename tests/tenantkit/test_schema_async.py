"""Schema lifecycle on a real server, with hypothesis (issue 3, acceptance 1).

One source for both APIs: the async test module of this pair is written by hand, and
``tools/async_to_sync.py`` generates the sync one from it, so the schema functions and
their async twins get the same tests.
"""

from __future__ import annotations

import ctypes
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantkit.core.names import MAX_IDENTIFIER_BYTES
from tenantkit.core.schema import (
    acreate_schema,
    adrop_schema,
    alist_schemas,
    arename_schema,
    aschema_exists,
)
from tenantkit.errors import InvalidSchemaName, SchemaExists, SchemaNotEmpty, SchemaNotFound

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


if True:  # ASYNC
    # The sync tests use the `conn` fixture of tests/conftest.py.
    @pytest.fixture
    async def aconn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A plain autocommit connection to the test database."""
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            yield connection


@pytest.fixture
async def closed(dsn: str) -> psycopg.AsyncConnection[Any]:
    """A closed connection: any attempt to send SQL on it fails with OperationalError."""
    connection = await psycopg.AsyncConnection.connect(dsn)
    await connection.close()
    return connection


def unique(name: str) -> str:
    # No "_" before the suffix: a valid "pg" would become the reserved "pg_...".
    suffix = "x" + uuid.uuid4().hex[:8]
    return name[: MAX_IDENTIFIER_BYTES - len(suffix)] + suffix


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(old=valid_names, new=valid_names)
async def test_accepted_names_round_trip(
    aconn: psycopg.AsyncConnection[Any], old: str, new: str
) -> None:
    old = unique(old)
    new = unique(new)
    await acreate_schema(aconn, old)
    assert await aschema_exists(aconn, old)
    assert old in await alist_schemas(aconn)
    await arename_schema(aconn, old, new)
    assert not await aschema_exists(aconn, old)
    assert await aschema_exists(aconn, new)
    await adrop_schema(aconn, new)
    assert not await aschema_exists(aconn, new)


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(name=hostile_names)
async def test_hostile_names_rejected_before_any_sql(
    closed: psycopg.AsyncConnection[Any], name: str
) -> None:
    # Any attempt to send SQL on the closed connection fails (OperationalError), so getting
    # InvalidSchemaName proves that nothing was sent.
    for call in (
        lambda: acreate_schema(closed, name),
        lambda: adrop_schema(closed, name, cascade=True),
        lambda: arename_schema(closed, name, "fine_name"),
        lambda: arename_schema(closed, "fine_name", name),
        lambda: aschema_exists(closed, name),
    ):
        with pytest.raises(InvalidSchemaName):
            await call()


async def test_nothing_sent_with_a_live_connection(aconn: psycopg.AsyncConnection[Any]) -> None:
    # Belt and braces on a live connection: a libpq trace shows no message sent at all.
    with tempfile.TemporaryFile("w+") as trace:
        aconn.pgconn.trace(trace.fileno())
        aconn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            for name in ('x"; DROP SCHEMA public CASCADE; --', "public", "pg_toast", "Upper"):
                with pytest.raises(InvalidSchemaName):
                    await acreate_schema(aconn, name)
                with pytest.raises(InvalidSchemaName):
                    await adrop_schema(aconn, name, cascade=True)
            await aconn.execute("SELECT 1")  # proves the trace works: this one is recorded
        finally:
            aconn.pgconn.untrace()
            ctypes.CDLL(None).fflush(None)  # libpq traces through a buffered FILE*
        trace.seek(0)
        sent = [line.split("\t")[2] for line in trace if line.startswith("F")]
    assert sent == ["Query"]


async def test_errors(aconn: psycopg.AsyncConnection[Any], schema_name: str) -> None:
    await acreate_schema(aconn, schema_name)
    with pytest.raises(SchemaExists, match="already exists"):
        await acreate_schema(aconn, schema_name)
    await aconn.execute(f'CREATE TABLE "{schema_name}".t (x int)')
    with pytest.raises(SchemaNotEmpty, match="cascade=True"):
        await adrop_schema(aconn, schema_name)
    await adrop_schema(aconn, schema_name, cascade=True)
    with pytest.raises(SchemaNotFound, match="missing_ok"):
        await adrop_schema(aconn, schema_name)
    await adrop_schema(aconn, schema_name, missing_ok=True)
    with pytest.raises(SchemaNotFound):
        await arename_schema(aconn, schema_name, schema_name + "_x")
    await acreate_schema(aconn, schema_name)
    await acreate_schema(aconn, schema_name + "_y")
    with pytest.raises(SchemaExists, match=f"{schema_name!r} already exists"):
        await arename_schema(aconn, schema_name + "_y", schema_name)  # names the taken one
    await adrop_schema(aconn, schema_name)
    await adrop_schema(aconn, schema_name + "_y")
    assert "public" in await alist_schemas(aconn)
    assert "pg_catalog" not in await alist_schemas(aconn)
    assert "pg_catalog" in await alist_schemas(aconn, include_system=True)


async def test_custom_shared_schema_is_protected(aconn: psycopg.AsyncConnection[Any]) -> None:
    with pytest.raises(InvalidSchemaName, match="shared"):
        await acreate_schema(aconn, "shared", shared_schema="shared")
