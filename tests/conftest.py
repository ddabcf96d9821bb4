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
def _pgbouncers(server_conninfo: str) -> Iterator[Callable[..., PgBouncer]]:
    """The session's pgbouncers: ``start(direct_dsn, pool_mode=, pool_size=, shared=)``.

    Depends on no database fixture: a session fixture that did would keep the first
    requester's ``dsn`` for everyone, and the Django tests override ``dsn`` with a database of
    their own (so the fixtures over it are per module). ``share=True`` returns one bouncer per
    database, mode and size.
    """
    try:
        find_pgbouncer()
    except PgBouncerMissing as exc:
        if os.environ.get(ENV_REQUIRE) == "1":
            pytest.fail(f"{exc} ({ENV_REQUIRE}=1)", pytrace=False)
        pytest.skip(str(exc))
    started: list[PgBouncer] = []
    shared: dict[tuple[str, str, int], PgBouncer] = {}

    def start(
        direct_dsn: str, *, pool_mode: str = "transaction", pool_size: int = 3, share: bool = False
    ) -> PgBouncer:
        key = (direct_dsn, pool_mode, pool_size)
        if share and key in shared:
            return shared[key]
        bouncer = PgBouncer(
            server_conninfo, direct_dsn=direct_dsn, pool_mode=pool_mode, pool_size=pool_size
        )
        started.append(bouncer)
        bouncer.start()
        if share:
            shared[key] = bouncer
        return bouncer

    try:
        yield start
    finally:
        for bouncer in started:
            bouncer.stop()


@pytest.fixture(scope="module")
def pgbouncer_factory(_pgbouncers: Callable[..., PgBouncer], dsn: str) -> Callable[..., PgBouncer]:
    """Start real pgbouncers in front of ``dsn``: ``pgbouncer_factory(pool_mode=...)``.

    Each call starts a new pgbouncer (own port and directory, ``pool_size`` server connections
    per database) whose ``.dsn`` reaches the ``dsn`` database; all are stopped at the end of
    the session. Skips when the binary is missing, fails instead with
    ``PGTENANTS_REQUIRE_PGBOUNCER=1`` (CI).
    """

    def start(*, pool_mode: str = "transaction", pool_size: int = 3) -> PgBouncer:
        return _pgbouncers(dsn, pool_mode=pool_mode, pool_size=pool_size)

    return start


@pytest.fixture(scope="module")
def pgbouncer(_pgbouncers: Callable[..., PgBouncer], dsn: str) -> PgBouncer:
    """A real pgbouncer (transaction pooling, 3 server connections) in front of ``dsn``.

    ``.dsn`` goes through it, ``.direct_dsn`` straight to PostgreSQL; ``.port`` and
    ``.pool_mode`` say how it runs. One per database and test process, started on first use.
    """
    return _pgbouncers(dsn, pool_mode="transaction", pool_size=3, share=True)
