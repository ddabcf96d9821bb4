"""The FastAPI dependencies: each routed request gets a session for its own tenant.

Endpoints are defined inside the tests, so dependencies are given as default values
(``= Depends(...)``): with postponed annotations FastAPI resolves annotations in the module's
globals, where a test's local dependency is not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from _sqla_support import items, populated
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from tenantkit import ASGITenantMiddleware, AsyncTenancy, Tenancy
from tenantkit.sqlalchemy import (
    async_session_dependency,
    async_tenant_engine,
    session_dependency,
    tenant_engine,
)


def host(schema: str) -> str:
    return f"{schema.replace('_', '-')}.example.test"


@pytest.fixture
def env(dsn: str, schema_name: str) -> Iterator[tuple[Tenancy, list[str]]]:
    with populated(dsn, schema_name, 3) as (tenancy, names):
        for name in names:
            tenancy.add_domain(name, host(name))
        yield tenancy, names


def test_sync_dependency_serves_each_host_its_tenant(env: tuple[Tenancy, list[str]]) -> None:
    tenancy, names = env
    engine = tenant_engine(tenancy, pool_size=2, max_overflow=0)
    get_session = session_dependency(sessionmaker(engine))
    api = FastAPI()

    @api.get("/owner")
    def read_owner(session: Session = Depends(get_session)) -> dict[str, str]:  # noqa: B008
        return {"owner": session.execute(select(items.c.owner).limit(1)).scalar_one()}

    try:
        with ASGITenantMiddleware(api, tenancy) as app, TestClient(app) as client:
            for name in [*names, *reversed(names)]:
                reply = client.get("/owner", headers={"host": host(name)})
                assert reply.json() == {"owner": name}
            assert client.get("/owner", headers={"host": "nobody.example.test"}).status_code == 404
    finally:
        engine.dispose()


async def test_async_dependency_serves_each_host_its_tenant(
    env: tuple[Tenancy, list[str]], dsn: str
) -> None:
    tenancy, names = env
    async with AsyncTenancy(dsn, shared_schema=tenancy.shared_schema, max_size=2) as atenancy:
        engine = async_tenant_engine(atenancy, pool_size=4, max_overflow=0)
        get_session = async_session_dependency(async_sessionmaker(engine))
        api = FastAPI()

        @api.get("/owner")
        async def read_owner(session: AsyncSession = Depends(get_session)) -> dict[str, str]:  # noqa: B008
            result = await session.execute(select(items.c.owner).limit(1))
            await asyncio.sleep(0)  # other requests interleave
            return {"owner": result.scalar_one()}

        try:
            async with ASGITenantMiddleware(api, atenancy) as app:
                await app.awarm()
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport) as client:

                    async def get(name: str) -> tuple[str, object]:
                        url = f"http://{host(name)}/owner"
                        return name, (await client.get(url)).json()

                    replies = await asyncio.gather(*(get(names[i % 3]) for i in range(60)))
            assert all(body == {"owner": name} for name, body in replies), replies
        finally:
            await engine.dispose()
