"""assert_tenants_isolated: the negative controls it must catch, and isolated code it must pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from pytest_pgtenants._recycle import fingerprints
from pytest_pgtenants._snapshot_diff import acl_levels, describe_privileges
from pytest_pgtenants.asserts import (
    IsolationSnapshot,
    IsolationUnverifiable,
    TenantIsolationError,
    assert_unchanged,
    take_snapshot,
)
from tenantkit.migrations import template_schema_name
from tenantkit.provisioning import SPARE_PREFIX

LEAKY_APP = '''
import psycopg
from psycopg import sql
from tenantkit.core.context import current_tenant

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
            "E *TenantIsolationError: tenant isolation violated (2 problem(s)):",
            "E *- table acme.shop_t0: 1 row(s) added: (*order*)",
            "E *- sequence acme.shop_t0_id_seq: value changed from 1 to 2",
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


def test_block_catches_lasting_effects_through_the_fixture(inner) -> None:
    """With the plugin's real spare pool and template: effects outside the acting tenant fail
    the block, each named; the tenant's own work (rows, sequences, temp tables) and tenants
    created meanwhile (claiming spares while the pool refills) pass."""
    inner.pytester.makepyfile(
        """
        import pytest
        from psycopg import sql

        @pytest.mark.tenants("acme", "globex")
        def test_leaks(tenants, tenancy, assert_tenants_isolated):
            with tenancy.admin_connection() as conn:
                spare = conn.execute(
                    "select schema from public.tenantkit_spares order by schema limit 1"
                ).fetchone()[0]
            print("SPARE", spare)
            with assert_tenants_isolated(tenants["acme"]):
                with tenancy.connection(tenants["acme"]) as conn:
                    conn.execute(
                        sql.SQL("insert into {} (name) values ('planted')").format(
                            sql.Identifier(spare, "shop_t0")
                        )
                    )
                    conn.execute("select nextval('globex.shop_t0_id_seq')")
                    conn.execute("grant select on globex.shop_t1 to public")
                    conn.execute("alter table globex.shop_t2 disable trigger all")
                    conn.execute("create schema loot; create table loot.copy as table shop_t0")

        @pytest.mark.tenants("acme", "globex")
        def test_own_work(tenants, tenancy, tenant_factory, assert_tenants_isolated):
            with assert_tenants_isolated(tenants["acme"]):
                with tenancy.connection(tenants["acme"]) as conn:
                    conn.execute("insert into shop_t0 (name) values ('order')")
                    conn.execute("select nextval('shop_t1_id_seq')")
                    conn.execute("create temp table scratch as select * from shop_t0")
                    conn.execute("insert into scratch select * from shop_t0")
                    conn.execute("drop table scratch")
                for _ in range(4):
                    tenant_factory()  # claims spares; the pool refills in the background
        """
    )
    result = inner.run()
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    spare = next(line.split()[1] for line in out.splitlines() if line.startswith("SPARE "))
    for line in [
        f"table {spare}.shop_t0: 1 row(s) added: (1,planted,",
        "sequence globex.shop_t0_id_seq: value changed from unused (next 1) to 1",
        "schema globex: table shop_t1: privileges changed: SELECT granted to PUBLIC",
        "schema globex: trigger shop_t2.RI_ConstraintTrigger_c_",
        "(internal, of constraint shop_t2_ref_fk): state changed from enabled to disabled",
        "schema loot appeared during the block and is not a tenant: table copy (0 row(s))",
    ]:
        assert line in out, line
    assert "test_own_work" not in out.split("short test summary info")[-1]


# -- lasting effects on other tenants, spares and the template -------------------------------
#
# Each attack runs on a connection acting as tenant acme (its search_path) against a small
# world: tenants acme and globex, a warm spare and the template schema (all with the same
# tables), and a shared schema. The snapshot is taken around it the way the fixture does.

WORLD_TABLES = """
create table {s}.customers (id serial primary key, name text not null);
create table {s}.orders (
    id bigint generated by default as identity primary key,
    customer_id bigint references {s}.customers (id),
    total numeric
);
create function {s}.touch() returns trigger language plpgsql as $$ begin return new; end $$;
create trigger touch before insert on {s}.orders for each row execute function {s}.touch();
"""


@dataclass
class World:
    """Schema names of one test's world (all unique) and an admin connection."""

    conn: psycopg.Connection[Any]
    dsn: str
    acme: str
    globex: str
    spare: str
    template: str
    shared: str
    role: str
    loot: str

    def names(self, *, quoted: bool) -> dict[str, str]:
        """The names, quoted (to format SQL) or not (to format messages)."""
        keys = ("acme", "globex", "spare", "template", "shared", "role", "loot")
        names = {k: str(getattr(self, k)) for k in keys}
        if quoted:
            names = {k: sql.Identifier(v).as_string(self.conn) for k, v in names.items()}
        user, database = self.conn.info.user, self.conn.info.dbname
        if quoted:
            user, database = (sql.Identifier(n).as_string(self.conn) for n in (user, database))
        return {**names, "user": str(user), "database": str(database)}

    def snapshot(self) -> IsolationSnapshot:
        return take_snapshot(self.conn, [self.globex], shared_schema=self.shared)

    def problems(self, before: IsolationSnapshot, *tenants: str) -> list[str]:
        """What ``assert_unchanged`` reports (``[]`` when it passes)."""
        try:
            assert_unchanged(self.conn, before, tenant_schemas=[self.acme, *tenants])
        except TenantIsolationError as exc:
            return exc.problems
        return []

    def hide_rows_from_role(self, table: str, *readable: str) -> None:
        """Let ``role`` read the ``readable`` schemas (by their key), and give it globex's
        ``table`` with forced row-level security and a policy that shows no row."""
        q = self.names(quoted=True)
        for key in readable:
            self.conn.execute(
                "grant usage on schema {s} to {role}; "
                "grant select on all tables in schema {s} to {role}; "
                "grant select on all sequences in schema {s} to {role}".format(
                    s=q[key], **q
                ).encode()
            )
        t = sql.Identifier(table).as_string(self.conn)
        self.conn.execute(
            f"alter table {q['globex']}.{t} owner to {q['role']}; "
            f"alter table {q['globex']}.{t} enable row level security; "
            f"alter table {q['globex']}.{t} force row level security; "
            f"create policy nothing on {q['globex']}.{t} using (false)".encode()
        )

    def as_acme(self, statements: str) -> None:
        """Run ``statements`` on a connection acting as tenant acme."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(self.acme)))
            conn.execute(statements.encode())


@pytest.fixture
def world(conn: psycopg.Connection[Any], dsn: str, schema_name: str) -> Iterator[World]:
    shared = f"{schema_name}_shared"
    w = World(
        conn=conn,
        dsn=dsn,
        acme=f"{schema_name}_acme",
        globex=f"{schema_name}_globex",
        spare=SPARE_PREFIX + schema_name.removeprefix("t_"),
        template=template_schema_name(shared),
        shared=shared,
        role=f"{schema_name}_app",
        loot=f"{schema_name}_loot",
    )
    schemas = [w.acme, w.globex, w.spare, w.template, w.shared, w.loot]
    conn.execute(sql.SQL("create role {}").format(sql.Identifier(w.role)))
    try:
        for schema in schemas[:5]:
            ident = sql.Identifier(schema)
            conn.execute(sql.SQL("create schema {}").format(ident))
            if schema != shared:
                conn.execute(WORLD_TABLES.format(s=ident.as_string(conn)).encode())
        for tenant in (w.acme, w.globex):
            conn.execute(
                sql.SQL("insert into {} (name) values ('first')").format(
                    sql.Identifier(tenant, "customers")
                )
            )
        yield w
    finally:
        conn.execute(
            sql.SQL("alter role {} in database {} reset all").format(
                sql.Identifier(conn.info.user), sql.Identifier(conn.info.dbname)
            )
        )
        for schema in schemas:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(w.role)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(w.role)))


ATTACKS = {
    "nextval": (
        "select nextval('{globex}.orders_id_seq')",
        ["sequence {globex}.orders_id_seq: value changed from unused (next 1) to 1"],
    ),
    "setval": (
        "select setval('{globex}.orders_id_seq', 100, false)",
        [
            "sequence {globex}.orders_id_seq: value changed from unused (next 1)"
            " to unused (next 100)"
        ],
    ),
    "alter sequence": (
        "alter sequence {globex}.orders_id_seq increment by 1000 restart with 50",
        [
            "schema {globex}: sequence orders_id_seq: increment changed from 1 to 1000",
            "sequence {globex}.orders_id_seq: value changed from unused (next 1)"
            " to unused (next 50)",
        ],
    ),
    "grant on a table": (
        "grant select, insert on {globex}.orders to {role}",
        ["schema {globex}: table orders: privileges changed: SELECT, INSERT granted to {role}"],
    ),
    "grant on a column": (
        "grant update (total) on {globex}.orders to public",
        ["schema {globex}: column orders.total: privileges changed: UPDATE granted to PUBLIC"],
    ),
    "grant on the schema": (
        "grant usage, create on schema {globex} to {role}",
        ["schema {globex}: privileges changed: USAGE, CREATE granted to {role}"],
    ),
    "grant on a function": (
        "revoke execute on function {globex}.touch() from public",
        ["schema {globex}: function touch(): privileges changed: EXECUTE revoked from PUBLIC"],
    ),
    "default privileges": (
        "alter default privileges in schema {globex} grant select on tables to {role}",
        [
            "schema {globex}: default privileges for tables created by {user} changed: "
            "SELECT granted to {role}"
        ],
    ),
    "owner of a table": (
        "alter table {globex}.customers owner to {role}",
        [
            "schema {globex}: table customers: owner changed from {user} to {role}",
            "schema {globex}: sequence customers_id_seq: owner changed from {user} to {role}",
        ],
    ),
    "owner of the schema": (
        "alter schema {globex} owner to {role}",
        ["schema {globex}: owner changed from {user} to {role}"],
    ),
    "rule copying inserts": (
        "create rule copy_to_acme as on insert to {globex}.orders"
        " do also insert into {acme}.orders (total) values (new.total)",
        [
            "schema {globex}: rule orders.copy_to_acme was created (CREATE RULE copy_to_acme AS"
            " ON INSERT TO {globex}.orders DO INSERT INTO {acme}.orders (total)"
        ],
    ),
    "row level security policy": (
        "alter table {globex}.orders enable row level security;"
        " create policy peek on {globex}.orders using (true)",
        [
            "schema {globex}: policy orders.peek was created (permissive for ALL to PUBLIC"
            " using (true))",
            "schema {globex}: table orders: row level security changed from disabled to enabled",
        ],
    ),
    "forced row level security": (
        "alter table {globex}.orders force row level security",
        [
            "schema {globex}: table orders: row level security changed from disabled to"
            " disabled, forced"
        ],
    ),
    "security definer function": (
        "alter function {globex}.touch() security definer set search_path = {acme}",
        [
            "schema {globex}: function touch(): security changed from invoker to definer",
            "schema {globex}: function touch(): settings changed from none to search_path={acme}",
        ],
    ),
    "leakproof and volatility": (
        "alter function {globex}.touch() leakproof stable",
        [
            "schema {globex}: function touch(): leakproof changed from no to yes",
            "schema {globex}: function touch(): volatility changed from volatile to stable",
        ],
    ),
    "disable trigger all": (
        "alter table {globex}.orders disable trigger all",
        [
            "schema {globex}: trigger orders.touch: state changed from enabled to disabled",
            "(internal, of constraint orders_customer_id_fkey): state changed from enabled to"
            " disabled",
        ],
    ),
    "row planted in a spare": (
        "insert into {spare}.customers (name) values ('planted')",
        ["table {spare}.customers: 1 row(s) added: (1,planted)"],
    ),
    "trigger planted in a spare": (
        "create trigger leak after insert on {spare}.orders"
        " for each row execute function {spare}.touch()",
        [
            "schema {spare}: trigger orders.leak was created (CREATE TRIGGER leak AFTER INSERT"
            " ON {spare}.orders FOR EACH ROW EXECUTE FUNCTION {spare}.touch())"
        ],
    ),
    "grant on a spare": (
        "grant select on {spare}.customers to {role}",
        ["schema {spare}: table customers: privileges changed: SELECT granted to {role}"],
    ),
    "row planted in the template": (
        "insert into {template}.customers (name) values ('planted')",
        ["table {template}.customers: 1 row(s) added: (1,planted)"],
    ),
    "new schema with a copy of acme's data": (
        "create schema {loot}; create table {loot}.customers as table {acme}.customers",
        ["schema {loot} appeared during the block and is not a tenant: table customers (1 row(s))"],
    ),
    "new table in the shared schema": (
        "create table {shared}.stolen as table {acme}.customers",
        ["shared schema {shared} gained table stolen (1 row(s))"],
    ),
    "role setting": (
        # (in this database only: other test processes use other databases)
        "alter role {user} in database {database} set search_path = {acme}",
        [
            "database: settings for role {user} in this database: settings changed from none"
            " to search_path={acme}"
        ],
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_lasting_effects_of_a_tenant_on_others_are_caught(world: World, attack: str) -> None:
    """Acting as acme, each attack leaves a lasting effect outside acme: a failure naming it."""
    statements, expected = ATTACKS[attack]
    before = world.snapshot()
    assert world.problems(world.snapshot()) == []
    world.as_acme(statements.format(**world.names(quoted=True)))
    problems = world.problems(before)
    for line in expected:
        wanted = line.format(**world.names(quoted=False))
        assert any(wanted in p for p in problems), (wanted, problems)


def test_acme_own_activity_passes(world: World) -> None:
    """Acme writing its tables and sequences, using temp tables and changing its own schema,
    a new tenant appearing, a spare claimed and a new clean spare: no false positive."""
    a, spare = world.acme, world.spare
    before = world.snapshot()
    world.as_acme(
        """
        insert into customers (name) values ('second');
        insert into orders (customer_id, total) values (1, 10), (2, 20);
        update orders set total = total + 1;
        delete from customers where name = 'nobody';
        select nextval('orders_id_seq'), setval('customers_id_seq', 40);
        create temp table scratch as select * from orders;
        insert into scratch select * from orders;
        create table notes (body text);
        create index on orders (total);
        alter table customers add column email text;
        """
    )
    fresh = f"{spare}_new"  # a spare made by the pool refill while the block ran
    newcomer = f"{a}_newcomer"  # a tenant created (claiming a spare) while the block ran
    ident = sql.Identifier
    world.conn.execute(
        sql.SQL("alter schema {} rename to {}").format(ident(spare), ident(newcomer))
    )
    world.conn.execute(sql.SQL("create schema {}").format(ident(fresh)))
    world.conn.execute(WORLD_TABLES.format(s=ident(fresh).as_string(world.conn)).encode())
    try:
        assert world.problems(before, newcomer) == []
    finally:
        for schema in (fresh, newcomer):
            world.conn.execute(sql.SQL("drop schema {} cascade").format(ident(schema)))


def test_a_new_spare_holding_rows_is_caught(world: World) -> None:
    """A schema named like a spare is allowed to appear only as a fresh copy of the template."""
    fresh = f"{world.spare}_new"
    ident = sql.Identifier(fresh)
    before = world.snapshot()
    world.conn.execute(sql.SQL("create schema {}").format(ident))
    try:
        world.conn.execute(WORLD_TABLES.format(s=ident.as_string(world.conn)).encode())
        world.conn.execute(
            sql.SQL("insert into {} (name) values ('planted')").format(
                sql.Identifier(fresh, "customers")
            )
        )
        assert world.problems(before) == [
            f"schema {fresh} appeared during the block holding rows a fresh spare would not "
            "hold: table customers (1 row(s) where the template has 0)"
        ]
    finally:
        world.conn.execute(sql.SQL("drop schema {} cascade").format(ident))


# -- privileges as PostgreSQL prints them --------------------------------------------------------


def _putid(name: str) -> str:
    """A role name as ``aclitemout`` prints it (quoted unless plain ASCII letters/digits/_)."""
    plain = all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    return name if plain else '"' + name.replace('"', '""') + '"'


_ROLE = st.text(alphabet='ab_Z9 ",=/*é', min_size=1, max_size=8)


@given(
    st.dictionaries(
        st.tuples(st.one_of(st.just(""), _ROLE), st.sampled_from("rawdDxtXUC")),
        st.booleans(),
        max_size=12,
    ),
    _ROLE,
)
@settings(max_examples=300)
def test_acl_text_is_parsed_whatever_the_role_names(
    grants: dict[tuple[str, str], bool], grantor: str
) -> None:
    """``acl_levels`` reads back what ``aclitemout`` prints, quoted names included."""
    by_grantee: dict[str, str] = {}
    for (grantee, letter), option in sorted(grants.items()):
        by_grantee[grantee] = by_grantee.get(grantee, "") + letter + ("*" if option else "")
    text = ",".join(f"{_putid(g)}={privs}/{_putid(grantor)}" for g, privs in by_grantee.items())
    expected = {
        (grantee or "PUBLIC", _PRIVILEGE_NAMES[letter]): 2 if option else 1
        for (grantee, letter), option in grants.items()
    }
    assert acl_levels(text) == expected


_PRIVILEGE_NAMES = {
    "r": "SELECT",
    "a": "INSERT",
    "w": "UPDATE",
    "d": "DELETE",
    "D": "TRUNCATE",
    "x": "REFERENCES",
    "t": "TRIGGER",
    "X": "EXECUTE",
    "U": "USAGE",
    "C": "CREATE",
}


def test_privilege_changes_read_like_grant_and_revoke() -> None:
    before = acl_levels('app=arwd/app,=r/app,"odd, role"=r*/app')
    after = acl_levels('app=arwd/app,"odd, role"=r/app,acme=rw*/app')
    assert describe_privileges(before, after) == (
        "SELECT granted to acme; UPDATE granted with grant option to acme; "
        "SELECT grant option revoked from odd, role; SELECT revoked from PUBLIC"
    )
    assert describe_privileges(after, after) == ""


def test_rows_hidden_by_row_level_security_fail_the_snapshot(world: World) -> None:
    """A snapshot taken by a role that row-level security applies to (the owner of a table
    with FORCE ROW LEVEL SECURITY) would count only the rows the policies show it: a row
    written into another tenant's table could go unseen. The snapshot fails instead."""
    q = world.names(quoted=True)
    world.hide_rows_from_role("orders", "acme", "globex", "shared")
    # Without the template and spares: other tests' spares (same database) are not the role's
    # to read.
    only = {"shared_schema": world.shared, "reserved": False}
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(world.role)))
        # The table is empty (no heap page): nothing to read, nothing hidden.
        before = take_snapshot(conn, [world.globex], **only)
        # (An explicit id: the sequence does not move, only the row tells.)
        world.as_acme("insert into {globex}.orders (id, total) values (7, 1)".format(**q))
        with pytest.raises(TenantIsolationError, match="row-level security") as caught:
            assert_unchanged(conn, before, tenant_schemas=[world.acme])
        assert f"{world.globex}.orders" in str(caught.value)
        assert world.role in str(caught.value)
        # Nothing was left changed on the connection: the policy applies again.
        assert conn.execute("show row_security").fetchone() == ("on",)
    # In the caller's own transaction: the same failure (PostgreSQL's words, the transaction
    # being aborted), and the setting is the caller's again once rolled back.
    with psycopg.connect(world.dsn) as conn:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(world.role)))
        with pytest.raises(
            IsolationUnverifiable, match='row-level security policy for table "orders"'
        ):
            take_snapshot(conn, [world.globex], **only)
        conn.rollback()
        assert conn.execute("show row_security").fetchone() == ("on",)
    # Where nothing is hidden (the superuser), the caller's transaction goes on with its own
    # setting.
    with psycopg.connect(world.dsn) as conn:
        conn.execute("select 1")
        take_snapshot(conn, [world.globex], shared_schema=world.shared)
        assert conn.execute("show row_security").fetchone() == ("on",)


def test_rows_hidden_by_row_level_security_keep_a_schema_from_recycling(world: World) -> None:
    """The plugin recycles a test's schema only when its seeded tables still hold exactly the
    rows they held when it was built. A role that row-level security applies to would take
    that digest over the rows the policies show it: a row a test added out of their sight
    would stay for the next test. Such a schema gets no baseline, so it is never recycled."""
    world.hide_rows_from_role("customers", "acme", "globex")
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(world.role)))
        found = fingerprints(conn, [world.acme, world.globex])
        oids = dict(
            conn.execute(
                "select nspname, oid::bigint from pg_namespace where nspname = any(%s)",
                ([world.acme, world.globex],),
            ).fetchall()
        )
        assert oids[world.acme] in found  # the same tables, seeded alike, without the policy
        assert found[oids[world.acme]].rows  # (customers held a row: it has a digest)
        assert oids[world.globex] not in found
        assert conn.execute("show row_security").fetchone() == ("on",)
