"""tenantkit.sqlalchemy with asyncio: AsyncSession binding, round trips, 200 tasks, strict."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from _sqla_support import items, populated, tracing
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from tenantkit import AsyncTenancy, NoTenantSelected, Tenancy, tenant_context
from tenantkit.sqlalchemy import SESSION_TENANT, async_tenant_engine, atenant_session

OWNER = select(items.c.owner).where(items.c.id == 1)


@pytest.fixture(params=[False, True], ids=["default", "pgbouncer-mode"])
def env(
    request: pytest.FixtureRequest, dsn: str, schema_name: str
) -> Iterator[tuple[Tenancy, list[str]]]:
    with populated(dsn, schema_name, 6, pgbouncer=request.param) as found:
        yield found


@pytest.fixture
async def atenancy(env: tuple[Tenancy, list[str]], dsn: str) -> AsyncIterator[AsyncTenancy]:
    tenancy = env[0]
    async with AsyncTenancy(
        dsn,
        shared_schema=tenancy.shared_schema,
        pgbouncer=tenancy.pgbouncer,
        strict=tenancy.strict,
        min_size=1,
        max_size=1,
    ) as instance:
        yield instance


@pytest.fixture
async def engine(atenancy: AsyncTenancy) -> AsyncIterator[AsyncEngine]:
    eng = async_tenant_engine(atenancy, pool_size=1, max_overflow=0)
    try:
        yield eng
    finally:
        await eng.dispose()


async def owner(session: AsyncSession) -> str:
    return str((await session.execute(OWNER)).scalar_one())


async def test_async_session_follows_current_or_explicit_tenant(
    env: tuple[Tenancy, list[str]], engine: AsyncEngine
) -> None:
    _, (a, b, *_) = env
    for name in (a, b, a):
        with tenant_context(name):
            async with AsyncSession(engine) as session:
                assert await owner(session) == name
            async with AsyncSession(engine, info={SESSION_TENANT: b}) as session:
                assert await owner(session) == b
            async with atenant_session(async_sessionmaker(engine), a) as session:
                assert await owner(session) == a
    async with AsyncSession(engine) as session:
        assert await owner(session) == "SHARED"


async def test_async_reflection(env: tuple[Tenancy, list[str]], engine: AsyncEngine) -> None:
    _, (a, *_) = env
    with tenant_context(a):
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
            default = await conn.run_sync(lambda c: inspect(c).default_schema_name)
    assert (names, default) == (["items"], a)


async def test_async_strict(dsn: str, schema_name: str) -> None:
    with populated(dsn, schema_name, 1) as (_, (a,)):
        async with AsyncTenancy(dsn, shared_schema=schema_name, strict=True) as atenancy:
            eng = async_tenant_engine(atenancy, pool_size=1, max_overflow=0, pool_pre_ping=True)
            try:
                async with AsyncSession(eng) as session:
                    with pytest.raises(NoTenantSelected):
                        await session.execute(OWNER)
                async with atenant_session(eng, a) as session:
                    assert await owner(session) == a
            finally:
                await eng.dispose()


async def _request(session: AsyncSession, name: str) -> None:
    assert (await session.execute(OWNER)).scalar_one() == name
    await session.execute(items.insert().values(owner=name))
    await session.commit()


async def test_async_round_trips_equal_the_no_tenant_baseline(
    env: tuple[Tenancy, list[str]], engine: AsyncEngine, dsn: str
) -> None:
    tenancy, names = env
    # Four requests after the warm-up: psycopg prepares a statement server-side on its 6th run
    # on one connection (one extra round trip, once), which would fall inside the baseline's
    # window only; tenant connections prepare per tenant path (see tenantkit._connection).
    names = names[:4]
    options = f"-c search_path={names[0]},{tenancy.shared_schema}"

    async def connect() -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(dsn, options=options)

    plain = create_async_engine(
        "postgresql+psycopg://", async_creator=connect, pool_size=1, max_overflow=0
    )
    try:
        async with AsyncSession(plain) as session:
            await _request(session, names[0])
        async with AsyncSession(engine, info={SESSION_TENANT: names[0]}) as session:
            await _request(session, names[0])
        pgconns = []
        for eng in (plain, engine):
            async with eng.connect() as conn:
                raw = await conn.get_raw_connection()
                pgconns.append(raw.driver_connection.pgconn)  # type: ignore[union-attr]

        async def baseline() -> None:
            for _ in names:
                async with AsyncSession(plain) as session:
                    await _request(session, names[0])

        async def rotating() -> None:
            for name in names:
                with tenant_context(name):
                    async with AsyncSession(engine) as session:
                        await _request(session, name)

        with tracing(pgconns[0]) as expected:
            await baseline()
        with tracing(pgconns[1]) as got:
            await rotating()
    finally:
        await plain.dispose()
    assert len(got) == len(expected), "\n".join(["GOT", *got, "EXPECTED", *expected])
    for mine, theirs in zip(got, expected, strict=True):
        if theirs == "Query BEGIN":
            assert mine.startswith("Query BEGIN; SET LOCAL search_path TO"), mine
        elif theirs == "Query COMMIT" and tenancy.pgbouncer:
            assert mine == "Query DISCARD TEMP; COMMIT"
        else:
            assert mine == theirs


async def test_200_tasks_rotating_tenants_read_only_their_own(
    env: tuple[Tenancy, list[str]], atenancy: AsyncTenancy
) -> None:
    _, names = env
    eng = async_tenant_engine(atenancy, pool_size=8, max_overflow=0)
    wrong: list[str] = []

    async def task(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(5):
            name = rng.choice(names)
            if i % 2:
                with tenant_context(name):
                    async with AsyncSession(eng) as session:
                        seen = await owner(session)
                        await asyncio.sleep(0)  # let other tasks interleave mid-session
                        seen2 = await owner(session)
            else:
                async with atenant_session(eng, name) as session:
                    seen = await owner(session)
                    await asyncio.sleep(0)
                    seen2 = await owner(session)
            if (seen, seen2) != (name, name):
                wrong.append(f"{name} read {seen}/{seen2}")

    try:
        await asyncio.gather(*(task(i) for i in range(200)))
    finally:
        await eng.dispose()
    assert wrong == []
