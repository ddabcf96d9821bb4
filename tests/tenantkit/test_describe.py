"""tenantkit.introspection.describe: tables with estimates and sizes, table descriptions,
schema summaries and sessions per tenant, against a real server."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tenantkit.introspection.catalog import schema_sizes
from tenantkit.introspection.describe import (
    ColumnInfo,
    describe_table,
    list_sessions,
    list_tables,
    schema_summaries,
)


@pytest.fixture
def schema(conn: psycopg.Connection, schema_name: str) -> Iterator[str]:
    """A schema with two related tables, a view, a trigger and 3 analysed rows."""
    s = sql.Identifier(schema_name)
    conn.execute(sql.SQL("create schema {}").format(s))
    with conn.transaction():
        conn.execute(sql.SQL("set local search_path = {}").format(s))
        conn.execute(
            """
            create table authors (
                id bigint generated always as identity primary key,
                email text not null unique,
                name text collate "C" default 'anon',
                name_len int generated always as (length(name)) stored,
                check (email like '%@%')
            );
            create table books (
                id serial primary key,
                author_id bigint references authors (id) on delete cascade,
                parent_id int references books (id),
                title text
            );
            create index books_title_idx on books (lower(title)) where title is not null;
            create view author_names as select name from authors;
            create function touch() returns trigger language plpgsql as
                $$ begin return new; end $$;
            create trigger books_touch before update on books
                for each row execute function touch();
            insert into authors (email) values ('a@x'), ('b@x'), ('c@x');
            analyze authors;
            """
        )
    yield schema_name
    conn.execute(sql.SQL("drop schema {} cascade").format(s))


def test_list_tables_gives_kinds_estimates_and_sizes(conn: psycopg.Connection, schema: str) -> None:
    tables = {t.name: t for t in list_tables(conn, [schema])}
    assert set(tables) == {"authors", "books", "author_names"}
    assert tables["authors"].kind == "table"
    # Rows and ANALYZE in one transaction: the planner's count is exact whatever the
    # statistics system has flushed yet.
    assert tables["authors"].rows_estimate == 3
    assert tables["authors"].size_bytes > 0
    assert tables["author_names"].kind == "view"
    assert tables["author_names"].rows_estimate is None
    assert tables["author_names"].size_bytes == 0
    assert [t.schema for t in list_tables(conn, [schema, "nope_schema"])] == [schema] * 3


def test_list_tables_orders_by_the_given_schemas(conn: psycopg.Connection, schema: str) -> None:
    names = [(t.schema, t.name) for t in list_tables(conn, ["pg_catalog", schema])]
    assert names.index(("pg_catalog", "pg_class")) < names.index((schema, "authors"))


def test_describe_table_columns(conn: psycopg.Connection, schema: str) -> None:
    d = describe_table(conn, schema, "authors")
    assert d is not None
    assert (d.schema, d.name, d.kind) == (schema, "authors", "table")
    columns = {c.name: c for c in d.columns}
    assert [c.name for c in d.columns] == ["id", "email", "name", "name_len"]
    assert columns["id"] == ColumnInfo("id", "bigint", False, None, "always", False, None)
    assert columns["email"].nullable is False
    assert columns["name"].default == "'anon'::text"
    assert columns["name"].collation == "C"
    assert columns["name_len"].generated is True
    assert columns["name_len"].default == "length(name)"


def test_describe_table_indexes_and_constraints(conn: psycopg.Connection, schema: str) -> None:
    d = describe_table(conn, schema, "authors")
    assert d is not None
    indexes = {i.name: i for i in d.indexes}
    assert indexes["authors_pkey"].is_primary
    assert indexes["authors_pkey"].constraint == "primary key"
    assert indexes["authors_pkey"].summary == "btree (id)"
    assert indexes["authors_email_key"].constraint == "unique"
    kinds = {c.kind for c in d.constraints}
    assert kinds == {"primary key", "unique", "check"}
    check = next(c for c in d.constraints if c.kind == "check")
    assert check.definition == "CHECK (email ~~ '%@%'::text)"

    books = describe_table(conn, schema, "books")
    assert books is not None
    partial = next(i for i in books.indexes if i.name == "books_title_idx")
    assert partial.summary == "btree (lower(title)) WHERE (title IS NOT NULL)"
    assert not partial.is_unique and partial.constraint is None


def test_describe_table_foreign_keys_both_ways(conn: psycopg.Connection, schema: str) -> None:
    authors = describe_table(conn, schema, "authors")
    books = describe_table(conn, schema, "books")
    assert authors is not None and books is not None
    assert authors.foreign_keys == ()
    (ref,) = authors.referenced_by
    assert ref.table == (schema, "books")
    assert ref.referenced_table == (schema, "authors")
    assert "ON DELETE CASCADE" in ref.definition
    fks = {f.name: f for f in books.foreign_keys}
    assert set(fks) == {"books_author_id_fkey", "books_parent_id_fkey"}
    # A self reference is both a foreign key and a reference to the table.
    assert [f.name for f in books.referenced_by] == ["books_parent_id_fkey"]


def test_describe_table_triggers_views_and_missing(conn: psycopg.Connection, schema: str) -> None:
    books = describe_table(conn, schema, "books")
    assert books is not None
    (trigger,) = books.triggers
    assert trigger.name == "books_touch" and trigger.enabled
    assert "BEFORE UPDATE" in trigger.definition
    view = describe_table(conn, schema, "author_names")
    assert view is not None and view.kind == "view"
    assert [c.name for c in view.columns] == ["name"]
    assert describe_table(conn, schema, "nope") is None
    assert describe_table(conn, "nope_schema", "authors") is None


def test_describe_table_names_relative_to_the_search_path(
    conn: psycopg.Connection, schema: str
) -> None:
    books = describe_table(conn, schema, "books")
    assert books is not None
    qualified = next(f for f in books.foreign_keys if f.name == "books_author_id_fkey")
    assert f"REFERENCES {schema}.authors(id)" in qualified.definition
    with conn.transaction():
        conn.execute("select set_config('search_path', %s, true)", (schema,))
        books = describe_table(conn, schema, "books")
    assert books is not None
    local = next(f for f in books.foreign_keys if f.name == "books_author_id_fkey")
    assert "REFERENCES authors(id)" in local.definition


def test_schema_summaries_largest_first(conn: psycopg.Connection, schema: str) -> None:
    small = schema + "_small"
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(small)))
    try:
        summaries = schema_summaries(conn, [small, schema, "nope_schema"])
        assert [s.schema for s in summaries] == [schema, small]
        big, empty = summaries
        assert big.tables == 2  # the view does not count
        assert big.rows_estimate == 3
        assert big.size_bytes > 0
        assert (empty.tables, empty.rows_estimate, empty.size_bytes) == (0, 0, 0)
    finally:
        conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(small)))


def test_list_sessions_attributes_lock_holders(
    dsn: str, conn: psycopg.Connection, schema: str
) -> None:
    other = schema + "_other"
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(other)))
    with (
        psycopg.connect(dsn, application_name="inspect-worker") as worker,
        psycopg.connect(dsn, application_name="inspect-idle", autocommit=True) as idle,
    ):
        worker.execute(sql.SQL("select count(*) from {}.authors").format(sql.Identifier(schema)))
        sessions = {s.pid: s for s in list_sessions(conn, [other, schema])}
        busy = sessions[worker.info.backend_pid]
        assert busy.schemas == (schema,)
        assert busy.application == "inspect-worker"
        assert busy.state == "idle in transaction"
        assert "authors" in busy.query
        assert busy.duration is not None and busy.since is not None
        assert busy.client  # an address:port or 'local'
        assert sessions[idle.info.backend_pid].schemas == ()
        assert conn.info.backend_pid not in sessions
        left_out = list_sessions(conn, [schema], exclude=[idle.info.backend_pid])
        assert idle.info.backend_pid not in {s.pid for s in left_out}
        worker.rollback()
        sessions = {s.pid: s for s in list_sessions(conn, [schema])}
        assert sessions[worker.info.backend_pid].schemas == ()
    conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(other)))


def test_schema_sizes_from_the_catalog_or_measured(conn: psycopg.Connection, schema: str) -> None:
    # ``list`` reads page counts from pg_class (one catalog read for any number of tenants);
    # ``show`` and ``drop`` measure the files of one tenant (issue 17).
    conn.execute(sql.SQL("vacuum analyze {}").format(sql.Identifier(schema, "authors")))
    estimated = schema_sizes(conn, [schema, "nope_schema"])
    exact = schema_sizes(conn, [schema, "nope_schema"], exact=True)
    assert set(estimated) == set(exact) == {schema}
    assert 0 < estimated[schema] <= exact[schema]
    # Tables, their indexes and TOAST: every page counted is a block of the main fork.
    row = conn.execute(
        "select sum(pg_relation_size(c.oid)) from pg_class c join pg_namespace n"
        " on n.oid = c.relnamespace where n.nspname = %s and c.relkind in ('r', 'i')",
        (schema,),
    ).fetchone()
    assert row is not None and estimated[schema] >= int(row[0])
