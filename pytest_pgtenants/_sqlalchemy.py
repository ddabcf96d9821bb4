"""SQLAlchemy fixtures: ``tenant_session`` and ``atenant_session`` (needs SQLAlchemy).

Registered by the plugin when SQLAlchemy is importable (or load it yourself with
``-p pytest_pgtenants._sqlalchemy``). The async fixture is defined in ``pytest_configure``,
like those of :mod:`._async`, so that pytest-asyncio's fixture decorator is used when
pytest-asyncio is loaded.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .fixtures import _rollback, tenancy_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from tenantkit import AsyncTenancy, Tenancy, Tenant

__all__ = ["pgtenants_sqlalchemy_engines", "pytest_configure", "tenant_session"]


class _Engines:
    """One tenant engine per tenancy of the test process (the plugin shares its tenancies)."""

    def __init__(self) -> None:
        self._engines: dict[int, tuple[Tenancy, Engine]] = {}

    def get(self, tenancy: Tenancy) -> Engine:
        found = self._engines.get(id(tenancy))
        if found is None or found[0] is not tenancy:
            from tenantkit.sqlalchemy import tenant_engine

            # Small: tests hold one session at a time; a pool keeps connections warm.
            found = (tenancy, tenant_engine(tenancy, pool_size=2, max_overflow=4))
            self._engines[id(tenancy)] = found
        return found[1]

    def dispose(self) -> None:
        for _, engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


@pytest.fixture(scope="session")
def pgtenants_sqlalchemy_engines() -> Iterator[_Engines]:
    """(infrastructure) The SQLAlchemy engines of ``tenant_session``, disposed at the end."""
    engines = _Engines()
    try:
        yield engines
    finally:
        engines.dispose()


@pytest.fixture
def tenant_session(
    request: pytest.FixtureRequest,
    pgtenants_sqlalchemy_engines: _Engines,
    tenancy: Tenancy,
    tenant: Tenant,
) -> Iterator[Session]:
    """A SQLAlchemy ``Session`` working for ``tenant`` (``info["tenant"]``), whatever tenant
    is current.

    Its engine is a ``tenantkit.sqlalchemy.tenant_engine`` over ``tenancy`` (strict in strict
    mode). Committed at the end of the test, rolled back in rollback mode
    (``--pgtenants-rollback`` or ``@pytest.mark.pgtenants_rollback``), then closed.
    """
    from sqlalchemy.orm import Session

    from tenantkit.sqlalchemy import SESSION_TENANT

    engine = pgtenants_sqlalchemy_engines.get(tenancy)
    rollback = _rollback(request, tenancy_settings(request))
    with Session(engine, info={SESSION_TENANT: tenant}) as session:
        yield session
        if rollback:
            session.rollback()
        else:
            session.commit()


async def _atenant_session(
    request: pytest.FixtureRequest, atenancy: AsyncTenancy, tenant: Tenant
) -> AsyncIterator[AsyncSession]:
    """A SQLAlchemy ``AsyncSession`` working for ``tenant`` (``info["tenant"]``).

    Needs an async test (pytest-asyncio or anyio). Its engine, a
    ``tenantkit.sqlalchemy.async_tenant_engine`` over ``atenancy``, belongs to the test's
    event loop and is disposed after the test. Committed at the end, or rolled back in
    rollback mode.
    """
    from sqlalchemy.ext.asyncio import AsyncSession

    from tenantkit.sqlalchemy import SESSION_TENANT, async_tenant_engine

    engine = async_tenant_engine(atenancy, pool_size=2, max_overflow=2)
    try:
        async with AsyncSession(engine, info={SESSION_TENANT: tenant}) as session:
            yield session
            if _rollback(request, tenancy_settings(request)):
                await session.rollback()
            else:
                await session.commit()
    finally:
        await engine.dispose()


_ASYNC_NAME = "pytest_pgtenants._sqlalchemy.async"


def pytest_configure(config: pytest.Config) -> None:
    """Register ``atenant_session`` with pytest-asyncio's decorator when it is loaded."""
    if config.pluginmanager.has_plugin(_ASYNC_NAME):
        return
    from ._async import _fixture

    # A module object: pytest looks fixtures up on a module's own attributes.
    holder: Any = types.ModuleType(_ASYNC_NAME)
    holder.atenant_session = _fixture(_atenant_session)
    config.pluginmanager.register(holder, _ASYNC_NAME)
