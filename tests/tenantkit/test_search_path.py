"""The current tenant and search_path switching: contextvars, use_tenant, round trips."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from _wire import wire
from psycopg import pq

from tenantkit.core.context import (
    ause_tenant,
    current_tenant,
    path_sql,
    reset_current_tenant,
    search_path_for,
    set_current_tenant,
    tenant_context,
    use_tenant,
)
from tenantkit.core.models import Tenant, TenantState
from tenantkit.core.tenancy import AsyncTenancy, Tenancy
from tenantkit.errors import InvalidSchemaName, NoTenantSelected


def uniq() -> str:
    return f"s_{uuid.uuid4().hex[:12]}"


def frontend_messages(conn: psycopg.Connection[Any], action: Callable[[], Any]) -> list[str]:
    """Run ``action`` and return the SQL the client sent (``Query``/``Parse``), in order."""
    return [
        f"{kind} {text}" for kind, text in wire(conn, action).messages if kind in ("Query", "Parse")
    ]


def session_path(tk: Tenancy) -> str:
    """The session-level search_path of the pool's only connection, read behind tenantkit's back."""
    assert tk.pool is not None
    conn = tk.pool.getconn()
    try:
        res = conn.pgconn.exec_(b"SHOW search_path")
        value = res.get_value(0, 0)
        assert value is not None
        return value.decode()
    finally:
        tk.pool.putconn(conn)


@pytest.fixture(params=[False, True], ids=["default", "pgbouncer"])
def tk(request: pytest.FixtureRequest, dsn: str, schema_name: str) -> Iterator[Tenancy]:
    """A one-connection tenancy (so consecutive checkouts reuse it) with two tenants."""
    with Tenancy(
        dsn, shared_schema=schema_name, min_size=1, max_size=1, pgbouncer=request.param
    ) as tenancy:
        tenancy.install()
        for _ in range(2):
            tenant = tenancy.create_tenant(uniq())
            with tenancy.connection(tenant) as conn:
                conn.execute("CREATE TABLE who (name text)")
                conn.execute("INSERT INTO who VALUES (%s)", (tenant.schema,))
        yield tenancy


def who(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT name FROM who").fetchone()
    assert row is not None
    return str(row[0])


# -- the ContextVar ---------------------------------------------------------------------------


def test_current_tenant_token_and_context() -> None:
    assert current_tenant() is None
    token = set_current_tenant("acme")
    assert current_tenant() == "acme"
    with tenant_context("beta"):
        assert current_tenant() == "beta"
        with tenant_context(None):
            assert current_tenant() is None
        assert current_tenant() == "beta"
    assert current_tenant() == "acme"
    reset_current_tenant(token)
    assert current_tenant() is None
    with pytest.raises(InvalidSchemaName):
        set_current_tenant("Robert'); DROP TABLE students;--")


def test_current_tenant_per_thread_and_task() -> None:
    seen: dict[str, Any] = {}
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        with tenant_context(name):
            barrier.wait()
            seen[name] = current_tenant()

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {f"t{i}": f"t{i}" for i in range(4)}

    async def task(name: str) -> Any:
        with tenant_context(name):
            await asyncio.sleep(0.01)
            return current_tenant()

    async def main() -> list[Any]:
        return await asyncio.gather(*(task(f"a{i}") for i in range(4)))

    assert asyncio.run(main()) == [f"a{i}" for i in range(4)]


def test_path_order_and_quoting() -> None:
    tenant = Tenant(1, "acme", "Acme", TenantState.ACTIVE, None, {})  # type: ignore[arg-type]
    assert search_path_for(tenant, shared_schema="shared", extra_schemas=["ext"]) == [
        "acme",
        "shared",
        "ext",
        "pg_temp",
    ]
    assert search_path_for(None) == ["public", "pg_temp"]
    assert path_sql(["acme", "public", "pg_temp"]) == b'"acme", "public", pg_temp'
    with pytest.raises(InvalidSchemaName):
        search_path_for('x", public; --')


# -- plain psycopg connections ----------------------------------------------------------------


def test_use_tenant_on_plain_connection(conn: psycopg.Connection[Any]) -> None:
    a, b = uniq(), uniq()
    for s in (a, b):
        conn.execute(f'CREATE SCHEMA "{s}"')

    def path() -> str:
        row = conn.execute("SHOW search_path").fetchone()
        assert row is not None
        return str(row[0]).replace('"', "")

    before = path()
    with use_tenant(conn, a, extra_schemas=["ext"]):
        assert path() == f"{a}, public, ext, pg_temp"
        assert current_tenant() == a
        with use_tenant(conn, b):
            assert path().startswith(b)
        assert path().startswith(a)
    assert path() == before
    assert current_tenant() is None

    @use_tenant(conn, b)
    def decorated() -> str:
        return path()

    assert decorated().startswith(b)
    assert decorated().startswith(b)  # a decorator re-enters with fresh state
    with pytest.raises(ZeroDivisionError), use_tenant(conn, a):
        1 / 0  # noqa: B018
    assert path() == before
    for s in (a, b):
        conn.execute(f'DROP SCHEMA "{s}"')


async def test_ause_tenant_on_plain_connection(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
        async with ause_tenant(aconn, "some_tenant"):
            cur = await aconn.execute("SHOW search_path")
            assert await cur.fetchone() == ('"some_tenant", "public", pg_temp',)
            assert current_tenant() == "some_tenant"
        cur = await aconn.execute("SHOW search_path")
        row = await cur.fetchone()
        assert row is not None
        assert "some_tenant" not in row[0]


# -- tenancy connections: round trips and staleness -------------------------------------------


def test_switch_rides_on_begin_every_transaction(tk: Tenancy) -> None:
    a, b = [t.schema for t in tk.tenants()]
    assert tk.pool is not None
    pooled = tk.pool.getconn()
    tk.pool.putconn(pooled)

    def request(tenant: str) -> Callable[[], None]:
        def run() -> None:
            with tk.connection(tenant) as conn:
                assert who(conn) == tenant
                conn.commit()
                assert who(conn) == tenant  # a second transaction of the same checkout

        return run

    for tenant in (a, a, b):
        sent = frontend_messages(pooled, request(tenant))
        # One message per transaction start: the path (and the checkout's temp discard)
        # ride on BEGIN, never a round trip of their own; set again for the same tenant,
        # as nothing proves the session path was not changed in between.
        first = f'Query BEGIN; SET LOCAL search_path TO "{tenant}"'
        assert sent[0].startswith(first)
        assert "DISCARD TEMP" in sent[0]
        assert sent[2] == "Query COMMIT" or sent[2].endswith("COMMIT")
        assert sent[3].startswith(first)
        assert len(sent) == 6  # BEGIN+SET, query, COMMIT, twice


def test_a_savepoint_rollback_never_undoes_a_switch(tk: Tenancy) -> None:
    """A switch inside a transaction is applied by a SET LOCAL sent with the next statement,
    which may be inside a savepoint: rolling that savepoint back restores the previous
    tenant's path, so the switch is sent again (psycopg's savepoints and SQL ones alike)."""
    a, b = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:
        assert who(conn) == a  # the transaction is open: what follows is a savepoint
        with use_tenant(conn, b):
            with contextlib.suppress(KeyError), conn.transaction():
                assert who(conn) == b  # the SET LOCAL goes inside the savepoint
                raise KeyError
            assert who(conn) == b
            with conn.transaction():  # a savepoint that is released keeps it
                assert who(conn) == b
            assert who(conn) == b
        assert who(conn) == a
    with tk.connection(a) as conn:
        assert who(conn) == a
        with use_tenant(conn, b):
            conn.execute("SAVEPOINT by_hand")
            assert who(conn) == b
            conn.execute("rollback  to by_hand")
            assert who(conn) == b
        with contextlib.suppress(KeyError), conn.transaction():
            assert who(conn) == a
            with use_tenant(conn, b):
                assert who(conn) == b
            raise KeyError
        assert who(conn) == a  # the switch back was inside the savepoint too


def test_rollback_never_leaves_a_stale_path(tk: Tenancy) -> None:
    a, b = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:
        assert who(conn) == a

    # The SET for b is undone by the rollback: the next b request must set it again.
    def fail_in_b() -> None:
        with tk.connection(b) as conn:
            assert who(conn) == b
            raise KeyError

    with pytest.raises(KeyError):
        fail_in_b()
    with tk.connection(b) as conn:
        assert who(conn) == b
    # An error swallowed inside the block: its COMMIT is answered ROLLBACK.
    with tk.connection(a) as conn, pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM nowhere")
    with tk.connection(a) as conn:
        assert who(conn) == a
    with tk.connection(b) as conn:
        assert who(conn) == b


def test_savepoint_rollback_keeps_the_path(tk: Tenancy) -> None:
    a, _ = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:

        def failing_savepoint() -> None:
            with conn.transaction():
                conn.execute("INSERT INTO who VALUES ('x')")
                1 / 0  # noqa: B018

        with pytest.raises(ZeroDivisionError):
            failing_savepoint()
        conn.execute("SAVEPOINT sp")
        conn.execute("SET LOCAL search_path TO pg_catalog")
        conn.execute("ROLLBACK TO SAVEPOINT sp")
        assert who(conn) == a
    with tk.connection(a) as conn:
        assert who(conn) == a


def test_user_set_search_path_invalidates(tk: Tenancy) -> None:
    a, b = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:
        conn.execute(f'SET search_path TO "{b}"')  # behind tenantkit's back
    with tk.connection(a) as conn:
        assert who(conn) == a


@pytest.mark.parametrize("how", ["parameters", "function", "autocommit"])
def test_hidden_search_path_change_never_leaks(tk: Tenancy, how: str) -> None:
    """Issue 11: a session path changed without the query text saying so.

    ``set_config()`` with its name passed as a parameter, or called inside a function,
    changed the session path while tenantkit kept trusting its cached one: the next request
    as ``a`` wrote into ``b``.
    """
    a, b = [t.schema for t in tk.tenants()]
    if how == "function":
        with tk.admin_connection() as conn:
            conn.execute(
                "CREATE FUNCTION hop(p text) RETURNS text LANGUAGE sql "
                "AS $$ SELECT set_config('search_path', p, false) $$"
            )
    for tenant in (a, b, a, b):  # warm any per-tenant state first
        with tk.connection(tenant) as conn:
            assert who(conn) == tenant
    other = f'"{b}"'
    with tk.connection(a) as conn:
        if how == "autocommit" and not tk.pgbouncer:
            conn.autocommit = True
        if how == "function":
            conn.execute("SELECT hop(%s)", (other,))
        else:
            conn.execute("SELECT set_config(%s, %s, false)", ("search_path", other))
        # A transaction keeps the user's own change for the rest of it; in autocommit each
        # statement runs as the bound tenant.
        assert who(conn) == (a if conn.autocommit else b)
    for _ in range(2):
        with tk.connection(a) as conn:
            assert who(conn) == a
            conn.execute("INSERT INTO who VALUES ('written as a')")
        with tk.connection(a) as conn:
            conn.autocommit = not tk.pgbouncer
            assert who(conn) == a
    with tk.connection(b) as conn:
        rows = conn.execute("SELECT name FROM who").fetchall()
        assert rows == [(b,)]  # nothing written as a landed in b


def test_temp_tables_made_by_functions_never_reach_the_next_borrower(tk: Tenancy) -> None:
    """Issue 11: temp tables created inside a function escaped the query-text scan."""
    a, b = [t.schema for t in tk.tenants()]
    with tk.admin_connection() as conn:
        conn.execute(
            "CREATE FUNCTION stash(v text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
            "EXECUTE 'CREATE TEMP TABLE IF NOT EXISTS secret (v text)'; "
            "EXECUTE 'INSERT INTO secret VALUES ($1)' USING v; END $$"
        )
    with tk.connection(a) as conn:
        conn.execute("SELECT stash('a-private')")
        rows = conn.execute("SELECT v FROM pg_temp.secret").fetchall()
        assert rows == [("a-private",)]  # usable within the borrower's block
        conn.commit()
        if not tk.pgbouncer:  # default mode: temp objects live for the whole checkout
            assert conn.execute("SELECT v FROM pg_temp.secret").fetchall() == rows
    for tenant, autocommit in ((b, False), (b, True), (a, False)):
        if autocommit and tk.pgbouncer:
            continue
        with tk.connection(tenant) as conn:  # max_size=1: the same server connection
            conn.autocommit = autocommit
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT v FROM pg_temp.secret")
    # A rollback of the discarding transaction must not bring them back for the next one.
    with tk.connection(a) as conn:
        conn.execute("SELECT stash('again')")
    with tk.connection(b) as conn:
        conn.execute("SELECT 1")
        conn.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT v FROM pg_temp.secret")


def test_use_tenant_switch_discards_temp_objects(tk: Tenancy) -> None:
    a, b = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:
        conn.execute("CREATE TEMP TABLE scratch AS SELECT 'a-only' AS v")
        conn.commit()
        with use_tenant(conn, b), pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT v FROM pg_temp.scratch")


def test_transaction_started_without_the_hook_raises(dsn: str, schema_name: str) -> None:
    """If psycopg ever starts a transaction without calling tenantkit's hook, fail closed."""
    from tenantkit.core._connection import TenantConnection
    from tenantkit.errors import HookNotRun

    class Bypassing(TenantConnection[Any]):
        def _exec_command(self, command: Any, result_format: pq.Format = pq.Format.TEXT) -> Any:
            return psycopg.BaseConnection._exec_command(self, command, result_format)

    from psycopg_pool import ConnectionPool

    with (
        ConnectionPool(dsn, connection_class=Bypassing, min_size=1, max_size=1, open=True) as pool,
        Tenancy(pool=pool, shared_schema=schema_name) as tk,
    ):
        with (
            pytest.raises(HookNotRun, match="without tenantkit's hook"),
            tk.admin_connection() as conn,
        ):
            conn.execute("SELECT 1")
        with tk.admin_connection() as conn:
            conn.autocommit = True
            assert conn.execute("SELECT 1").fetchone() == (1,)  # autocommit has its own hook


def test_psycopg_contract_check_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from tenantkit.core import _psycopg_contract
    from tenantkit.errors import PsycopgUnsupported

    _psycopg_contract.check()  # the installed psycopg fits
    monkeypatch.delattr(psycopg.BaseConnection, "_get_tx_start_command")
    with pytest.raises(PsycopgUnsupported, match=r"psycopg>=3\.2,<3\.4"):
        _psycopg_contract.check()
    monkeypatch.undo()

    def reshaped(self: Any, cmd: Any) -> None: ...

    monkeypatch.setattr(psycopg.BaseConnection, "_exec_command", reshaped)
    with pytest.raises(PsycopgUnsupported, match="_exec_command"):
        _psycopg_contract.check()


def test_pgbouncer_mode_turns_prepared_statements_off(dsn: str, schema_name: str) -> None:
    for pgbouncer, expected in ((True, None), (False, 5)):
        with Tenancy(dsn, shared_schema=schema_name, pgbouncer=pgbouncer, max_size=1) as tk:
            tk.install()
            with tk.admin_connection() as conn:
                assert conn.prepare_threshold == expected
    with (
        Tenancy(
            dsn, shared_schema=schema_name, pgbouncer=True, prepared_statements=True, max_size=1
        ) as tk,
        tk.admin_connection() as conn,
    ):
        assert conn.prepare_threshold == 5  # pgbouncer 1.21+ with max_prepared_statements


def test_terminated_pooled_connection_is_replaced(dsn: str, schema_name: str) -> None:
    """A connection the server closed is refused by the pool's check, not handed out."""
    with Tenancy(dsn, shared_schema=schema_name, min_size=1, max_size=1) as tk:
        tk.install()
        with tk.admin_connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(dsn, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits its exit
        for _ in range(3):
            with tk.admin_connection() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
                assert conn.info.backend_pid != pid


def test_unreachable_server_fails_at_once_with_the_cause(schema_name: str) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tk = Tenancy(f"host=127.0.0.1 port={port} dbname=x user=x connect_timeout=5", max_size=1)
    try:
        with pytest.raises(psycopg.OperationalError, match=r"refused|failed"):
            tk.install()
    finally:
        tk.close()


def test_returned_connection_carries_no_tenant(tk: Tenancy) -> None:
    a, _ = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:
        conn.execute("CREATE TEMP TABLE scratch (x int)")
        assert who(conn) == a
    if tk.pgbouncer:
        assert a not in session_path(tk)  # only SET LOCAL: nothing survives the transaction
    assert tk.pool is not None
    with tk.pool.connection() as raw:  # a borrower that never named a tenant
        row = raw.execute("SELECT current_schemas(false)").fetchone()
        assert row is not None
        assert a not in row[0]
        row = raw.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
        ).fetchone()
        assert row == (0,)


def test_mid_transaction_switch(tk: Tenancy) -> None:
    a, b = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:
        assert who(conn) == a
        with use_tenant(conn, b):
            assert who(conn) == b
            assert current_tenant() == b
            with use_tenant(conn, a):
                assert who(conn) == a
            assert who(conn) == b
        assert who(conn) == a
        assert current_tenant() == a
        conn.commit()
        with use_tenant(conn, b):
            assert who(conn) == b  # starts a transaction with b's path
        assert who(conn) == a  # same transaction, switched back with SET LOCAL
    with tk.connection(a) as conn:
        assert who(conn) == a


def test_autocommit_and_pipeline(tk: Tenancy) -> None:
    a, b = [t.schema for t in tk.tenants()]
    with tk.connection(a) as conn:
        with conn.pipeline():
            cur = conn.execute("SELECT name FROM who")
            conn.execute("SELECT 1")
        assert cur.fetchone() == (a,)
    if not tk.pgbouncer:
        with tk.connection(b) as conn:
            conn.autocommit = True
            assert who(conn) == b
    else:

        def autocommit_in_pgbouncer_mode() -> None:
            with tk.connection(b) as conn:
                conn.autocommit = True
                who(conn)

        with pytest.raises(psycopg.ProgrammingError, match="pgbouncer"):
            autocommit_in_pgbouncer_mode()
    with tk.connection(a) as conn:
        assert not conn.autocommit
        assert who(conn) == a
    if tk.pgbouncer:
        # Unbound too: its path would be whatever the pooler's server connection has.
        assert tk.pool is not None
        with tk.pool.connection() as raw:
            raw.autocommit = True
            with pytest.raises(psycopg.ProgrammingError, match="pgbouncer"):
                raw.execute("SELECT 1")


def test_strict_refuses_unbound_statements(dsn: str, schema_name: str) -> None:
    with Tenancy(dsn, shared_schema=schema_name, strict=True, max_size=1) as tk:
        tk.install()
        assert tk.pool is not None
        with tk.pool.connection() as raw:

            def attempt() -> None:
                with pytest.raises(NoTenantSelected, match="strict"):
                    raw.execute("SELECT 1")

            sent = frontend_messages(raw, attempt)
        assert sent == []  # refused before anything was sent
        with tk.admin_connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        tenant = tk.create_tenant(uniq())
        with tk.connection(tenant) as conn:
            assert conn.execute("SELECT current_schema()").fetchone() == (tenant.schema,)


async def test_async_switching(dsn: str, schema_name: str) -> None:
    async with AsyncTenancy(dsn, shared_schema=schema_name, max_size=1) as atk:
        await atk.install()
        a = await atk.create_tenant(uniq())
        b = await atk.create_tenant(uniq())
        for tenant in (a, b, a):
            async with atk.connection(tenant) as conn:
                cur = await conn.execute("SELECT current_schema()")
                assert await cur.fetchone() == (tenant.schema,)
                async with ause_tenant(conn, b):
                    cur = await conn.execute("SELECT current_schema()")
                    assert await cur.fetchone() == (b.schema,)
                cur = await conn.execute("SELECT current_schema()")
                assert await cur.fetchone() == (tenant.schema,)
        with pytest.raises(NoTenantSelected):
            async with atk.connection():
                pass
        with tenant_context(b):
            async with atk.connection() as conn:
                cur = await conn.execute("SELECT current_schema()")
                assert await cur.fetchone() == (b.schema,)
