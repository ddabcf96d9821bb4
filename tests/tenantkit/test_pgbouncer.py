"""tenantkit behind a real pgbouncer (issue 11): transaction pooling, 3 server connections.

The leak stress runs 8 threads and 8 asyncio tasks, ``REQUESTS`` requests each, over 50
tenants. A request writes a marker row into its tenant's ``items`` table and reads it back
(the same query six times, so psycopg prepares it server-side), and checks that it sees
only its own tenant's rows; a shared-schema ``items`` table catches a request that ran
without its tenant's path. Afterwards every tenant table is checked for rows of others.

* ``pgbouncer=True``: 0 leaks, 0 errors, with default settings.
* the negative control: plain psycopg connections doing a session-level ``SET search_path``
  and then the query, the way a naive implementation does, leak under the same stress (the
  stress can see a leak).
* default mode behind pgbouncer refuses with ``PoolerDetected`` instead of leaking (behind
  session pooling too, where pgbouncer mode works as well).
* temporary tables made by one request (directly or inside a function) are never seen by
  another request through ``pg_temp``.
* the WSGI middleware serves no response with another tenant's data.

``PGTENANTS_PGBOUNCER_REQUESTS`` scales the requests per worker (default 200).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import uuid
import wsgiref.util
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from _pgbouncer import PgBouncer
from psycopg import sql

from tenantkit import AsyncTenancy, Tenancy, TenantResolver, current_tenant
from tenantkit.errors import PoolerDetected, TenantkitError
from tenantkit.web.wsgi import WSGITenantMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

REQUESTS = int(os.environ.get("PGTENANTS_PGBOUNCER_REQUESTS", "200"))
N_TENANTS = 50
N_THREADS = 8
N_TASKS = 8
#: psycopg prepares a query server-side after 5 runs on one connection (prepare_threshold);
#: each request runs its lookup more often than that, inside one transaction.
REPEAT = 6

INSERT = "INSERT INTO items (owner, marker) VALUES (%s, %s)"
#: The seed row says whose table the request reads (rows written by leaks carry a marker).
OWNERS = "SELECT owner FROM items WHERE marker IS NULL"
LOOKUP = "SELECT owner FROM items WHERE marker = %s"


class Env:
    """The tenants of this module, their shared schema, the pgbouncer, and the tallies."""

    def __init__(self, bouncer: PgBouncer, shared: str, tenants: list[str]) -> None:
        self.bouncer = bouncer
        self.shared = shared
        self.tenants = tenants
        self.leaks: list[str] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def leak(self, message: str) -> None:
        with self.lock:
            self.leaks.append(message)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    def tables(self) -> list[tuple[str, str]]:
        """(schema, rightful owner) of every ``items`` table."""
        return [(self.shared, "SHARED"), *((t, t) for t in self.tenants)]

    def reset(self) -> None:
        """Empty tallies; every table back to its one seed row (a test may have leaked)."""
        self.leaks, self.errors = [], []
        with psycopg.connect(self.bouncer.direct_dsn) as conn:
            for schema, owner in self.tables():
                table = sql.Identifier(schema, "items")
                conn.execute(sql.SQL("TRUNCATE {}").format(table))
                conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, NULL)").format(table), (owner,))

    def misplaced_rows(self) -> list[tuple[str, str]]:
        """(table schema, owner) of every row written into a table not its owner's."""
        bad: list[tuple[str, str]] = []
        with psycopg.connect(self.bouncer.direct_dsn, autocommit=True) as conn:
            for schema, owner in self.tables():
                query = sql.SQL("SELECT owner FROM {} WHERE owner <> %s").format(
                    sql.Identifier(schema, "items")
                )
                bad += [(schema, row[0]) for row in conn.execute(query, (owner,))]
        return bad


@pytest.fixture(scope="module")
def module_env(pgbouncer: PgBouncer) -> Iterator[Env]:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    shared = f"{prefix}_shared"
    tenants = [f"{prefix}_{i:02d}" for i in range(N_TENANTS)]
    create = "CREATE TABLE {} (owner text NOT NULL, marker text)"
    # Set up straight on PostgreSQL, not through the pooler under test.
    with psycopg.connect(pgbouncer.direct_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(shared)))
    with Tenancy(pgbouncer.direct_dsn, shared_schema=shared, max_size=2) as admin:
        admin.install()
        for schema in tenants:
            admin.create_tenant(schema, domains=[f"{schema.replace('_', '-')}.test"])
        with admin.admin_connection() as conn, conn.transaction():
            for schema in [shared, *tenants]:
                conn.execute(sql.SQL(create).format(sql.Identifier(schema, "items")))
            # Creates a temporary table where the query text cannot show it.
            conn.execute(
                sql.SQL(
                    "CREATE FUNCTION {}(who text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
                    "EXECUTE 'CREATE ' || 'TEMPORARY TABLE scratch (owner text)'; "
                    "INSERT INTO scratch VALUES (who); END $$"
                ).format(sql.Identifier(shared, "make_scratch"))
            )
    try:
        yield Env(pgbouncer, shared, tenants)
    finally:
        with psycopg.connect(pgbouncer.direct_dsn, autocommit=True) as conn:
            for schema in [*tenants, shared]:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


@pytest.fixture
def env(module_env: Env) -> Env:
    """The module's tenants, with fresh tables and tallies for this test."""
    module_env.reset()
    return module_env


def verify(env: Env, tenant: str, marker: str, owners: list[Any], found: list[Any]) -> None:
    """One request's observations: only its own tenant's rows, its marker read back."""
    if owners != [(tenant,)] or found != [(tenant,)] * REPEAT:
        env.leak(f"{tenant}: saw owners {owners!r}, marker {marker} as {found!r}")


# --- the stress: the same workers drive tenantkit and the naive control ---------------------

SyncRequest = Callable[[str], None]
AsyncRequest = Callable[[str], Awaitable[None]]
#: Builds worker i's request function in its thread (and closes what it opened).
SyncWorker = Callable[[int], AbstractContextManager[SyncRequest]]
#: Inside the event loop: opens what the tasks share, then builds task i's request function.
AsyncWorkers = Callable[
    [], AbstractAsyncContextManager[Callable[[int], AbstractAsyncContextManager[AsyncRequest]]]
]


def stress(
    env: Env, sync_worker: SyncWorker, async_workers: AsyncWorkers, *, requests: int = REQUESTS
) -> None:
    """8 threads and 8 asyncio tasks, ``requests`` each, at random among the tenants.

    A request that raises is counted in ``env.errors``; a wrong observation is reported by
    the request itself through ``env.leak``.
    """

    def thread_main(i: int) -> None:
        rng = random.Random(i)
        try:
            with sync_worker(i) as request:
                for _ in range(requests):
                    try:
                        request(rng.choice(env.tenants))
                    except Exception as exc:
                        env.error(f"thread {i}: {exc!r}")
        except Exception as exc:
            env.error(f"thread {i} setup: {exc!r}")

    async def task_main(i: int, worker: Callable[[int], Any]) -> None:
        rng = random.Random(1000 + i)
        async with worker(i) as request:
            for _ in range(requests):
                try:
                    await request(rng.choice(env.tenants))
                except Exception as exc:
                    env.error(f"task {i}: {exc!r}")

    async def tasks() -> None:
        async with async_workers() as worker:
            await asyncio.gather(*(task_main(i, worker) for i in range(N_TASKS)))

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(N_THREADS)]
    for thread in threads:
        thread.start()
    try:
        asyncio.run(tasks())
    finally:
        for thread in threads:
            thread.join()


def tenantkit_workers(env: Env, tk: Tenancy) -> tuple[SyncWorker, AsyncWorkers]:
    """Requests through ``tk`` (threads) and an AsyncTenancy like it (tasks)."""

    @contextmanager
    def sync_worker(_i: int) -> Iterator[SyncRequest]:
        def request(tenant: str) -> None:
            marker = uuid.uuid4().hex
            with tk.connection(tenant) as conn:
                conn.execute(INSERT, (tenant, marker))
                owners = conn.execute(OWNERS).fetchall()
                found = [r for _ in range(REPEAT) for r in conn.execute(LOOKUP, (marker,))]
            verify(env, tenant, marker, owners, found)

        yield request

    @asynccontextmanager
    async def async_workers() -> AsyncIterator[Callable[[int], Any]]:
        async with AsyncTenancy(
            tk.conninfo, shared_schema=env.shared, pgbouncer=tk.pgbouncer, max_size=4
        ) as atk:

            @asynccontextmanager
            async def worker(_i: int) -> AsyncIterator[AsyncRequest]:
                async def request(tenant: str) -> None:
                    marker = uuid.uuid4().hex
                    async with atk.connection(tenant) as conn:
                        await conn.execute(INSERT, (tenant, marker))
                        await asyncio.sleep(0)  # let the other tasks in, mid-transaction
                        owners = await (await conn.execute(OWNERS)).fetchall()
                        found = []
                        for _ in range(REPEAT):
                            found += await (await conn.execute(LOOKUP, (marker,))).fetchall()
                    verify(env, tenant, marker, owners, found)

                yield request

            yield worker

    return sync_worker, async_workers


def total(requests: int = REQUESTS) -> int:
    return (N_THREADS + N_TASKS) * requests


def test_pgbouncer_mode_has_no_leaks_and_no_errors(env: Env) -> None:
    """Default settings: psycopg would prepare LOOKUP, which breaks behind pgbouncer 1.18."""
    with Tenancy(env.bouncer.dsn, shared_schema=env.shared, pgbouncer=True, max_size=4) as tk:
        stress(env, *tenantkit_workers(env, tk))
    print(f"\npgbouncer mode: {len(env.leaks)} leaked, {len(env.errors)} failed of {total()}")
    assert env.errors[:5] == []
    assert env.leaks[:5] == []
    assert env.misplaced_rows() == []


def test_naive_session_set_leaks_behind_pgbouncer(env: Env) -> None:
    """Negative control: the stress sees the leaks of a session-level ``SET search_path``.

    Each worker holds its own autocommit connection through pgbouncer and does what a naive
    tenancy layer does per request: ``SET search_path``, then the queries. Under transaction
    pooling each statement may run on another server connection, with another client's path.
    """
    dsn = env.bouncer.dsn

    def set_path(tenant: str) -> sql.Composed:
        return sql.SQL("SET search_path TO {}, {}").format(
            sql.Identifier(tenant), sql.Identifier(env.shared)
        )

    @contextmanager
    def sync_worker(_i: int) -> Iterator[SyncRequest]:
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:

            def request(tenant: str) -> None:
                marker = uuid.uuid4().hex
                conn.execute(set_path(tenant))
                conn.execute(INSERT, (tenant, marker))
                owners = conn.execute(OWNERS).fetchall()
                found = [r for _ in range(REPEAT) for r in conn.execute(LOOKUP, (marker,))]
                verify(env, tenant, marker, owners, found)

            yield request

    @asynccontextmanager
    async def async_workers() -> AsyncIterator[Callable[[int], Any]]:
        @asynccontextmanager
        async def worker(_i: int) -> AsyncIterator[AsyncRequest]:
            async with await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, prepare_threshold=None
            ) as conn:

                async def request(tenant: str) -> None:
                    marker = uuid.uuid4().hex
                    await conn.execute(set_path(tenant))
                    await asyncio.sleep(0)
                    await conn.execute(INSERT, (tenant, marker))
                    owners = await (await conn.execute(OWNERS)).fetchall()
                    found = []
                    for _ in range(REPEAT):
                        found += await (await conn.execute(LOOKUP, (marker,))).fetchall()
                    verify(env, tenant, marker, owners, found)

                yield request

        yield worker

    # Server connections change hands whenever clients contend for them, so one round leaks
    # in thousands of requests; further rounds only guard against an unusually calm machine.
    for _round in range(5):
        stress(env, sync_worker, async_workers)
        if env.leaks:
            break
    print(f"\nnaive session SET: {len(env.leaks)} leaked, {len(env.errors)} failed of {total()}")
    assert len(env.leaks) > 0


# --- default mode behind the pooler ----------------------------------------------------------


def one_request(tk: Tenancy, tenant: str) -> list[Any]:
    with tk.connection(tenant) as conn:
        return conn.execute(OWNERS).fetchall()


async def one_async_request(atk: AsyncTenancy, tenant: str) -> list[Any]:
    async with atk.connection(tenant) as conn:
        return await (await conn.execute(OWNERS)).fetchall()


def test_default_mode_refuses_to_run_behind_pgbouncer(env: Env) -> None:
    with Tenancy(env.bouncer.dsn, shared_schema=env.shared) as tk:
        with pytest.raises(PoolerDetected, match="pgbouncer=True"):
            one_request(tk, env.tenants[0])
        # It stays refused: no later request gets through either.
        for tenant in env.tenants[1:4]:
            with pytest.raises(PoolerDetected):
                one_request(tk, tenant)


async def test_default_mode_refuses_to_run_behind_pgbouncer_async(env: Env) -> None:
    async with AsyncTenancy(env.bouncer.dsn, shared_schema=env.shared) as atk:
        with pytest.raises(PoolerDetected, match="pgbouncer=True"):
            await one_async_request(atk, env.tenants[0])
        with pytest.raises(PoolerDetected):
            await one_async_request(atk, env.tenants[1])


def test_session_pooling_pgbouncer_mode_works_default_mode_refuses(
    env: Env, pgbouncer_factory: Callable[..., PgBouncer]
) -> None:
    """pgbouncer mode is right behind any pgbouncer; default mode refuses session pooling too."""
    session = pgbouncer_factory(pool_mode="session")
    with Tenancy(session.dsn, shared_schema=env.shared, pgbouncer=True, max_size=2) as tk:
        for tenant in env.tenants[:5]:
            assert one_request(tk, tenant) == [(tenant,)]
    with Tenancy(session.dsn, shared_schema=env.shared) as tk, pytest.raises(PoolerDetected):
        one_request(tk, env.tenants[0])


def test_default_mode_direct_is_not_taken_for_a_pooler(env: Env) -> None:
    with Tenancy(env.bouncer.direct_dsn, shared_schema=env.shared) as tk:
        for tenant in env.tenants[:3]:
            with tk.connection(tenant) as conn:
                assert conn.execute(OWNERS).fetchall() == [(tenant,)]


# --- temporary tables ------------------------------------------------------------------------


def test_temp_tables_never_reach_another_request(env: Env) -> None:
    """A temp table made by one request (plainly or in a function) is gone for every other.

    pgbouncer mode may either drop it with the transaction or refuse temp tables with a
    TenantkitError; reading another request's rows through ``pg_temp`` is a leak, and so is
    finding the table still there when creating it again.
    """
    refused: list[str] = []
    created: list[str] = []
    make = sql.SQL("SELECT {}(%s)").format(sql.Identifier(env.shared, "make_scratch"))
    read = "SELECT owner FROM pg_temp.scratch"

    @contextmanager
    def sync_worker(i: int) -> Iterator[SyncRequest]:
        rng = random.Random(500 + i)

        def request(tenant: str) -> None:
            action = rng.random()
            try:
                with tk.connection(tenant) as conn:
                    if action < 0.25:
                        conn.execute("CREATE TEMP TABLE scratch (owner text)")
                        conn.execute("INSERT INTO scratch VALUES (%s)", (tenant,))
                        created.append(tenant)
                    elif action < 0.5:
                        conn.execute(make, (tenant,))  # no "temp" in this query's text
                        created.append(tenant)
                    else:
                        rows = conn.execute(read).fetchall()
                        env.leak(f"{tenant} read a temp table of another request: {rows!r}")
            except psycopg.errors.UndefinedTable:
                pass  # no temp table on this server connection: right
            except psycopg.errors.DuplicateTable:
                env.leak(f"{tenant}: the temp table of an earlier request was still there")
            except TenantkitError as exc:
                refused.append(str(exc))

        yield request

    @asynccontextmanager
    async def async_workers() -> AsyncIterator[Callable[[int], Any]]:
        async with AsyncTenancy(
            env.bouncer.dsn, shared_schema=env.shared, pgbouncer=True, max_size=4
        ) as atk:

            @asynccontextmanager
            async def worker(_i: int) -> AsyncIterator[AsyncRequest]:
                async def request(tenant: str) -> None:
                    try:
                        async with atk.connection(tenant) as conn:
                            await asyncio.sleep(0)
                            rows = await (await conn.execute(read)).fetchall()
                            env.leak(f"async {tenant} read another request's temp table {rows!r}")
                    except psycopg.errors.UndefinedTable:
                        pass

                yield request

            yield worker

    with Tenancy(env.bouncer.dsn, shared_schema=env.shared, pgbouncer=True, max_size=4) as tk:
        stress(env, sync_worker, async_workers, requests=REQUESTS // 2)
    print(
        f"\ntemp tables: {len(created)} created, {len(refused)} refused, {len(env.leaks)} leaked, "
        f"{len(env.errors)} failed of {total(REQUESTS // 2)}"
    )
    assert env.errors[:5] == []
    assert env.leaks[:5] == []
    # Either temp tables live and die with their transaction, or they are refused; not both.
    assert not (created and refused), refused[:3]
    assert created or refused


# --- WSGI ------------------------------------------------------------------------------------


def test_wsgi_middleware_behind_pgbouncer_serves_only_its_tenant(env: Env) -> None:
    dsn = env.bouncer.dsn
    served: list[tuple[str, str]] = []
    lock = threading.Lock()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        tenant = current_tenant()
        assert tenant is not None
        marker = uuid.uuid4().hex
        with tk.connection() as conn:  # the current tenant, set by the middleware
            conn.execute(INSERT, (str(tenant), marker))
            owners = [r[0] for r in conn.execute(OWNERS)]
            owners += [r[0] for _ in range(REPEAT) for r in conn.execute(LOOKUP, (marker,))]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(sorted(set(owners))).encode()]

    def client(i: int) -> None:
        rng = random.Random(2000 + i)
        for _ in range(REQUESTS // 2):
            tenant = rng.choice(env.tenants)
            environ: dict[str, Any] = {"HTTP_HOST": f"{tenant.replace('_', '-')}.test"}
            wsgiref.util.setup_testing_defaults(environ)
            statuses: list[str] = []

            def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
                statuses.append(status)  # noqa: B023  # called before the next iteration

            try:
                body = b"".join(middleware(environ, start_response))
            except Exception as exc:
                env.error(f"{tenant}: {exc!r}")
                continue
            with lock:
                served.append((tenant, f"{statuses} {body.decode()}"))

    with Tenancy(dsn, shared_schema=env.shared, pgbouncer=True, max_size=4) as tk:
        # The registry's LISTEN needs a session of its own: straight to PostgreSQL.
        resolver = TenantResolver.from_tenancy(tk, listen_conninfo=env.bouncer.direct_dsn)
        middleware = WSGITenantMiddleware(app, resolver)
        try:
            threads = [threading.Thread(target=client, args=(i,)) for i in range(N_THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            resolver.close()
    wrong = [(t, body) for t, body in served if body != f"['200 OK'] {json.dumps([t])}"]
    print(f"WSGI: {len(wrong)} wrong of {len(served)} responses, {len(env.errors)} errors")
    assert env.errors[:5] == []
    assert wrong[:5] == []
    assert len(served) == N_THREADS * (REQUESTS // 2)
