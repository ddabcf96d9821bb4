"""Shared fixtures for tenantkit's own tests.

Tests run against a real PostgreSQL: the server named by ``PGTENANTS_DSN`` when it is set,
otherwise an embedded temporary server started once per test process. Each test process
(each pytest-xdist worker) gets a database of its own, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tenantkit.server import temporary_database


@pytest.fixture(scope="session")
def server_conninfo() -> Iterator[str]:
    """Conninfo of the server under test (maintenance database)."""
    dsn = os.environ.get("PGTENANTS_DSN")
    if dsn:
        yield dsn
        return
    from tenantkit.server import EmbeddedServer

    with EmbeddedServer() as server:
        yield server.conninfo


@pytest.fixture(scope="session")
def dsn(server_conninfo: str) -> Iterator[str]:
    """Conninfo of a fresh database owned by this test process, dropped afterwards."""
    with temporary_database(server_conninfo, prefix="tk_test") as conninfo:
        yield conninfo


@pytest.fixture
def schema_name() -> str:
    """A unique, valid schema name for one test (safe under pytest-xdist)."""
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    """A plain autocommit connection to the test database."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection
