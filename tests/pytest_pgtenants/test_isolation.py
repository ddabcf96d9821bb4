"""assert_tenants_isolated: the negative controls it must catch, and isolated code it must pass."""

from __future__ import annotations

LEAKY_APP = '''
import psycopg
from psycopg import sql
from tenantkit.search_path import current_tenant

class LeakyApp:
    """The django-tenants bug: the search_path is cached per connection and only set when
    the app *thinks* it changed, so after a reset the next tenant writes into the old one."""

    def __init__(self, conninfo):
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.cached = None

    def __call__(self, environ, start_response):
        schema = environ["HTTP_HOST"].split(".")[0]
        if self.cached is None:
            path = sql.SQL("set search_path to {}, public").format(sql.Identifier(schema))
            self.conn.execute(path)
            self.cached = schema   # stale from now on
        self.conn.execute("insert into shop_t0 (name) values ('order')")
        start_response("201 Created", [])
        return [b"ok"]


class IsolatedApp:
    def __init__(self, tenancy):
        self.tenancy = tenancy

    def __call__(self, environ, start_response):
        with self.tenancy.connection() as conn:
            conn.execute("insert into shop_t0 (name) values ('order')")
        start_response("201 Created", [])
        return [b"ok"]
'''


def test_negative_control_and_isolated_app(inner) -> None:
    """The leaky app is caught (message names the leaked table); the isolated app passes."""
    inner.pytester.makepyfile(apps=LEAKY_APP)
    inner.pytester.makepyfile(
        """
        import pytest
        from apps import LeakyApp, IsolatedApp

        @pytest.mark.tenants("acme", "globex")
        def test_leaky(tenants, tenancy, tenant_client, assert_tenants_isolated):
            app = LeakyApp(tenancy.conninfo)
            tenant_client(app, tenants["acme"]).post("/orders")
            with assert_tenants_isolated(tenants["globex"]):
                tenant_client(app, tenants["globex"]).post("/orders")

        @pytest.mark.tenants("acme", "globex")
        def test_isolated(tenants, tenancy, tenant_client, assert_tenants_isolated):
            app = IsolatedApp(tenancy)
            tenant_client(app, tenants["acme"], route=True).post("/orders")
            with assert_tenants_isolated(tenants["globex"]):
                client = tenant_client(app, tenants["globex"], route=True)
                assert client.post("/").status_code == 201
            with tenancy.connection(tenants["globex"]) as conn:
                assert conn.execute("select count(*) from shop_t0").fetchone()[0] == 1
            assert_tenants_isolated.between(tenants["acme"], tenants["globex"])
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *TenantIsolationError: tenant isolation violated (1 problem(s)):",
            "E *- table acme.shop_t0: 1 row(s) added: (*order*)",
        ]
    )


def test_block_catches_structure_and_shared_tables(inner) -> None:
    """Changes of structure in another tenant and tenant-shaped tables in the shared schema."""
    inner.pytester.makepyfile(
        """
        import pytest

        @pytest.mark.tenants("acme", "globex")
        def test_structure(tenants, tenancy, assert_tenants_isolated):
            with assert_tenants_isolated(tenants["acme"]):
                with tenancy.admin_connection() as conn:
                    conn.execute("alter table acme.shop_t1 add column fine int")
                    conn.execute("alter table globex.shop_t1 add column oops int")
                    conn.execute("drop index globex.shop_t2_name_idx")
                    conn.execute("create table public.shop_t3 (id int)")
                    conn.execute("delete from globex.shop_t4")

        @pytest.mark.tenants("acme", "globex")
        def test_exception_passes_through(tenants, assert_tenants_isolated):
            with pytest.raises(ZeroDivisionError):
                with assert_tenants_isolated(tenants["acme"]):
                    1 / 0
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "schema globex: column shop_t1.oops was created (integer)" in out
    assert "schema globex: index shop_t2_name_idx was dropped" in out
    assert "shared schema public gained table shop_t3, which is a tenant table name" in out
    assert "fine" not in out
    assert "drop table public.shop_t3" not in out
    # the shared table the test created must not stay for the next tests
    import psycopg

    with psycopg.connect(inner.server, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone()


def test_between_catches_references_and_canaries(inner) -> None:
    """Cross-schema FKs, views, defaults, triggers, function bodies; canaries."""
    inner.pytester.makepyfile(
        """
        import contextlib
        import pytest

        @pytest.mark.tenants("acme", "globex")
        def test_references(tenants, tenancy, assert_tenants_isolated):
            with tenancy.admin_connection() as conn:
                conn.execute("create view globex.leak as select * from acme.shop_t0")
                conn.execute(
                    "alter table globex.shop_t1 add constraint cross_fk"
                    " foreign key (ref_id) references acme.shop_t0 (id)")
                conn.execute("create sequence acme.counter")
                conn.execute(
                    "alter table globex.shop_t2"
                    " add column n bigint default nextval('acme.counter')")
                conn.execute(
                    "create function acme.touch() returns trigger language plpgsql as"
                    " $$ begin return new; end $$")
                conn.execute(
                    "create trigger touch before insert on globex.shop_t3"
                    " for each row execute function acme.touch()")
                conn.execute(
                    "create function globex.peek() returns bigint language sql as"
                    " $$ select count(*) from acme.shop_t5 $$")
            assert_tenants_isolated.between(tenants["acme"], tenants["globex"], canaries=False)

        @pytest.mark.tenants("acme", "globex")
        def test_canaries(tenants, tenancy, assert_tenants_isolated):
            @contextlib.contextmanager
            def always_acme(schema):
                # a data layer that ignores the tenant it is asked for
                with tenancy.connection("acme") as conn:
                    yield conn
            assert_tenants_isolated.between("acme", "globex", connect=always_acme)

        @pytest.mark.tenants("acme", "globex", "initech")
        def test_clean(tenants, tenancy, assert_tenants_isolated):
            assert_tenants_isolated.between()
            with tenancy.connection("acme") as conn:
                assert conn.execute("select count(*) from shop_t0").fetchone()[0] == 0
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    for line in [
        "view on globex.leak references acme.shop_t0",
        "foreign key cross_fk on globex.shop_t1 references acme.shop_t0",
        "default of column n on globex.shop_t2 references acme.counter",
        "trigger touch calls function touch on globex.shop_t3 references acme.touch()",
        "function globex.peek() body references schema acme",
        "table shop_t0: a canary row written through tenant acme's connection is visible "
        "through tenant globex's connection",
    ]:
        assert line in out, line
