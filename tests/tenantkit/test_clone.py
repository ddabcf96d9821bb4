"""clone_schema: structure, data, sequences and references rewritten to the target."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tenantkit import (
    InvalidSchemaName,
    Tenancy,
    TenantkitError,
    TenantNotFound,
    _demo,
)
from tenantkit.errors import DomainExists, SchemaExists
from tenantkit.introspection.catalog import fingerprint, read_catalog
from tenantkit.provisioning.clone import CloneError, clone_schema, clone_script

SOURCE_DDL = """
create type {s}.mood as enum ('sad', 'ok', 'happy');
create sequence {s}.counter start 100;
create table {s}.parent (
    id bigint generated always as identity primary key,
    code text not null unique,
    mood {s}.mood default 'ok',
    n int default nextval('{s}.counter'),
    total numeric(10, 2) check (total >= 0),
    doubled int generated always as (coalesce(n, 0) * 2) stored
);
create table {s}.child (
    id serial primary key,
    parent_id bigint not null references {s}.parent (id) on delete cascade,
    note varchar(40) collate "C"
);
create index child_parent_idx on {s}.child (parent_id) where note is not null;
create function {s}.touch() returns trigger language plpgsql as
    $$ begin new.note := coalesce(new.note, 'touched'); return new; end $$;
create trigger child_touch before insert on {s}.child for each row execute function {s}.touch();
create view {s}.parent_view as select p.code, count(c.id) as children
    from {s}.parent p left join {s}.child c on c.parent_id = p.id group by p.code;
"""


@pytest.fixture
def source(conn: psycopg.Connection) -> str:
    name = f"src_{uuid.uuid4().hex[:10]}"
    conn.execute(f"create schema {name}")
    conn.execute(SOURCE_DDL.format(s=name))
    conn.execute(f"insert into {name}.parent (code, total) values ('a', 1), ('b', 2)")
    conn.execute(f"insert into {name}.child (parent_id) values (1), (2)")
    return name


def test_structure_is_identical_and_independent(
    conn: psycopg.Connection, source: str, schema_name: str
) -> None:
    clone_schema(conn, source, schema_name)
    assert fingerprint(conn, schema_name) == fingerprint(conn, source)
    # Everything points at the target, nothing at the source.
    script = clone_script(conn, schema_name).statements
    assert not any(source in s for s in script)
    conn.execute(f"insert into {schema_name}.parent (code) values ('z')")
    conn.execute(f"insert into {schema_name}.child (parent_id) values (1)")
    assert conn.execute(f"select n, mood, doubled from {schema_name}.parent").fetchone() == (
        100,
        "ok",
        200,
    )
    assert conn.execute(f"select note from {schema_name}.child").fetchone() == ("touched",)
    assert conn.execute(f"select * from {schema_name}.parent_view").fetchall() == [("z", 1)]
    # The source's sequences were not used by the clone's inserts.
    assert conn.execute(f"select last_value from {source}.counter").fetchone() == (101,)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(f"insert into {schema_name}.child (parent_id) values (42)")


def test_data_and_sequence_positions(
    conn: psycopg.Connection, source: str, schema_name: str
) -> None:
    clone_schema(conn, source, schema_name, data=True)
    assert conn.execute(f"select code from {schema_name}.parent order by id").fetchall() == [
        ("a",),
        ("b",),
    ]
    conn.execute(f"insert into {schema_name}.parent (code) values ('c')")
    row = conn.execute(f"select id, n from {schema_name}.parent where code = 'c'").fetchone()
    assert row == (3, 102)
    conn.execute(f"insert into {schema_name}.child (parent_id) values (3)")
    assert conn.execute(f"select max(id) from {schema_name}.child").fetchone() == (3,)


def test_data_copies_rows_before_keys_and_triggers(
    conn: psycopg.Connection, schema_name: str
) -> None:
    # A referencing table that sorts first, a trigger that writes elsewhere, a populated
    # materialized view: the copy is the source's rows as they are.
    src = f"src_{uuid.uuid4().hex[:10]}"
    conn.execute(f"create schema {src}")
    conn.execute(
        f"""
        create table {src}.z_parent (id serial primary key);
        create table {src}.a_child (id serial primary key,
            parent_id int references {src}.z_parent (id));
        create table {src}.log (n int);
        create function {src}.logged() returns trigger language plpgsql as
            $$ begin insert into {src}.log values (new.id); return new; end $$;
        create trigger parent_logged after insert on {src}.z_parent
            for each row execute function {src}.logged();
        insert into {src}.z_parent default values;
        insert into {src}.a_child (parent_id) values (1);
        create materialized view {src}.counted as select count(*) as n from {src}.a_child;
        """
    )
    for n in range(1, 7):  # more sequences than one statement moves
        conn.execute(f"create sequence {src}.seq{n}; select setval('{src}.seq{n}', {n * 10})")
    clone_schema(conn, src, schema_name, data=True)
    positions = [
        conn.execute(f"select nextval('{schema_name}.seq{n}')").fetchone() for n in range(1, 7)
    ]
    assert positions == [(n * 10 + 1,) for n in range(1, 7)]
    for table in ("z_parent", "a_child", "log", "counted"):
        rows = f"select * from {{}}.{table} order by 1"
        assert (
            conn.execute(rows.format(schema_name)).fetchall()
            == conn.execute(rows.format(src)).fetchall()
        ), table
    # The trigger is there for new rows, and writes into the clone's own table.
    conn.execute(f"insert into {schema_name}.z_parent default values")
    assert conn.execute(f"select n from {schema_name}.log order by n").fetchall() == [(1,), (2,)]
    # A script of the other kind is refused rather than silently copying too much or too little.
    with pytest.raises(ValueError, match="rows="):
        clone_schema(conn, src, schema_name + "_2", script=clone_script(conn, src, rows="all"))


@pytest.mark.parametrize(
    ("ddl", "reason"),
    [
        (
            "create domain {s}.pos as int check (value > 0); create table {s}.t (a {s}.pos)",
            "domain",
        ),
        ("create type {s}.pair as (a int, b int)", "composite"),
        (
            "create table {s}.t (a int); grant select on {s}.t to {r} with grant option; "
            "set role {r}; grant select on {s}.t to public; reset role",
            "privileges granted by a role other than the current one: t",
        ),
        (
            "alter default privileges for role {r} in schema {s} grant select on tables to public",
            "default privileges of another role",
        ),
        ("create table {s}.p (a int); create table {s}.c (b int) inherits ({s}.p)", "inheritance"),
        (
            "create table {s}.t (a int); create table {s}.l (a int); "
            "create rule r as on insert to {s}.t do also insert into {s}.l values (new.a)",
            "rule: r",
        ),
        (
            "create table {s}.t (a int); create function {s}.f() returns trigger "
            "language plpgsql as $$ begin return new; end $$; "
            "create trigger g before insert on {s}.t for each row execute function {s}.f(); "
            "alter table {s}.t disable trigger g",
            "trigger not simply enabled: g",
        ),
        (
            "create table {s}.t (a int); "
            "create view {s}.v with (security_barrier) as select * from {s}.t where a > 0",
            "view options",
        ),
    ],
    ids=[
        "domain",
        "composite",
        "grant-by-another-role",
        "default-privileges-of-another-role",
        "inheritance",
        "rule",
        "disabled-trigger",
        "view-options",
    ],
)
def test_what_a_copy_would_lose_is_refused(
    conn: psycopg.Connection, schema_name: str, role: str, ddl: str, reason: str
) -> None:
    # A view's security options, a disabled trigger, privileges another role granted, a
    # rule: a copy without them is not the same schema, so the cloner refuses (the
    # provisioner then builds the tenant by its migrations) instead of handing out a tenant
    # that differs.
    src = f"src_{uuid.uuid4().hex[:10]}"
    conn.execute(f"create schema {src}")
    conn.execute(f"grant usage on schema {src} to {role}")
    conn.execute(ddl.format(s=src, r=role))
    with pytest.raises(CloneError, match=reason):
        clone_schema(conn, src, schema_name)
    with pytest.raises(CloneError, match=reason):
        clone_script(conn, src)
    assert (
        conn.execute("select 1 from pg_namespace where nspname = %s", (schema_name,)).fetchone()
        is None
    )


@pytest.fixture
def role(conn: psycopg.Connection) -> Iterator[str]:
    """A role of its own for the test (roles are shared by every database of the server)."""
    name = f"r_{uuid.uuid4().hex[:12]}"
    conn.execute(f"create role {name}")
    try:
        yield name
    finally:
        conn.execute(f"drop owned by {name}")
        conn.execute(f"drop role {name}")


#: Every entry of every access list in a schema, with the schema's own name left out.
ACCESS = """
select kind, name, coalesce(grantee::regrole::text, 'PUBLIC'), privilege_type, is_grantable
from (
    select 'schema' as kind, '' as name, nspacl as acl from pg_namespace where nspname = %(s)s
    union all
    select 'relation', relname, relacl from pg_class where relnamespace = %(s)s::regnamespace
    union all
    select 'column', c.relname || '.' || a.attname, a.attacl from pg_attribute a
    join pg_class c on c.oid = a.attrelid where c.relnamespace = %(s)s::regnamespace
        and a.attnum > 0
    union all
    select 'routine', proname, proacl from pg_proc where pronamespace = %(s)s::regnamespace
    union all
    select 'type', typname, typacl from pg_type where typnamespace = %(s)s::regnamespace
    union all
    select 'default ' || defaclobjtype::text, '', defaclacl from pg_default_acl
    where defaclnamespace = %(s)s::regnamespace
) o
left join lateral aclexplode(o.acl) x on true
where o.acl is not null
order by 1, 2, 3, 4
"""


def test_privileges_are_reproduced(conn: psycopg.Connection, schema_name: str, role: str) -> None:
    """A clone's access lists hold the source's entries: grants to a role and to PUBLIC, with
    grant option, on columns, PUBLIC's default privileges revoked, an owner who revoked their
    own, the schema's; and its default privileges apply to what is created in it later."""
    src = f"src_{uuid.uuid4().hex[:10]}"
    conn.execute(
        f"""
        create schema {src};
        grant usage on schema {src} to {role};
        create type {src}.mood as enum ('a', 'b');
        revoke usage on type {src}.mood from public;
        create table {src}.t (a int, b int);
        grant select, insert on {src}.t to {role};
        grant update (b) on {src}.t to {role} with grant option;
        grant select (a) on {src}.t to public;
        create table {src}.locked (a int);
        revoke all on {src}.locked from current_user;
        create sequence {src}.s;
        grant usage on sequence {src}.s to public;
        create view {src}.v as select a from {src}.t;
        grant select on {src}.v to {role};
        create function {src}.f(x {src}.mood) returns int language sql as 'select 1';
        revoke execute on function {src}.f({src}.mood) from public;
        grant execute on function {src}.f({src}.mood) to {role};
        alter default privileges in schema {src} grant select on tables to {role};
        create table {src}.later (a int);
        """
    )

    def access(schema: str) -> list[tuple[object, ...]]:
        return conn.execute(ACCESS, {"s": schema}).fetchall()

    expected = access(src)
    # Not vacuous: every kind of list is there (the empty one shows as no entry).
    assert {row[0] for row in expected} == {
        "schema",
        "relation",
        "column",
        "routine",
        "type",
        "default r",
    }
    assert ("relation", "later", role, "SELECT", False) in expected
    clone_schema(conn, src, schema_name)
    assert access(schema_name) == expected
    assert conn.execute(
        "select relacl from pg_class where oid = %s::regclass", (f"{schema_name}.locked",)
    ).fetchone() == ([],)
    conn.execute(f"create table {schema_name}.newer (a int)")
    assert ("relation", "newer", role, "SELECT", False) in access(schema_name)
    # The clone's function is the one granted (its argument is the clone's own type).
    granted = conn.execute(
        "select has_function_privilege(%s, %s, 'execute')",
        (role, f"{schema_name}.f({schema_name}.mood)"),
    ).fetchone()
    assert granted == (True,)


def test_default_privileges_of_the_role_everywhere_are_refused(
    conn: psycopg.Connection, schema_name: str, role: str
) -> None:
    """The current role's default privileges for every schema would give the clone's tables
    access lists the source's (created before them) do not have."""
    src = f"src_{uuid.uuid4().hex[:10]}"
    conn.execute(f"create schema {src}; create table {src}.t (a int)")
    conn.execute(f"alter default privileges grant select on tables to {role}")
    try:
        with pytest.raises(CloneError, match="default privileges of the current role"):
            clone_schema(conn, src, schema_name)
    finally:
        conn.execute(f"alter default privileges revoke select on tables from {role}")


def test_existing_target_and_unsupported_objects(
    conn: psycopg.Connection, source: str, schema_name: str
) -> None:
    conn.execute(f"create schema {schema_name}")
    with pytest.raises(SchemaExists):
        clone_schema(conn, source, schema_name)
    conn.execute(f"create table {source}.parted (id int, at date) partition by range (at)")
    with pytest.raises(CloneError, match="partitioned"):
        clone_schema(conn, source, schema_name + "_2")


def test_catalog_reads_many_schemas_at_once(
    conn: psycopg.Connection, source: str, schema_name: str
) -> None:
    clone_schema(conn, source, schema_name)
    cats = read_catalog(conn, [source, schema_name])
    assert cats[source].objects() == cats[schema_name].objects()
    objects = cats[source].objects()
    assert "column parent.doubled" in objects
    assert "trigger child.child_touch" in objects
    assert "type mood" in objects
    assert "function touch()" in objects


@pytest.fixture
def migrated(dsn: str, schema_name: str) -> Iterator[tuple[Tenancy, str]]:
    """A tenancy on the demo project with one tenant holding a note."""
    with Tenancy(dsn, migrations=_demo.MIGRATIONS, max_size=2) as tenancy:
        tenancy.install()
        tenancy.migrate(tenants=False)
        tenancy.create_tenant(schema_name)
        with tenancy.connection(schema_name) as c:
            c.execute("insert into notes (body) values ('source row')")
        yield tenancy, schema_name
        for t in tenancy.tenants():
            if t.schema.startswith(schema_name):
                tenancy.drop_tenant(t, cascade=True)


def test_clone_tenant_registers_a_migrated_copy(migrated: tuple[Tenancy, str]) -> None:
    tenancy, source = migrated
    copy = tenancy.clone_tenant(source, source + "_copy", domains=[source.replace("_", "-") + ".c"])
    assert copy.name == source + "_copy"
    assert [d.host for d in tenancy.domains(copy)] == [source.replace("_", "-") + ".c"]
    with tenancy.connection(copy) as c:
        assert c.execute("select count(*) from notes").fetchone() == (0,)
        history = c.execute("select id from tenantkit_migrations order by id").fetchall()
    assert history == [("0001_notes",), ("0002_note_author",)]
    assert not tenancy.plan(schemas=[copy.schema], shared=False).pending
    with_rows = tenancy.clone_tenant(source, source + "_rows", data=True)
    with tenancy.connection(with_rows) as c:
        assert c.execute("select body from notes").fetchall() == [("source row",)]
        assert c.execute("select count(*) from tenantkit_migrations").fetchone() == (2,)


def test_clone_tenant_is_atomic_and_checks_its_input(migrated: tuple[Tenancy, str]) -> None:
    tenancy, source = migrated
    with pytest.raises(TenantNotFound):
        tenancy.clone_tenant(source + "_missing", source + "_x")
    with pytest.raises(InvalidSchemaName):
        tenancy.clone_tenant(source, "Bad Name")
    with pytest.raises(TenantkitError, match="public tenant"):
        tenancy.clone_tenant("public", source + "_x")
    # A bad host fails after nothing was written; a taken host fails inside the transaction.
    tenancy.add_domain(source, source.replace("_", "-") + ".taken")
    with pytest.raises(DomainExists):
        tenancy.clone_tenant(source, source + "_x", domains=[source.replace("_", "-") + ".taken"])
    assert source + "_x" not in {t.schema for t in tenancy.tenants()}
    with tenancy.admin_connection() as c:
        assert c.execute(
            "select count(*) from pg_namespace where nspname = %s", (source + "_x",)
        ).fetchone() == (0,)


#: Every policy of a schema, its table and expressions with the schema's name left out.
POLICIES = """
select c.relname, p.polname, p.polpermissive, p.polcmd,
       array(select coalesce(r.rolname, 'PUBLIC') from unnest(p.polroles) u(oid)
             left join pg_roles r on r.oid = u.oid order by 1),
       replace(pg_get_expr(p.polqual, p.polrelid), %(s)s || '.', 'S.'),
       replace(pg_get_expr(p.polwithcheck, p.polrelid), %(s)s || '.', 'S.')
from pg_policy p join pg_class c on c.oid = p.polrelid
where c.relnamespace = %(s)s::regnamespace order by 1, 2
"""
ROW_SECURITY = """
select relname, relrowsecurity, relforcerowsecurity from pg_class
where relnamespace = %(s)s::regnamespace and relkind = 'r' order by 1
"""


def test_row_level_security_and_policies_are_reproduced(
    conn: psycopg.Connection, schema_name: str, role: str
) -> None:
    """A clone has the source's policies (permissive and restrictive, per command, for roles
    and PUBLIC, USING and WITH CHECK, calling the schema's own function and reading its own
    table) and the same tables with row-level security enabled and forced; the rows copied
    with ``data`` are all there, and the policies then hold in the clone."""
    src = f"src_{uuid.uuid4().hex[:10]}"
    conn.execute(
        f"""
        create schema {src};
        create table {src}.members (name text primary key);
        create function {src}.is_member(who text) returns boolean language sql stable
            as $$ select exists (select from {src}.members m where m.name = who) $$;
        create table {src}.notes (id int primary key, owner text not null, body text);
        create policy read_own on {src}.notes for select to {role}, public
            using (owner = current_user or {src}.is_member(current_user));
        create policy write_own on {src}.notes for insert to {role}
            with check (owner = current_user);
        create policy edit_own on {src}.notes for update
            using (owner = current_user) with check (owner = current_user);
        create policy members_only on {src}.notes as restrictive for all to public
            using (exists (select from {src}.members m where m.name = owner));
        alter table {src}.notes enable row level security;
        alter table {src}.notes force row level security;
        create table {src}.logs (line text);
        alter table {src}.logs enable row level security;
        create table {src}.plain (a int);
        insert into {src}.members values ('{role}');
        insert into {src}.notes values (1, '{role}', 'mine'), (2, 'someone', 'theirs');
        grant usage on schema {src} to {role};
        grant select, insert on {src}.notes to {role};
        grant select on {src}.members to {role};
        grant execute on function {src}.is_member(text) to {role};
        """
    )
    expected = conn.execute(POLICIES, {"s": src}).fetchall()
    assert len(expected) == 4 and any("S.is_member" in str(row[5]) for row in expected)
    assert conn.execute(ROW_SECURITY, {"s": src}).fetchall() == [
        ("logs", True, False),
        ("members", False, False),
        ("notes", True, True),
        ("plain", False, False),
    ]
    clone_schema(conn, src, schema_name, data=True)
    assert conn.execute(POLICIES, {"s": schema_name}).fetchall() == expected
    assert (
        conn.execute(ROW_SECURITY, {"s": schema_name}).fetchall()
        == conn.execute(ROW_SECURITY, {"s": src}).fetchall()
    )
    # Every row was copied (the forced policies would have filtered the owner's inserts).
    assert conn.execute(f"select count(*) from {schema_name}.notes").fetchone() == (2,)
    # The policies hold in the clone, through its own function and table: the role sees its
    # own note and may not write one for someone else.
    conn.execute(f"grant usage on schema {schema_name} to {role}")
    conn.execute(f"grant select, insert on {schema_name}.notes to {role}")
    conn.execute(f"grant select on {schema_name}.members to {role}")
    conn.execute(f"grant execute on function {schema_name}.is_member(text) to {role}")
    conn.execute(f"set role {role}")
    try:
        seen = conn.execute(f"select id from {schema_name}.notes order by id").fetchall()
        assert seen == [(1,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(f"insert into {schema_name}.notes values (3, 'someone', 'forged')")
    finally:
        conn.execute("reset role")
    # Emptied in the source, the clone's own members table still decides.
    conn.execute(f"delete from {src}.members")
    conn.execute(f"set role {role}")
    try:
        assert conn.execute(f"select count(*) from {schema_name}.notes").fetchone() == (1,)
    finally:
        conn.execute("reset role")


def test_rows_hidden_by_row_level_security_are_refused(
    conn: psycopg.Connection, schema_name: str, role: str
) -> None:
    """Copying the rows of a table whose (forced) row-level security applies to the current
    role would copy only the rows its policies show: refused, the structure alone is not."""
    src = f"src_{uuid.uuid4().hex[:10]}"
    conn.execute(
        f"""
        create schema {src} authorization {role};
        create table {src}.notes (owner text);
        insert into {src}.notes values ('someone');
        alter table {src}.notes owner to {role};
        alter table {src}.notes enable row level security;
        alter table {src}.notes force row level security;
        create policy hide on {src}.notes using (false);
        grant create on database {conn.info.dbname} to {role};
        """
    )
    conn.execute(f"set role {role}")
    try:
        for rows in ("all", "present"):
            with pytest.raises(CloneError, match=r"rows hidden from the current role.*: notes"):
                clone_script(conn, src, rows=rows)  # type: ignore[arg-type]
        with pytest.raises(CloneError, match="row-level security"):
            clone_schema(conn, src, schema_name, data=True)
        clone_schema(conn, src, schema_name)  # the structure alone, policy included
        row = conn.execute(
            "select relforcerowsecurity, (select count(*) from pg_policy where polrelid = c.oid)"
            " from pg_class c where oid = %s::regclass",
            (f"{schema_name}.notes",),
        ).fetchone()
        assert row == (True, 1)
    finally:
        conn.execute("reset role")
        conn.execute(f"revoke create on database {conn.info.dbname} from {role}")
        conn.execute(f"drop schema if exists {schema_name} cascade")
