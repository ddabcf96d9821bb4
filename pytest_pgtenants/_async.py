"""The async fixtures: ``atenancy``, ``atenant_conn`` and ``atenant_client``.

They are registered by ``pytest_configure`` rather than defined in :mod:`.fixtures`: by then
pytest has loaded its plugins, so pytest-asyncio's fixture decorator is used when pytest-asyncio
is loaded (in strict mode too) and ``pytest.fixture`` otherwise (anyio runs those). Importing
pytest-asyncio ourselves at plugin load time would cost about 25 ms (asyncio, ssl), four times
the rest of the plugin, in runs that have it installed but not loaded.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from ._session import PgTenantsSession, TestDatabase
from .fixtures import _Clients, _rollback, tenancy_settings

if TYPE_CHECKING:
    import psycopg

    from tenantkit.core.models import Tenant
    from tenantkit.core.tenancy import AsyncTenancy, Tenancy

    from .client import AsyncTenantClient

__all__ = ["atenancy", "atenant_client", "atenant_conn"]


def _fixture(func: Any) -> Any:
    if "pytest_asyncio" in sys.modules:
        import pytest_asyncio

        return pytest_asyncio.fixture(func)
    return pytest.fixture(func)


@_fixture
async def atenancy(
    request: pytest.FixtureRequest, pgtenants_session: PgTenantsSession, tenancy: Tenancy
) -> AsyncIterator[AsyncTenancy]:
    """A ``tenantkit.AsyncTenancy`` on the test database, its pool opened on the test's loop.

    For async code: ``async with atenancy.connection(tenant) as conn``. Its pool belongs to
    the event loop of the test (pytest-asyncio or anyio), is opened before the test and
    closed after it; tenants and hosts are those of ``tenancy`` (same database, same
    cleanup). Strict in strict mode, like ``tenancy``.
    """
    from tenantkit import AsyncTenancy

    settings = pgtenants_session.settings
    instance = AsyncTenancy(
        pgtenants_session.database.conninfo,
        shared_schema=settings.shared_schema,
        migrations=settings.migrations,
        strict=tenancy.strict,
        min_size=1,
        max_size=4,
    )
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()


@_fixture
async def atenant_conn(
    request: pytest.FixtureRequest, pgtenants_database: TestDatabase, tenant: Tenant
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """An async connection (``psycopg.AsyncConnection``) bound to ``tenant``.

    Needs an async test (pytest-asyncio or anyio). Committed at the end, or rolled back in
    rollback mode.
    """
    import psycopg

    from tenantkit.core.context import ause_tenant

    settings = tenancy_settings(request)
    conn = await psycopg.AsyncConnection.connect(pgtenants_database.conninfo)
    try:
        async with ause_tenant(conn, tenant, shared_schema=settings.shared_schema):
            yield conn
        if _rollback(request, settings):
            await conn.rollback()
        else:
            await conn.commit()
    finally:
        await conn.close()


@_fixture
async def atenant_client(
    request: pytest.FixtureRequest, pgtenants_session: PgTenantsSession, tenancy: Tenancy
) -> AsyncIterator[Callable[..., AsyncTenantClient]]:
    """Async twin of ``tenant_client`` for ASGI apps: ``await client.get("/")``.

    The app runs on the test's event loop: its lifespan starts before the first request and
    shuts down after the test on that loop, so an ``AsyncTenancy`` the app opens in its
    lifespan is opened, used and closed on one loop.
    """
    clients = _Clients(request, pgtenants_session, tenancy, asynchronous=True)
    try:
        yield clients.build
    finally:
        await clients.aclose()
