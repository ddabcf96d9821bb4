"""The plugin's ``tenant_session`` / ``atenant_session`` fixtures, run in a pytester project."""

from __future__ import annotations

import os

import pytest

INNER = """
from sqlalchemy import text

from tenantkit import current_tenant


def test_sync(tenant_session, tenant):
    assert current_tenant() is None  # bound explicitly, not through the ContextVar
    schema = tenant_session.execute(text("SELECT current_schema()")).scalar_one()
    assert schema == tenant.schema
    tenant_session.execute(text("CREATE TABLE kept (x int)"))  # committed at the end


def test_sync_again(tenant_session, tenant, tenancy):
    with tenancy.connection(tenant) as conn:
        assert conn.execute("SELECT to_regclass('kept')").fetchone() == (None,)


async def test_async(atenant_session, tenant):
    schema = (await atenant_session.execute(text("SELECT current_schema()"))).scalar_one()
    assert schema == tenant.schema
"""

STRICT = """
import pytest
from sqlalchemy import text

pytestmark = pytest.mark.pgtenants_strict


def test_strict_session_is_bound(tenant_session, tenant):
    assert tenant_session.execute(text("SELECT current_schema()")).scalar_one() == tenant.schema
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for key in list(os.environ):
        if key.startswith("PGTENANTS_") and key not in ("PGTENANTS_PG_BIN", "PGTENANTS_PG_USER"):
            monkeypatch.delenv(key)
    pytester.makeini(
        """
        [pytest]
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        pgtenants_spares = 0
        """
    )
    return pytester


def run(project: pytest.Pytester, server_conninfo: str) -> pytest.RunResult:
    return project.runpytest_inprocess(
        "-p",
        "pytest_pgtenants",
        "-p",
        "pytest_pgtenants._sqlalchemy",
        f"--pgtenants-dsn={server_conninfo}",
        "--pgtenants-no-cache",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )


def test_session_fixtures(project: pytest.Pytester, server_conninfo: str) -> None:
    project.makepyfile(test_inner=INNER, test_strict=STRICT)
    result = run(project, server_conninfo)
    result.assert_outcomes(passed=4)
