"""tenantkit.sqlalchemy on a real server: binding, round trips, hand-over, strict, reflection."""

from __future__ import annotations

import random
from collections.abc import Iterator

import psycopg
import pytest
from _pgbouncer import PgBouncer
from _sqla_support import items, populated, round_trips
from _threads import in_threads
from psycopg import sql
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from tenantkit import InvalidSchemaName, NoTenantSelected, PoolerDetected, Tenancy, tenant_context
from tenantkit.sqlalchemy import SESSION_TENANT, tenant_engine, tenant_session

OWNER = select(items.c.owner).where(items.c.id == 1)


@pytest.fixture(params=[False, True], ids=["default", "pgbouncer-mode"])
def env(
    request: pytest.FixtureRequest, dsn: str, schema_name: str
) -> Iterator[tuple[Tenancy, list[str]]]:
    """A tenancy (default and pgbouncer mode, on PostgreSQL directly) with 4 tenants."""
    with populated(dsn, schema_name, 4, pgbouncer=request.param) as found:
        yield found


@pytest.fixture
def engine(env: tuple[Tenancy, list[str]]) -> Iterator[Engine]:
    """A one-connection tenant engine: consecutive sessions reuse the same connection."""
    eng = tenant_engine(env[0], pool_size=1, max_overflow=0)
    try:
        yield eng
    finally:
        eng.dispose()


def owner(session: Session) -> str:
    return str(session.execute(OWNER).scalar_one())


def test_session_follows_the_current_tenant(env: tuple[Tenancy, list[str]], engine: Engine) -> None:
    _, names = env
    for name in [*names, *reversed(names)]:
        with tenant_context(name), Session(engine) as session:
            assert owner(session) == name
            session.commit()
            assert owner(session) == name  # a second transaction of the same session
    with Session(engine) as session:  # no tenant: the shared path
        assert owner(session) == "SHARED"


def test_explicit_binding_wins_over_the_current_tenant(
    env: tuple[Tenancy, list[str]], engine: Engine
) -> None:
    _, (a, b, *_) = env
    with tenant_context(a):
        with Session(engine, info={SESSION_TENANT: b}) as session:
            assert owner(session) == b
        with tenant_session(engine, b) as session:
            assert owner(session) == b
            session.execute(items.insert().values(owner="added"))
        with tenant_session(sessionmaker(engine), b) as session:
            rows = session.execute(select(items.c.owner).order_by(items.c.id)).scalars()
            assert list(rows) == [b, "added"]  # committed by the first tenant_session
        with Session(engine) as session:
            assert owner(session) == a


def test_core_connections_follow_the_current_tenant(
    env: tuple[Tenancy, list[str]], engine: Engine
) -> None:
    _, (a, b, *_) = env
    for name in (a, b, a):
        with tenant_context(name), engine.begin() as conn:
            assert conn.execute(OWNER).scalar_one() == name
            assert conn.execute(text("SELECT owner FROM items")).scalar_one() == name


def test_returned_connection_forgets_tenant_and_temp_objects(
    env: tuple[Tenancy, list[str]], engine: Engine
) -> None:
    _, (a, b, *_) = env
    with tenant_session(engine, a) as session:
        session.execute(text("CREATE TEMP TABLE scratch (x int)"))
        session.execute(text("CREATE TEMP TABLE items (owner text)"))  # a would-be shadow
        session.execute(text("INSERT INTO pg_temp.items VALUES ('TEMP')"))
    with tenant_session(engine, b) as session:  # the same (only) connection
        assert owner(session) == b
        temp = "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
        assert session.execute(text(temp)).scalar_one() == 0
        schemas = session.execute(text("SELECT current_schemas(false)")).scalar_one()
        assert a not in schemas


def test_strict_mode_raises_without_a_tenant(dsn: str, schema_name: str) -> None:
    with populated(dsn, schema_name, 1, strict=True) as (tenancy, (a,)):
        eng = tenant_engine(tenancy, pool_size=1, max_overflow=0, pool_pre_ping=True)
        try:
            with Session(eng) as session, pytest.raises(NoTenantSelected):
                session.execute(OWNER)
            with eng.connect() as conn, pytest.raises(NoTenantSelected):
                conn.execute(text("SELECT 1"))
            with tenant_session(eng, a) as session:  # the same connection works once bound
                assert owner(session) == a
            with tenant_context(a), Session(eng) as session:
                assert owner(session) == a
        finally:
            eng.dispose()


def _request(session: Session, name: str) -> None:
    """A typical request: a read, a write, a commit."""
    assert session.execute(OWNER).scalar_one() == name
    session.execute(items.insert().values(owner=name))
    session.commit()


def test_round_trips_equal_the_no_tenant_baseline(
    env: tuple[Tenancy, list[str]], engine: Engine, dsn: str
) -> None:
    tenancy, names = env
    # At most 4 requests after the warm-up: psycopg prepares a statement server-side on its
    # 6th run on a connection (one extra round trip, once), in the baseline's window only.
    names = names[:4]
    # Baseline: plain psycopg connections, path fixed at connect time, no tenancy at all.
    options = f"-c search_path={names[0]},{tenancy.shared_schema}"
    plain = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(dsn, options=options),
        pool_size=1,
        max_overflow=0,
    )
    try:
        with Session(plain) as session:  # warm: first connect's queries out of the way
            _request(session, names[0])
        with Session(engine, info={SESSION_TENANT: names[0]}) as session:
            _request(session, names[0])
        base_conn = plain.raw_connection()
        tenant_conn = engine.raw_connection()
        base_pg, tenant_pg = (
            base_conn.driver_connection.pgconn,
            tenant_conn.driver_connection.pgconn,
        )  # type: ignore[union-attr]
        base_conn.close()
        tenant_conn.close()

        def baseline() -> None:
            for _ in names:
                with Session(plain) as session:
                    _request(session, names[0])

        def rotating() -> None:
            for name in names:
                with tenant_context(name), Session(engine) as session:
                    _request(session, name)

        expected = round_trips(base_pg, baseline)
        got = round_trips(tenant_pg, rotating)
    finally:
        plain.dispose()
    assert len(got) == len(expected), (got, expected)
    for mine, theirs in zip(got, expected, strict=True):
        if theirs == "Query BEGIN":  # the path and the temp discard ride on it
            assert mine.startswith("Query BEGIN; SET LOCAL search_path TO"), mine
        elif theirs == "Query COMMIT" and tenancy.pgbouncer:
            assert mine == "Query DISCARD TEMP; COMMIT"
        else:
            assert mine == theirs


def test_threads_rotating_tenants_read_only_their_own(
    env: tuple[Tenancy, list[str]],
) -> None:
    tenancy, names = env
    eng = tenant_engine(tenancy, pool_size=4, max_overflow=0)
    wrong: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(60):
            name = rng.choice(names)
            if i % 2:
                with tenant_context(name), Session(eng) as session:
                    seen = owner(session)
            else:
                decoy = rng.choice(names)  # the explicit binding must win
                with tenant_context(decoy), tenant_session(eng, name) as session:
                    seen = owner(session)
            if seen != name:
                wrong.append(f"{name} read {seen}")

    try:
        in_threads(worker)
    finally:
        eng.dispose()
    assert wrong == []


def test_reflection_sees_the_tenants_schema(env: tuple[Tenancy, list[str]], engine: Engine) -> None:
    tenancy, (a, b, *_) = env
    with tenant_context(a), engine.begin() as conn:
        conn.execute(text("CREATE TABLE only_a (id int PRIMARY KEY, item_id int REFERENCES items)"))
    with tenant_context(a):
        insp = inspect(engine)
        assert insp.default_schema_name == a
        assert sorted(insp.get_table_names()) == ["items", "only_a"]  # no shared tables
        assert insp.has_table("only_a")
        with engine.connect() as conn:
            reflected = MetaData()
            reflected.reflect(bind=conn)
            assert sorted(reflected.tables) == ["items", "only_a"]  # unqualified keys
            only_a = reflected.tables["only_a"]
            assert only_a.schema is None
            assert [fk.column.table.name for fk in only_a.foreign_keys] == ["items"]
            assert conn.execute(select(reflected.tables["items"].c.owner)).scalar_one() == a
    with tenant_session(engine, b) as session:
        insp = inspect(session.connection())
        assert insp.default_schema_name == b
        assert insp.get_table_names() == ["items"]
        assert not insp.has_table("only_a")
    with engine.connect() as conn:  # no tenant: the shared schema
        assert inspect(conn).default_schema_name == tenancy.shared_schema


def test_create_all_creates_in_the_tenant_even_if_shared_has_the_table(
    env: tuple[Tenancy, list[str]], engine: Engine, dsn: str
) -> None:
    tenancy, (a, *_) = env
    md = MetaData()
    Table("notes", md, Column("id", Integer, primary_key=True))
    with engine.begin() as conn:  # the shared schema first
        md.create_all(conn)
    with tenant_context(a), engine.begin() as conn:
        md.create_all(conn)  # checkfirst must look in a's schema, not along the path
    with psycopg.connect(dsn) as raw:
        found = raw.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'notes' "
            "AND table_schema = ANY(%s) ORDER BY 1",
            ([a, tenancy.shared_schema],),
        ).fetchall()
    assert sorted(r[0] for r in found) == sorted([a, tenancy.shared_schema])


def test_schema_translate_map_mode(env: tuple[Tenancy, list[str]]) -> None:
    tenancy, (a, b, *_) = env
    eng = tenant_engine(tenancy, schema_translate_map=True, pool_size=1, max_overflow=0)
    try:
        for name in (a, b):
            with tenant_context(name), Session(eng) as session:
                assert owner(session) == name
        raw = eng.raw_connection()
        pgconn = raw.driver_connection.pgconn  # type: ignore[union-attr]
        raw.close()

        def run() -> None:
            with tenant_session(eng, b) as session:
                assert owner(session) == b

        sent = round_trips(pgconn, run)
        assert any(
            f'"{b}".items' in s or f'"{b}"."items"' in s or f"{b}.items" in s for s in sent
        ), sent
    finally:
        eng.dispose()


def test_engine_kwargs_that_would_bypass_tenancy_are_refused(
    env: tuple[Tenancy, list[str]],
) -> None:
    with pytest.raises(TypeError, match="creator"):
        tenant_engine(env[0], creator=lambda: None)


# -- behind a real pgbouncer (transaction pooling, 3 server connections) ------------------------


def test_pgbouncer_mode_behind_pgbouncer_reads_only_its_own(
    pgbouncer: PgBouncer, schema_name: str
) -> None:
    with populated(pgbouncer.dsn, schema_name, 6, direct=pgbouncer.direct_dsn, pgbouncer=True) as (
        tenancy,
        names,
    ):
        # More client connections than server connections: pgbouncer swaps them around.
        eng = tenant_engine(tenancy, pool_size=6, max_overflow=0, pool_pre_ping=True)
        wrong: list[str] = []

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(40):
                name = rng.choice(names)
                with tenant_session(eng, name) as session:
                    session.execute(text("CREATE TEMP TABLE IF NOT EXISTS scratch (x int)"))
                    seen = owner(session)
                    session.execute(items.insert().values(owner=name))
                if seen != name:
                    wrong.append(f"{name} read {seen}")

        try:
            in_threads(worker)
        finally:
            eng.dispose()
        assert wrong == []
        with psycopg.connect(pgbouncer.direct_dsn) as raw:  # every row landed in its own table
            for schema in [tenancy.shared_schema, *names]:
                query = sql.SQL("SELECT DISTINCT owner FROM {}").format(
                    sql.Identifier(schema, "items")
                )
                owners = [r[0] for r in raw.execute(query)]
                assert owners == ["SHARED" if schema == tenancy.shared_schema else schema]


def test_default_mode_refuses_to_run_behind_pgbouncer(
    pgbouncer: PgBouncer, schema_name: str
) -> None:
    with populated(pgbouncer.dsn, schema_name, 1, direct=pgbouncer.direct_dsn) as (tenancy, (a,)):
        eng = tenant_engine(tenancy, pool_size=1, max_overflow=0)
        try:
            with pytest.raises(PoolerDetected), tenant_session(eng, a) as session:
                owner(session)
        finally:
            eng.dispose()


def test_invalid_tenant_name_raises_before_any_sql(engine: Engine) -> None:
    bad = 'x"; DROP SCHEMA public; --'
    with Session(engine, info={SESSION_TENANT: bad}) as session, pytest.raises(InvalidSchemaName):
        session.execute(OWNER)
