"""tenantkit.introspection.isolation: cross-schema references and canary rows, with negative
controls.

(Not test_isolation.py: that basename is the plugin's, in tests/pytest_pgtenants.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tenantkit.introspection.isolation import (
    CanaryLeak,
    IsolationReport,
    SchemaReference,
    check_isolation,
    find_cross_schema_references,
)

TABLES = """
create table {s}.items (id bigint generated always as identity primary key, name text not null);
create table {s}.tags (id serial primary key, label varchar(20) not null, at date not null);
"""


@pytest.fixture
def tenants(conn: psycopg.Connection[Any], schema_name: str) -> Iterator[tuple[str, str]]:
    """Two tenant schemas with the same two tables, dropped afterwards."""
    a, b = f"{schema_name}_a", f"{schema_name}_b"
    for schema in (a, b):
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        conn.execute(TABLES.format(s=sql.Identifier(schema).as_string(conn)))  # type: ignore[arg-type]
    try:
        yield a, b
    finally:
        for schema in (a, b):
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))


def _connect_factory(dsn: str, override: str | None = None) -> Any:
    """``connect(schema)`` the way an application binds a tenant; ``override`` ignores the
    schema asked for (a broken data layer: the negative control)."""

    @contextlib.contextmanager
    def connect(schema: str) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(dsn) as conn:
            path = sql.SQL("set search_path to {}, public").format(
                sql.Identifier(override or schema)
            )
            conn.execute(path)
            conn.commit()
            yield conn
            conn.commit()

    return connect


def _count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(
        sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_isolated_tenants_pass_and_canaries_are_removed(
    conn: psycopg.Connection[Any], dsn: str, tenants: tuple[str, str]
) -> None:
    report = check_isolation(conn, tenants, _connect_factory(dsn))
    assert isinstance(report, IsolationReport)
    assert report.ok, report.problems
    assert report.problems == ()
    assert report.schemas == tuple(sorted(tenants))
    # One canary per table per writer: 2 tables x 2 tenants.
    assert report.canaries == 4
    assert report.skipped_tables == ()
    for schema in tenants:
        assert _count(conn, schema, "items") == 0
        assert _count(conn, schema, "tags") == 0


def test_negative_control_a_data_layer_ignoring_the_tenant_leaks(
    conn: psycopg.Connection[Any], dsn: str, tenants: tuple[str, str]
) -> None:
    a, b = tenants
    report = check_isolation(conn, tenants, _connect_factory(dsn, override=a))
    assert not report.ok
    assert CanaryLeak(table="items", writer=a, reader=b, rows=1) in report.leaks
    assert CanaryLeak(table="tags", writer=a, reader=b, rows=1) in report.leaks
    assert (
        f"table items: a canary row written through tenant {a}'s connection is visible "
        f"through tenant {b}'s connection ({b}.items gained 1 row(s))"
    ) in report.problems
    # The canaries are gone even when they leaked.
    assert _count(conn, a, "items") == 0


def test_cross_schema_references_of_every_kind(
    conn: psycopg.Connection[Any], dsn: str, tenants: tuple[str, str]
) -> None:
    a, b = tenants
    qa, qb = (sql.Identifier(s).as_string(conn) for s in tenants)
    for statement in [
        f"create view {qb}.leak as select * from {qa}.items",
        f"alter table {qb}.items add column ref bigint references {qa}.items (id)",
        f"create sequence {qa}.counter",
        f"alter table {qb}.tags add column n bigint default nextval('{qa}.counter')",
        f"create function {qa}.touch() returns trigger language plpgsql"
        " as $$ begin return new; end $$",
        f"create trigger touch before insert on {qb}.items"
        f" for each row execute function {qa}.touch()",
        f"create function {qb}.peek() returns bigint language sql"
        f" as $$ select count(*) from {qa}.tags $$",
    ]:
        conn.execute(statement)  # type: ignore[arg-type]
    found = find_cross_schema_references(conn, tenants)
    messages = [r.message for r in found]
    assert messages == sorted(messages)
    for expected in [
        f"view on {b}.leak references {a}.items",
        f"foreign key items_ref_fkey on {b}.items references {a}.items",
        f"default of column n on {b}.tags references {a}.counter",
        f"trigger touch calls function touch on {b}.items references {a}.touch()",
        f"function {b}.peek() body references schema {a}",
    ]:
        assert expected in messages, (expected, messages)
    kinds = {r.kind for r in found}
    assert kinds == {
        "view",
        "foreign key",
        "column default",
        "trigger",
        "function body",
    }
    body = next(r for r in found if r.kind == "function body")
    assert body == SchemaReference(kind="function body", schema=b, name="peek", target_schema=a)
    assert str(body) == body.message
    report = check_isolation(conn, tenants, _connect_factory(dsn), canaries=False)
    assert not report.ok
    assert report.canaries == 0
    assert report.references == tuple(found)


def test_references_to_schemas_outside_the_set_are_allowed(
    conn: psycopg.Connection[Any], tenants: tuple[str, str], schema_name: str
) -> None:
    shared = f"{schema_name}_shared"
    ident = sql.Identifier(shared)
    conn.execute(sql.SQL("create schema {}").format(ident))
    try:
        conn.execute(sql.SQL("create table {}.plans (id int primary key)").format(ident))
        for tenant in tenants:
            conn.execute(
                sql.SQL("alter table {}.items add column plan int references {}.plans").format(
                    sql.Identifier(tenant), ident
                )
            )
        assert find_cross_schema_references(conn, tenants) == []
        # The same reference between two tenants of the set is a problem.
        assert len(find_cross_schema_references(conn, [*tenants, shared])) == 2
    finally:
        conn.execute(sql.SQL("drop schema {} cascade").format(ident))


def test_tables_without_a_possible_canary_are_reported_as_skipped(
    conn: psycopg.Connection[Any], dsn: str, tenants: tuple[str, str]
) -> None:
    for schema in tenants:
        conn.execute(
            sql.SQL("create table {}.shapes (p point not null)").format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL("create table {}.picky (n int not null check (n < 0))").format(
                sql.Identifier(schema)
            )
        )
    report = check_isolation(conn, tenants, _connect_factory(dsn))
    assert report.ok, report.problems
    a, b = sorted(tenants)
    # point: no value to invent; picky: the random positive value breaks its check constraint.
    assert set(report.skipped_tables) == {f"{a}.shapes", f"{b}.shapes", f"{a}.picky", f"{b}.picky"}
    assert report.canaries == 4


def test_one_schema_needs_no_canaries(
    conn: psycopg.Connection[Any], dsn: str, tenants: tuple[str, str]
) -> None:
    report = check_isolation(conn, tenants[:1], _connect_factory(dsn))
    assert report.ok
    assert report.canaries == 0
    assert report.schemas == (tenants[0],)


def test_rules_and_policies_across_tenants_are_references(
    conn: psycopg.Connection[Any], dsn: str, tenants: tuple[str, str]
) -> None:
    """A rule on b's table writing into a's (it was reported as a "view"), and a row level
    security policy of b reading a's table, are cross-tenant references, named as such."""
    a, b = tenants
    qa, qb = (sql.Identifier(s).as_string(conn) for s in tenants)
    for statement in [
        f"create rule copy as on insert to {qb}.items"
        f" do also insert into {qa}.items (name) values (new.name)",
        f"create policy peek on {qb}.tags using (exists (select from {qa}.tags))",
    ]:
        conn.execute(statement)  # type: ignore[arg-type]
    found = find_cross_schema_references(conn, tenants)
    assert [r.message for r in found] == [
        f"row level security policy peek on {b}.tags references {a}.tags",
        f"rule copy on {b}.items references {a}.items",
    ]
    assert {(r.kind, r.detail) for r in found} == {("rule", "copy"), ("policy", "peek")}
    report = check_isolation(conn, tenants, _connect_factory(dsn), canaries=False)
    assert not report.ok
