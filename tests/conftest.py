"""Shared fixtures for tenantkit's own tests.

Tests run against a real PostgreSQL: the server named by ``PGTENANTS_DSN`` when it is set,
otherwise an embedded temporary server started once per test process. Each test process
(each pytest-xdist worker) gets a database of its own, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from _pgbouncer import ENV_REQUIRE, PgBouncer, PgBouncerMissing, find_pgbouncer

import tenantkit
from tenantkit.server import temporary_database

# `tenantkit` loads its submodules on first use. pytester's in-process runs restore
# sys.modules afterwards, dropping modules first imported inside them, so a later run would
# import a second copy (two `Tenant` classes). Load everything once, before any such run.
for _name in tenantkit.__all__:
    getattr(tenantkit, _name)


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


@pytest.fixture(scope="session")
def pgbouncer_factory(server_conninfo: str, dsn: str) -> Iterator[Callable[..., PgBouncer]]:
    """Start real pgbouncers in front of the test server: ``pgbouncer_factory(pool_mode=...)``.

    Each call starts a new pgbouncer (own port and directory, ``pool_size`` server connections
    per database) whose ``.dsn`` reaches the ``dsn`` database; all are stopped at the end of
    the session. Skips when the binary is missing, fails instead with
    ``PGTENANTS_REQUIRE_PGBOUNCER=1`` (CI).
    """
    try:
        find_pgbouncer()
    except PgBouncerMissing as exc:
        if os.environ.get(ENV_REQUIRE) == "1":
            pytest.fail(f"{exc} ({ENV_REQUIRE}=1)", pytrace=False)
        pytest.skip(str(exc))
    started: list[PgBouncer] = []

    def start(*, pool_mode: str = "transaction", pool_size: int = 3) -> PgBouncer:
        bouncer = PgBouncer(
            server_conninfo, direct_dsn=dsn, pool_mode=pool_mode, pool_size=pool_size
        )
        started.append(bouncer)
        return bouncer.start()

    try:
        yield start
    finally:
        for bouncer in started:
            bouncer.stop()


@pytest.fixture(scope="session")
def pgbouncer(pgbouncer_factory: Callable[..., PgBouncer]) -> PgBouncer:
    """A real pgbouncer (transaction pooling, 3 server connections) in front of ``dsn``.

    ``.dsn`` goes through it, ``.direct_dsn`` straight to PostgreSQL; ``.port`` and
    ``.pool_mode`` say how it runs. One per test process (pytest-xdist workers each have one).
    """
    return pgbouncer_factory(pool_mode="transaction", pool_size=3)
