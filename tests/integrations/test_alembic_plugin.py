"""The pytest plugin with an Alembic project as the migration source (``pgtenants_alembic``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

SHOP = Path(__file__).parent / "alembic_projects" / "shop" / "alembic.ini"


@pytest.fixture
def inner(
    pytester: pytest.Pytester,
    server_conninfo: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[pytest.Pytester]:
    """A pytester project on the outer server; drops the template databases it built."""
    for key in list(os.environ):
        if key.startswith("PGTENANTS_") and key not in ("PGTENANTS_PG_BIN", "PGTENANTS_PG_USER"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PGTENANTS_DSN", server_conninfo)
    try:
        yield pytester
    finally:
        base = str(pytester.path)
        with psycopg.connect(server_conninfo, autocommit=True) as conn:
            rows = conn.execute(
                "select datname, shobj_description(oid, 'pg_database') from pg_database "
                "where starts_with(datname, 'pgtenants_tpl_')"
            ).fetchall()
            for name, comment in rows:
                if json.loads(comment or "{}").get("project", "").startswith(base):
                    conn.execute(
                        sql.SQL("drop database if exists {} with (force)").format(
                            sql.Identifier(name)
                        )
                    )


ARGS = ("-p", "pytest_pgtenants", "-p", "no:cacheprovider")
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

INNER_TESTS = """
import pytest
from psycopg import sql


@pytest.mark.parametrize("n", range(3))
def test_tenant_is_at_the_alembic_head(tenant, tenant_conn, tenancy, n):
    # d4 (an online revision) made the stats table and its row; c3 the credit_limit column.
    # Spares copied from the template, and schemas recycled after a test, keep that row.
    rows = tenant_conn.execute("select name, value from stats").fetchall()
    assert rows == [("accounts", 0)]
    assert tenant_conn.execute("select version_num from alembic_version").fetchall() == [("d4",)]
    assert tenant_conn.execute("select count(*) from accounts").fetchone()[0] == 0
    tenant_conn.execute("insert into accounts (name, credit_limit) values ('x', 5)")
    # Tenants only: spares are filled in the background, so the template may be mid-build.
    pending = [e for e in tenancy.plan().pending if e.kind == "tenant"]
    assert not pending, pending


def test_janitor(request):
    # Every tenant above changed rows only: its schema goes back to the spare pool, its
    # alembic_version and stats rows kept (they are what it held when it was built).
    from pytest_pgtenants.fixtures import SESSION_KEY

    session = request.config.stash[SESSION_KEY]
    session.janitor.drain()
    assert not session.janitor.errors
    assert session.stats == {"recycled": 3, "dropped": 0}, session.stats
"""


def test_pgtenants_alembic_ini_option(inner: pytest.Pytester) -> None:
    inner.makeini(f"{INI}pgtenants_alembic = {SHOP}\npgtenants_spares = 2\n")
    inner.makepyfile(INNER_TESTS)
    result = inner.runpytest_inprocess(*ARGS)
    result.assert_outcomes(passed=4)


def test_pgtenants_alembic_command_line(inner: pytest.Pytester) -> None:
    inner.makeini(f"{INI}pgtenants_spares = 0\n")
    inner.makepyfile(
        """
        def test_tables(tenant_conn):
            tenant_conn.execute("select credit_limit from accounts")
        """
    )
    result = inner.runpytest_inprocess(*ARGS, f"--pgtenants-alembic={SHOP}")
    result.assert_outcomes(passed=1)
    # Without it, the tenant has no tables: the option is what migrated it.
    result = inner.runpytest_inprocess(*ARGS)
    result.assert_outcomes(failed=1)
