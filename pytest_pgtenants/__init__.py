"""pytest_pgtenants: fast, isolated multi-tenant PostgreSQL tests.

Load it with ``pytest -p pytest_pgtenants`` or ``pytest_plugins = ["pytest_pgtenants"]``. The
hooks and fixtures are re-exported here so that pytest finds them on this module; importing
it starts nothing (and does not import psycopg).
"""

from __future__ import annotations

from .fixtures import (
    assert_tenants_isolated,
    atenant_client,
    atenant_conn,
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
    "assert_tenants_isolated",
    "atenant_client",
    "atenant_conn",
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
