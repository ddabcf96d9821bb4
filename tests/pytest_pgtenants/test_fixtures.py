"""The tenant fixtures, markers and modes, each exercised by an inner pytest run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_pgtenants._async import __all__ as ASYNC_FIXTURES
from pytest_pgtenants.fixtures import __all__ as SYNC_FIXTURES

FIXTURES = [*SYNC_FIXTURES, *ASYNC_FIXTURES]


def test_tenant_fixtures(inner) -> None:
    """tenancy, tenant, tenant_factory, tenants, tenant_conn, atenant_conn, tenant_url."""
    inner.pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def rows_after(tenancy, tenant):
            # Set up before tenant_conn, so its teardown sees what tenant_conn left behind.
            yield
            with tenancy.connection(tenant) as conn:
                n = conn.execute("select count(*) from shop_t0").fetchone()[0]
            print(f"ROWS-AFTER {tenant.schema} {n}")
        """
    )
    inner.pytester.makepyfile(
        """
        import re
        import pytest
        from tenantkit.core.models import TenantState

        SEEN = {}

        def test_tenant_is_migrated(tenant, tenancy, pgtenants_settings):
            assert tenant.state == TenantState.ACTIVE
            assert re.fullmatch("t[0-9a-f]{16}", tenant.schema)
            with tenancy.connection(tenant) as conn:
                tables = conn.execute(
                    "select count(*) from pg_tables"
                    " where schemaname = %s and tablename like 'shop%%'",
                    [tenant.schema],
                ).fetchone()[0]
                cols = conn.execute(
                    "select count(*) from information_schema.columns"
                    " where table_schema = %s and column_name = 'note'", [tenant.schema]
                ).fetchone()[0]
            assert tables == 20 and cols == 20  # both workload migrations applied
            hosts = [d.host for d in tenancy.domains(tenant)]
            assert hosts == [f"{tenant.schema}.example.test"]  # as documented
            SEEN["schema"] = tenant.schema

        def test_previous_tenant_is_gone(tenancy):
            assert SEEN["schema"] not in [t.schema for t in tenancy.tenants()]
            with tenancy.admin_connection() as conn:
                row = conn.execute(
                    "select 1 from pg_namespace where nspname = %s", [SEEN["schema"]]
                ).fetchone()
            assert row is None

        def test_factory(tenant_factory, tenancy):
            acme = tenant_factory("Acme Corp", plan="pro")
            assert acme.schema == "acme_corp" and acme.name == "Acme Corp"
            assert dict(acme.metadata) == {"plan": "pro"}
            assert [d.host for d in tenancy.domains(acme)] == ["acme-corp.example.test"]
            other = tenant_factory(domains=["shop.example.org", "www.shop.example.org"])
            assert [d.host for d in tenancy.domains(other)] == [
                "shop.example.org", "www.shop.example.org"]
            bare = tenant_factory(schema="bare", domains=())
            assert tenancy.domains(bare) == []

        def test_factory_name_reusable(tenant_factory):
            assert tenant_factory("Acme Corp").schema == "acme_corp"

        @pytest.mark.tenants("acme", "globex")
        def test_marker(tenants, tenant, tenant_url):
            assert list(tenants) == ["acme", "globex"]
            assert tenant is tenants["acme"]
            assert tenant_url(tenants["globex"], "/orders") == "http://globex.example.test/orders"
            assert tenant_url("acme", "x") == "http://acme.example.test/x"

        @pytest.mark.tenants("acme")
        def test_marker_again(tenants):
            assert tenants["acme"].schema == "acme"

        def test_conn_commits(rows_after, tenant_conn, tenant):
            path = tenant_conn.execute("show search_path").fetchone()[0]
            assert path.replace('"', "").startswith(tenant.schema + ",")
            tenant_conn.execute("insert into shop_t0 (name) values ('kept')")

        @pytest.mark.pgtenants_rollback
        def test_conn_rollback(rows_after, tenant_conn):
            tenant_conn.execute("insert into shop_t0 (name) values ('gone')")

        async def test_async_conn(rows_after, atenant_conn, tenant):
            cur = await atenant_conn.execute("show search_path")
            assert (await cur.fetchone())[0].replace('"', "").startswith(tenant.schema + ",")
            await atenant_conn.execute("insert into shop_t0 (name) values ('async')")

        @pytest.mark.pgtenants_rollback
        async def test_async_conn_rollback(rows_after, atenant_conn):
            await atenant_conn.execute("insert into shop_t0 (name) values ('gone')")

        def test_database(pgtenants_database, pgtenants_template, pgtenants_server):
            assert pgtenants_database.template == pgtenants_template
            assert pgtenants_template.startswith("pgtenants_tpl_")
            assert pgtenants_database.name.startswith("pgtenants_db_main_")
            assert pgtenants_server.version_num >= 130000
        """
    )
    result = inner.run("-s")
    result.assert_outcomes(passed=11)
    out = result.stdout.str()
    import re

    rows = re.findall(r"ROWS-AFTER \S+ (\d+)", out)
    assert rows == ["1", "0", "1", "0"], out
    assert not inner.databases(f"pgtenants_db_main_{__import__('os').getpid()}_")


def test_rollback_option(inner) -> None:
    """--pgtenants-rollback makes every tenant_conn roll back."""
    inner.pytester.makepyfile(
        """
        def test_write(tenant_conn, request):
            tenant_conn.execute("insert into shop_t0 (name) values ('x')")

        def test_mode(request):
            assert request.config.getoption("pgtenants_rollback") == "yes"

        def test_tenant_path(tenant_conn):
            # a following path argument is not taken as the option's value
            pass
        """
    )
    inner.run("--pgtenants-rollback", "test_rollback_option.py").assert_outcomes(passed=3)


def test_strict_mode(inner) -> None:
    """Strict mode (marker or option): an unbound statement raises NoTenantSelected."""
    inner.pytester.makepyfile(
        """
        import pytest
        from tenantkit.errors import NoTenantSelected

        def unbound(tenancy):
            # A pooled connection used directly, with no tenant bound.
            with tenancy.pool.connection() as conn:
                conn.execute("select 1")

        @pytest.mark.pgtenants_strict
        def test_strict_marker(tenancy):
            assert tenancy.strict
            with pytest.raises(NoTenantSelected):
                unbound(tenancy)

        def test_not_strict(tenancy):
            assert not tenancy.strict
            unbound(tenancy)

        @pytest.mark.pgtenants_strict
        def test_strict_fails_the_test(tenancy):
            unbound(tenancy)
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["E *tenantkit.errors.NoTenantSelected: *strict*"])
    inner.pytester.makepyfile(
        test_opt="""
        def test_option(tenancy):
            assert tenancy.strict
        """
    )
    inner.run("--pgtenants-strict", "test_opt.py").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("tenants()", "*@pytest.mark.tenants(...)*give at least one tenant schema name*"),
        ('tenants("Acme")', "*@pytest.mark.tenants(...)*invalid schema name 'Acme'*"),
        ('tenants("a; drop")', "*invalid schema name 'a; drop'*"),
        ('tenants("public")', "*invalid schema name 'public'*reserved*"),
        ('tenants("acme", "acme")', "*'acme' is given twice*"),
        ('tenants("acme", domains=1)', "*takes no keyword arguments*"),
        ('pgtenants_strict("yes")', "*@pytest.mark.pgtenants_strict takes no arguments*"),
        ("pgtenants_rollback(1)", "*@pytest.mark.pgtenants_rollback takes no arguments*"),
    ],
)
def test_marker_validation(inner, marker: str, message: str) -> None:
    """Misused markers error the test before any tenant is created, saying what is wrong."""
    inner.pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_it():
            pass
        """
    )
    result = inner.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


def test_marker_alone_creates_tenants(inner) -> None:
    """@pytest.mark.tenants creates its tenants without the tenants fixture, before the
    test's own fixtures; a marker on a class or module works the same."""
    inner.pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def acme_orders(tenancy):
            # A user fixture that only asks for tenancy: acme exists already.
            with tenancy.connection("acme") as conn:
                return conn.execute("select count(*) from shop_t0").fetchone()[0]
        """
    )
    inner.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.tenants("acme", "globex")
        def test_marker_only(acme_orders, tenancy):
            assert acme_orders == 0
            assert {"acme", "globex"} <= {t.schema for t in tenancy.tenants()}

        @pytest.mark.tenants("acme")
        class TestClass:
            def test_in_class(self, tenancy):
                assert tenancy.get_tenant("acme").schema == "acme"

        def test_gone_afterwards(tenancy):
            assert not {"acme", "globex"} & {t.schema for t in tenancy.tenants()}
        """
    )
    inner.run("-p", "no:randomly").assert_outcomes(passed=3)


def test_tenants_fixture_needs_marker(inner) -> None:
    """The tenants fixture without the marker fails with a hint."""
    inner.pytester.makepyfile("def test_it(tenants): pass")
    result = inner.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['*needs @pytest.mark.tenants("acme", "globex", ...)*'])


def test_fixture_docs(inner) -> None:
    """`pytest --fixtures` shows a docstring for every public fixture."""
    result = inner.run("--fixtures")
    out = result.stdout.str()
    for name in FIXTURES:
        assert f"{name} -- " in out or f"{name} [session scope] -- " in out, name
    result.stdout.fnmatch_lines(
        [
            "tenant -- *",
            "*A fresh, fully migrated tenant with one domain*",
            "assert_tenants_isolated -- *",
            "*Prove tenant isolation*",
        ]
    )


def test_recycled_tenants_are_pristine(inner) -> None:
    """Tenants retired after a test come back from the spare pool empty and unchanged.

    Every test writes rows and uses the identity sequences; some also change the structure.
    With a pool of 2 spares the later tests get recycled schemas: they must find no rows, ids
    starting at 1 again, and none of the structural changes (those schemas are dropped).
    """
    inner.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(12))
        def test_dirty(n, tenant_conn, request):
            assert tenant_conn.execute("select count(*) from shop_t0").fetchone()[0] == 0
            assert tenant_conn.execute("select count(*) from shop_t1").fetchone()[0] == 0
            cols = tenant_conn.execute(
                "select count(*) from information_schema.columns"
                " where table_schema = current_schema() and column_name = 'extra'"
            ).fetchone()[0]
            assert cols == 0
            first = tenant_conn.execute(
                "insert into shop_t0 (name) values ('a') returning id").fetchone()[0]
            assert first == 1
            tenant_conn.execute("insert into shop_t1 (name, ref_id) values ('b', %s)", [first])
            if n % 3 == 0:
                tenant_conn.execute("alter table shop_t2 add column extra int")
            if n % 4 == 0:
                tenant_conn.execute("create index shop_t3_extra on shop_t3 (amount)")

        def test_janitor(request, tenancy):
            from pytest_pgtenants.fixtures import SESSION_KEY
            session = request.config.stash[SESSION_KEY]
            session.janitor.drain()
            assert session.stats["recycled"] >= 2, session.stats
            assert session.stats["dropped"] >= 6, session.stats
            assert not session.janitor.errors
        """
    )
    inner.run("--pgtenants-spares=3").assert_outcomes(passed=13)


def _seeded(inner, more: str = "") -> Path:
    """A migrations directory whose one tenant migration seeds two roles (ids 1 and 2), then
    runs ``more``."""
    migrations = inner.pytester.mkdir("seeded")
    (migrations / "tenant").mkdir()
    (migrations / "tenant" / "0001_roles.sql").write_text(
        "create table roles (id serial primary key, name text unique);\n"
        "insert into roles (name) values ('owner'), ('member');\n" + more
    )
    return Path(migrations)


def test_seed_rows_are_in_every_tenant(inner) -> None:
    """Rows a tenant migration writes are in every test's tenant, wherever it came from.

    Spares are copies of the template, refilled as tests take them; every test here changes
    the seeded table, so no schema is recycled: each test finds the two seeded roles and the
    next id where a migrated tenant has it, even after other tests wrote and deleted rows.
    """
    migrations = _seeded(inner)
    inner.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_seeded(n, tenant_conn):
            rows = tenant_conn.execute("select id, name from roles order by id").fetchall()
            assert rows == [(1, "owner"), (2, "member")]
            new = tenant_conn.execute(
                "insert into roles (name) values ('guest') returning id").fetchone()[0]
            assert new == 3
            tenant_conn.execute("delete from roles where name = 'owner'")
        """
    )
    inner.run(f"--pgtenants-migrations={migrations}", "--pgtenants-spares=2").assert_outcomes(
        passed=8
    )


def test_recycling_keeps_seed_rows(inner) -> None:
    """A schema whose seeded rows a test left alone is recycled with them, its sequences back
    where they stood when it was built; one whose seeded rows changed is dropped.

    Every test moves the seeded table's sequence and writes to an unseeded table; every
    fourth also inserts a role. Later tests get recycled schemas and must find the seeds, the
    sequence at 3 again and the unseeded table empty with ids from 1.
    """
    migrations = _seeded(
        inner, "create table notes (id serial primary key, role_id int references roles);\n"
    )
    inner.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(12))
        def test_seeded(n, tenant_conn):
            rows = tenant_conn.execute("select id, name from roles order by id").fetchall()
            assert rows == [(1, "owner"), (2, "member")]
            assert tenant_conn.execute("select nextval('roles_id_seq')").fetchone()[0] == 3
            assert tenant_conn.execute("select count(*) from notes").fetchone()[0] == 0
            note = tenant_conn.execute(
                "insert into notes (role_id) values (1) returning id").fetchone()[0]
            assert note == 1
            if n % 4 == 0:
                tenant_conn.execute("insert into roles (name) values ('guest')")

        def test_janitor(request):
            from pytest_pgtenants.fixtures import SESSION_KEY
            session = request.config.stash[SESSION_KEY]
            session.janitor.drain()
            assert not session.janitor.errors
            assert session.stats == {"recycled": 9, "dropped": 3}, session.stats
        """
    )
    inner.run(f"--pgtenants-migrations={migrations}", "--pgtenants-spares=2").assert_outcomes(
        passed=13
    )


def test_without_migrations(inner) -> None:
    """Without a migrations directory tenants are empty schemas; no spares, same fixtures."""
    inner.pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    inner.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.tenants("acme", "globex")
        def test_empty(tenants, tenant_conn, tenancy, assert_tenants_isolated):
            tenant_conn.execute("create table notes (id int)")
            with tenancy.connection("globex") as conn:
                assert conn.execute(
                    "select count(*) from pg_tables where schemaname = 'globex'"
                ).fetchone()[0] == 0
            assert_tenants_isolated.between()

        @pytest.mark.tenants("acme")
        def test_again(tenants, tenancy):
            with tenancy.connection("acme") as conn:
                assert conn.execute(
                    "select count(*) from pg_tables where schemaname = 'acme'"
                ).fetchone()[0] == 0
        """
    )
    inner.run().assert_outcomes(passed=2)
