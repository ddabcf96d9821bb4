"""The backend's remembered session path (``OPTIONS["session_path"]``, on by default).

A repeat tenant costs no statement: the connection remembers the ``search_path`` it set for
the session and sends nothing while that is known to hold. These tests attack what could make
the remembered path stale (SQL that changes it, failures, rollbacks, threads) and check that
each one leads to the path being sent again, never to a read in another tenant's schema.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _djsupport import database_settings, in_threads
from _djsupport import item_names as _names
from _djsupport import raw_connection as _raw
from _wire import wire

pytestmark = pytest.mark.usefixtures("django_project")


def _run(sql: str, params: Any = None, alias: str = "default") -> None:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)


@pytest.fixture
def alias(dsn: str) -> Iterator[Any]:
    """Open extra aliases on tenantkit's backend (fresh connections), closed at the end."""
    from django.db import connections

    from tenantkit.django.postgresql_backend.base import DatabaseWrapper

    made: list[str] = []

    def make(**options: Any) -> str:
        name = f"extra{len(made)}"
        settings = database_settings(dsn, **options)
        connections[name] = DatabaseWrapper(settings, alias=name)
        made.append(name)
        return name

    yield make
    for name in made:
        connections[name].close()
        del connections[name]


@pytest.fixture
def warm_a(tenant_pair: Any) -> Iterator[tuple[Any, Any]]:
    """Tenant a current, its path remembered by the connection (a repeat read sends nothing)."""
    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    with schema_context(a.schema_name):
        assert _names() == [a.schema_name]
        sent = wire(_raw(), _names)
        assert sent.texts == sent.app_statements  # remembered
        yield a, b


def _reads_own_rows_again(tenant: Any) -> None:
    # The path is sent again (it is no longer known), and the rows are the tenant's own.
    sent = wire(_raw(), _names)
    assert _names() == [tenant.schema_name]
    assert sent.texts[0].startswith(f'SET search_path TO "{tenant.schema_name}"'), sent.texts


@pytest.mark.parametrize(
    "statement",
    [
        'SET search_path TO "{b}", public',
        'SET SESSION search_path = "{b}"',
        "SELECT pg_catalog.set_config('search_path', '\"{b}\"', false)",
        '/* a comment */ SET search_path TO "{b}"',
        'SELECT 1; SET search_path TO "{b}"',
        "RESET ALL",
        "RESET search_path",
        "DISCARD ALL",
    ],
)
def test_sql_that_changes_the_path_is_never_trusted(warm_a: Any, statement: str) -> None:
    a, b = warm_a
    _run(statement.format(b=b.schema_name))
    _reads_own_rows_again(a)


def test_set_config_with_the_name_as_a_parameter(warm_a: Any) -> None:
    a, b = warm_a
    _run("SELECT set_config(%s, %s, false)", ["search_path", f'"{b.schema_name}"'])
    _reads_own_rows_again(a)


def test_session_set_committed_inside_a_transaction(warm_a: Any) -> None:
    from django.db import transaction

    a, b = warm_a
    with transaction.atomic():
        _run(f'SET search_path TO "{b.schema_name}"')
    _reads_own_rows_again(a)


class _Undo(Exception):
    pass


def _failing_statement(tenant: Any) -> None:
    # One implicit transaction: SET search_path (the tenant's), DISCARD TEMP, the statement.
    from django.db import DatabaseError

    with pytest.raises(DatabaseError):
        _run("SELECT * FROM no_such_table")


def _rolled_back_transaction(tenant: Any) -> None:
    from django.db import transaction

    def read_then_fail() -> None:
        with transaction.atomic():
            assert _names() == [tenant.schema_name]  # BEGIN; SET search_path TO ...
            raise _Undo

    with pytest.raises(_Undo):
        read_then_fail()


@pytest.mark.parametrize("fail", [_failing_statement, _rolled_back_transaction])
def test_a_failure_undoes_the_path_sent_with_it(tenant_pair: Any, fail: Any) -> None:
    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    with schema_context(a.schema_name):
        _names()
    with schema_context(b.schema_name):
        fail(b)
        # The SET was rolled back (with the statement, or with the transaction): the session
        # path is a's again, so b's must be sent again.
        _reads_own_rows_again(b)
    with schema_context(a.schema_name):
        _reads_own_rows_again(a)


def test_a_switch_inside_a_transaction_ends_with_it(tenant_pair: Any) -> None:
    from django.db import transaction

    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    with schema_context(a.schema_name):
        with transaction.atomic():
            assert _names() == [a.schema_name]
            with schema_context(b.schema_name):
                assert _names() == [b.schema_name]  # SET LOCAL: ends with the transaction
        # The session path is a's after COMMIT: only the temp-object discard that a switch
        # owes goes in front of the next statement, then nothing.
        sent = wire(_raw(), _names)
        assert sent.texts[0].startswith("DISCARD TEMP; SELECT"), sent.texts
        sent = wire(_raw(), _names)
        assert sent.texts == sent.app_statements
        assert _names() == [a.schema_name]


_HOP = (
    "CREATE FUNCTION {name}(p text) RETURNS void LANGUAGE plpgsql "
    "AS $$ BEGIN PERFORM pg_catalog.set_config('search_path', p, false); END $$"
)


def _path_sent_every_time(name: str, tenant: Any) -> None:
    for _ in range(3):
        sent = wire(_raw(name), lambda: _names(name))
        assert sent.round_trips == 1
        assert sent.texts[0].startswith(f'SET LOCAL search_path TO "{tenant.schema_name}"')
    assert _names(name) == [tenant.schema_name]


def test_turned_off_the_path_travels_with_every_statement(alias: Any, tenant_pair: Any) -> None:
    from tenantkit.django.utils import schema_context

    a, _ = tenant_pair
    name = alias(session_path=False)
    with schema_context(a.schema_name):
        _path_sent_every_time(name, a)
        # A server-side function that changes the session path is invisible to the client;
        # with the path sent every time it cannot matter.
        _run(_HOP.format(name="pg_temp.hop"), alias=name)
        _run("SELECT pg_temp.hop('public')", alias=name)
        assert _names(name) == [a.schema_name]


def test_a_function_that_may_change_the_path_turns_remembering_off(
    dsn: str, alias: Any, tenant_pair: Any, caplog: Any
) -> None:
    import psycopg

    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    function = f"public.hop_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(_HOP.format(name=function))  # type: ignore[arg-type]
    try:
        # A connection opened now finds it with its first statement, says so, and sends the
        # path with every statement: the function cannot leave a stale path behind.
        name = alias()
        with (
            caplog.at_level(logging.WARNING, logger="tenantkit.core"),
            schema_context(a.schema_name),
        ):
            assert _names(name) == [a.schema_name]
        assert function.split(".")[1] in caplog.text
        with schema_context(a.schema_name):
            _path_sent_every_time(name, a)
            _run(f"SELECT {function}(%s)", [f'"{b.schema_name}"'], alias=name)
            assert _names(name) == [a.schema_name]
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP FUNCTION {function}(text)")  # type: ignore[arg-type]
    # Without it, a new connection remembers the path again.
    name = alias()
    with schema_context(a.schema_name):
        _names(name)
        sent = wire(_raw(name), lambda: _names(name))
        assert sent.texts == sent.app_statements


def test_a_function_created_later_is_found_by_the_recheck(
    dsn: str, alias: Any, tenant_pair: Any, monkeypatch: Any, caplog: Any
) -> None:
    import psycopg

    from tenantkit.core import _connection
    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    monkeypatch.setattr(_connection, "SESSION_PATH_RECHECK", 0.0)  # a minute, in a test
    name = alias()
    function = f"public.hop_{uuid.uuid4().hex[:8]}"
    with schema_context(a.schema_name):
        assert _names(name) == [a.schema_name]
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(_HOP.format(name=function))  # type: ignore[arg-type]
        try:
            with caplog.at_level(logging.WARNING, logger="tenantkit.core"):
                assert _names(name) == [a.schema_name]  # the recheck finds it
            assert function.split(".")[1] in caplog.text
            _run(f"SELECT {function}(%s)", [f'"{b.schema_name}"'], alias=name)
            _path_sent_every_time(name, a)
        finally:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f"DROP FUNCTION {function}(text)")  # type: ignore[arg-type]


def test_defining_such_a_function_turns_remembering_off(alias: Any, tenant_pair: Any) -> None:
    from tenantkit.django.utils import schema_context

    a, _ = tenant_pair
    name = alias()
    with schema_context(a.schema_name):
        _names(name)
        _run(_HOP.format(name="pg_temp.hop"), alias=name)
        _run("SELECT pg_temp.hop('public')", alias=name)
        _path_sent_every_time(name, a)


def test_threads_switching_at_random_read_only_their_tenant(tenant_pair: Any) -> None:
    from tenantkit.django.utils import schema_context

    a, b = tenant_pair
    wrong: list[tuple[str, list[str]]] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(100):
            tenant = rng.choice((a, b, a))  # repeats as well as switches
            with schema_context(tenant.schema_name):
                names = _names()
                if names != [tenant.schema_name]:
                    wrong.append((tenant.schema_name, names))

    in_threads(work)
    assert wrong == []


def test_a_repeat_tenant_sends_what_djangos_own_backend_sends(
    alias: Any, dsn: str, tenant_pair: Any
) -> None:
    """The same ORM calls, on Django's own PostgreSQL backend (no tenancy; the tenant's
    schema given as the connection's path) and on tenantkit's: the same statements, the
    same round trips, once tenantkit's connection has served the tenant."""
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper as PlainWrapper
    from project.tenant_app.models import Item

    from tenantkit.django.utils import schema_context

    a, _ = tenant_pair
    settings = database_settings(dsn, options=f"-c search_path={a.schema_name},public")
    settings.update(ENGINE="django.db.backends.postgresql")
    connections["plain"] = PlainWrapper(settings, alias="plain")
    ours = alias()

    def work(name: str) -> None:
        assert _names(name) == [a.schema_name]
        Item.objects.using(name).filter(name="nothing").update(name="still nothing")
        assert Item.objects.using(name).filter(name__startswith="dj_").count() == 1

    try:
        with schema_context(a.schema_name):
            work(ours)  # the connection's first use: its checks, and the path
            work("plain")
            mine = wire(_raw(ours), lambda: work(ours))
            theirs = wire(_raw("plain"), lambda: work("plain"))
        assert mine.texts == theirs.texts
        assert mine.round_trips == theirs.round_trips == 3
    finally:
        connections["plain"].close()
        del connections["plain"]
