"""search_path leak test (issue 3, acceptance 2).

8 threads and 8 asyncio tasks share one sync and one async pool, each switching at random among
50 tenants (1,000 switches per worker; ``PGTENANTS_LEAK_SWITCHES`` scales it for quick runs),
with exceptions inside blocks, rollbacks, savepoint rollbacks, SQL errors, mid-transaction
and autocommit switches and connections terminated by the server mixed in. Every block checks
that it sees only its own tenant's row (a shared-schema ``items`` table catches a missing
tenant path). Run in the default mode and in pgbouncer mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tenantkit.core.context import ause_tenant, current_tenant, use_tenant
from tenantkit.core.tenancy import AsyncTenancy, Tenancy

SWITCHES = int(os.environ.get("PGTENANTS_LEAK_SWITCHES", "1000"))
N_TENANTS = 50
N_THREADS = 8
N_TASKS = 8
SELECT = "SELECT owner FROM items"


class Boom(Exception):
    pass


@pytest.fixture(params=[False, True], ids=["default", "pgbouncer"])
def setup(request: pytest.FixtureRequest, dsn: str, schema_name: str) -> Iterator[dict[str, Any]]:
    pgbouncer: bool = request.param
    tk = Tenancy(dsn, shared_schema=schema_name, pgbouncer=pgbouncer, min_size=4, max_size=4)
    tk.install()
    prefix = f"l{uuid.uuid4().hex[:8]}"
    tenants = [f"{prefix}_{i:02d}" for i in range(N_TENANTS)]
    with tk.admin_connection() as conn, conn.transaction():
        conn.execute("CREATE TABLE items (owner text)")  # the shared schema's decoy
        conn.execute("INSERT INTO items VALUES ('SHARED')")
    for schema in tenants:
        tk.create_tenant(schema)
    # Tenant tables made with qualified names, not through the switching under test.
    with tk.admin_connection() as conn, conn.transaction():
        for schema in tenants:
            table = sql.Identifier(schema, "items")
            conn.execute(sql.SQL("CREATE TABLE {} (owner text)").format(table))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(table), (schema,))
    try:
        yield {"tk": tk, "tenants": tenants, "dsn": dsn, "pgbouncer": pgbouncer}
    finally:
        tk.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema in [*tenants, schema_name]:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def check(rows: list[Any], expected: str, leaks: list[str], where: str) -> None:
    if rows != [(expected,)]:
        leaks.append(f"{where}: expected {expected!r}, saw {rows!r}")


def sync_worker(env: dict[str, Any], seed: int, leaks: list[str], errors: list[str]) -> None:
    tk: Tenancy = env["tk"]
    tenants: list[str] = env["tenants"]
    rng = random.Random(seed)
    killer = psycopg.connect(env["dsn"], autocommit=True)
    try:
        for _ in range(SWITCHES):
            tenant = rng.choice(tenants)
            action = rng.random()
            try:
                with tk.connection(tenant) as conn:
                    if current_tenant() != tenant:
                        leaks.append(f"contextvar {current_tenant()!r} != {tenant!r}")
                    check(conn.execute(SELECT).fetchall(), tenant, leaks, "plain")
                    if action < 0.10:
                        raise Boom
                    elif action < 0.20:
                        conn.rollback()
                        check(conn.execute(SELECT).fetchall(), tenant, leaks, "after rollback")
                    elif action < 0.30:
                        with contextlib.suppress(Boom), conn.transaction():
                            conn.execute("INSERT INTO items VALUES ('junk')")
                            raise Boom
                        check(conn.execute(SELECT).fetchall(), tenant, leaks, "after savepoint")
                    elif action < 0.40:
                        other = rng.choice(tenants)
                        with use_tenant(conn, other):
                            check(conn.execute(SELECT).fetchall(), other, leaks, "nested")
                        check(conn.execute(SELECT).fetchall(), tenant, leaks, "after nested")
                    elif action < 0.47:
                        with contextlib.suppress(psycopg.errors.DivisionByZero):
                            conn.execute("SELECT 1 / 0")
                        conn.rollback()
                        check(conn.execute(SELECT).fetchall(), tenant, leaks, "after error")
                    elif action < 0.50:
                        # An error swallowed without rollback: the block's COMMIT is
                        # answered ROLLBACK, undoing the path set by this transaction.
                        with contextlib.suppress(psycopg.errors.UndefinedTable):
                            conn.execute("SELECT * FROM no_such_table")
                    elif action < 0.55:
                        conn.commit()
                        check(conn.execute(SELECT).fetchall(), tenant, leaks, "after commit")
                    elif action < 0.60 and not env["pgbouncer"]:
                        conn.commit()
                        conn.autocommit = True  # no BEGIN to ride on: the switch is a SET
                        other = rng.choice(tenants)
                        with use_tenant(conn, other):
                            check(conn.execute(SELECT).fetchall(), other, leaks, "autocommit")
                        check(conn.execute(SELECT).fetchall(), tenant, leaks, "autocommit")
                    elif action < 0.61:
                        killer.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
                        conn.execute(SELECT)
                        leaks.append("a terminated connection still answered")
            except (Boom, psycopg.OperationalError):
                pass
            if current_tenant() is not None:
                leaks.append(f"contextvar not restored: {current_tenant()!r}")
            if action > 0.98 and tk.pool is not None:
                # A raw borrower of the same pool never sees a tenant's path.
                with tk.pool.connection() as raw:
                    check(raw.execute(SELECT).fetchall(), "SHARED", leaks, "raw pool")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        killer.close()


async def async_worker(atk: AsyncTenancy, env: dict[str, Any], seed: int, leaks: list[str]) -> None:
    tenants: list[str] = env["tenants"]
    rng = random.Random(seed)
    killer = await psycopg.AsyncConnection.connect(env["dsn"], autocommit=True)
    try:
        for _ in range(SWITCHES):
            tenant = rng.choice(tenants)
            action = rng.random()
            try:
                async with atk.connection(tenant) as conn:
                    if current_tenant() != tenant:
                        leaks.append(f"async contextvar {current_tenant()!r} != {tenant!r}")
                    await asyncio.sleep(0)  # let other tasks interleave inside the block
                    rows = await (await conn.execute(SELECT)).fetchall()
                    check(rows, tenant, leaks, "async plain")
                    if action < 0.10:
                        raise Boom
                    elif action < 0.20:
                        await conn.rollback()
                        rows = await (await conn.execute(SELECT)).fetchall()
                        check(rows, tenant, leaks, "async after rollback")
                    elif action < 0.30:
                        with contextlib.suppress(Boom):
                            async with conn.transaction():
                                await conn.execute("INSERT INTO items VALUES ('junk')")
                                raise Boom
                        rows = await (await conn.execute(SELECT)).fetchall()
                        check(rows, tenant, leaks, "async after savepoint")
                    elif action < 0.40:
                        other = rng.choice(tenants)
                        async with ause_tenant(conn, other):
                            await asyncio.sleep(0)
                            rows = await (await conn.execute(SELECT)).fetchall()
                            check(rows, other, leaks, "async nested")
                        rows = await (await conn.execute(SELECT)).fetchall()
                        check(rows, tenant, leaks, "async after nested")
                    elif action < 0.50:
                        await conn.commit()
                        rows = await (await conn.execute(SELECT)).fetchall()
                        check(rows, tenant, leaks, "async after commit")
                    elif action < 0.51:
                        await killer.execute(
                            "SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,)
                        )
                        await conn.execute(SELECT)
                        leaks.append("a terminated async connection still answered")
            except (Boom, psycopg.OperationalError):
                pass
            if current_tenant() is not None:
                leaks.append(f"async contextvar not restored: {current_tenant()!r}")
    finally:
        await killer.close()


async def run_async(env: dict[str, Any], leaks: list[str]) -> None:
    tk: Tenancy = env["tk"]
    async with AsyncTenancy(
        env["dsn"], shared_schema=tk.shared_schema, pgbouncer=env["pgbouncer"], max_size=4
    ) as atk:
        await asyncio.gather(*(async_worker(atk, env, 1000 + i, leaks) for i in range(N_TASKS)))


def test_no_search_path_leaks(setup: dict[str, Any]) -> None:
    leaks: list[str] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=sync_worker, args=(setup, i, leaks, errors))
        for i in range(N_THREADS)
    ]
    for thread in threads:
        thread.start()
    try:
        asyncio.run(run_async(setup, leaks))
    finally:
        for thread in threads:
            thread.join()
    assert errors == []
    assert leaks == []
    # The registry never saw the junk rows of the rolled back savepoints.
    tk: Tenancy = setup["tk"]
    for tenant in setup["tenants"][:5]:
        with tk.connection(tenant) as conn:
            assert conn.execute(SELECT).fetchall() == [(tenant,)]
