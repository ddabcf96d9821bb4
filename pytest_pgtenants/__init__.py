"""pytest_pgtenants: fast, isolated multi-tenant PostgreSQL tests.

Load it with ``pytest -p pytest_pgtenants`` or ``pytest_plugins = ["pytest_pgtenants"]``. The
hooks and fixtures are re-exported here so that pytest finds them on this module (the async
fixtures are registered by ``pytest_configure``, see :mod:`._async`); importing it starts
nothing (and imports neither psycopg nor pytest-asyncio).
"""

from __future__ import annotations

from .fixtures import (
    _pgtenants_marker,
    assert_tenants_isolated,
    pgtenants_database,
    pgtenants_server,
    pgtenants_session,
    pgtenants_settings,
    pgtenants_template,
    tenancy,
    tenant,
    tenant_client,
    tenant_conn,
    tenant_factory,
    tenant_url,
    tenants,
)
from .plugin import (
    pytest_addoption,
    pytest_configure,
    pytest_configure_node,
    pytest_report_header,
    pytest_runtest_setup,
    pytest_terminal_summary,
    pytest_testnodedown,
    pytest_unconfigure,
)

__all__ = [
    "_pgtenants_marker",
    "assert_tenants_isolated",
    "pgtenants_database",
    "pgtenants_server",
    "pgtenants_session",
    "pgtenants_settings",
    "pgtenants_template",
    "pytest_addoption",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_report_header",
    "pytest_runtest_setup",
    "pytest_terminal_summary",
    "pytest_testnodedown",
    "pytest_unconfigure",
    "tenancy",
    "tenant",
    "tenant_client",
    "tenant_conn",
    "tenant_factory",
    "tenant_url",
    "tenants",
]
