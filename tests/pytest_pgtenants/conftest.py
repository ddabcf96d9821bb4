"""Helpers for the plugin's tests: run a small test project with pytester against our server.

Inner runs get ``--pgtenants-dsn`` pointing at the outer suite's server (so they start no
server of their own unless that is what a test is about), the standard workload migrations and
a small spare pool. The templates they build are dropped at the end of the outer session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

WORKLOAD = Path(__file__).resolve().parents[2] / "benchmarks" / "workload" / "migrations"


@pytest.fixture(scope="session")
def plugin_server(server_conninfo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The outer server's conninfo; drops the template databases inner runs built there."""
    base = str(tmp_path_factory.getbasetemp())
    try:
        yield server_conninfo
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE starts_with(datname, 'pgtenants_tpl_')"
            ).fetchall()
            for name, comment in rows:
                project = json.loads(comment or "{}").get("project", "")
                if project.startswith(base):
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )


@pytest.fixture
def project(
    pytester: pytest.Pytester, plugin_server: str, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A pytester project set up for inner runs (env cleared of our variables)."""
    for key in list(os.environ):
        if key.startswith("PGTENANTS_") and key not in ("PGTENANTS_PG_BIN", "PGTENANTS_PG_USER"):
            monkeypatch.delenv(key)
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        pgtenants_migrations = {WORKLOAD}
        pgtenants_spares = 4
        """
    )
    return pytester


class Inner:
    """Runs a small test project with the plugin loaded, against the outer server."""

    def __init__(self, pytester: pytest.Pytester, server: str) -> None:
        self.pytester = pytester
        self.server = server

    def args(self, *extra: str) -> list[str]:
        return [
            "-p",
            "pytest_pgtenants",
            f"--pgtenants-dsn={self.server}",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            *extra,
        ]

    def run(self, *extra: str) -> pytest.RunResult:
        """Run in-process (fast) with ``--pgtenants-dsn`` set to the outer server."""
        return self.pytester.runpytest_inprocess(*self.args(*extra))

    def run_subprocess(self, *extra: str, timeout: float = 120) -> pytest.RunResult:
        """Run in a child process (xdist, signals, embedded servers)."""
        return self.pytester.runpytest_subprocess(*self.args(*extra), timeout=timeout)

    def databases(self, prefix: str = "pgtenants_db_") -> set[str]:
        """Names of databases on the server starting with ``prefix``."""
        with psycopg.connect(self.server, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix]
            ).fetchall()
        return {r[0] for r in rows}


@pytest.fixture
def inner(project: pytest.Pytester, plugin_server: str) -> Inner:
    """Run inner pytest sessions of ``project`` against the outer server."""
    return Inner(project, plugin_server)


@pytest.fixture(autouse=True)
def _quiet_inner_asyncio(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs without our ini would warn about pytest-asyncio's unset loop scope."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts
        monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
