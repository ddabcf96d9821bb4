"""``tenantkit shell``: the interactive prompt through a pseudo-terminal, every backslash
command and the -c / standard input modes through the real console script, and the pure parts
(statement splitting, completion)."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import psycopg
import pyte
import pytest
from _cli_support import MIGRATIONS, cli_env, tenantkit, tenantkit_command
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from psycopg import sql

from tenantkit import Tenancy
from tenantkit.cli._shell_prompt import ShellCompleter
from tenantkit.cli._shell_session import CompletionNames
from tenantkit.cli._shell_sql import StatementBuffer, first_words, split_statements
from tenantkit.server import temporary_database


def host_of(schema: str) -> str:
    return schema.replace("_", "-") + ".example.test"


@pytest.fixture(scope="module")
def project(dsn: str) -> str:
    """The test database with the registry and the demo project's shared migrations."""
    with Tenancy(dsn, migrations=MIGRATIONS, max_size=2) as tenancy:
        tenancy.install()
        tenancy.migrate(tenants=False)
    return dsn


@pytest.fixture
def pair(project: str, schema_name: str) -> Iterator[tuple[str, str]]:
    """Two tenants built by the demo migrations (``notes``), each with one domain."""
    a, b = schema_name + "_a", schema_name + "_b"
    with Tenancy(project, migrations=MIGRATIONS, max_size=2) as tenancy:
        for schema in (a, b):
            tenancy.create_tenant(schema, domains=[host_of(schema)])
        yield a, b
        for schema in (a, b):
            tenancy.drop_tenant(schema, cascade=True)


def shell(dsn: str, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = tenantkit("shell", *args, dsn=dsn, input=input)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def ok(dsn: str, *args: str, input: str | None = None) -> str:
    code, out, err = shell(dsn, *args, input=input)
    assert (code, err) == (0, ""), out + err
    return out


def line_with(text: str, *words: str) -> str:
    """The one output line holding every word (a table row)."""
    found = [line for line in text.splitlines() if all(w in line for w in words)]
    assert len(found) == 1, f"{words} in:\n{text}"
    return found[0]


# -- statements, tenants, scripts -------------------------------------------------------------


def test_statements_get_the_search_path_the_library_sets(
    project: str, pair: tuple[str, str]
) -> None:
    a, _ = pair
    with Tenancy(project) as tenancy, tenancy.connection(a) as conn:
        row = conn.execute("show search_path").fetchone()
    assert row is not None
    show = "show search_path"
    code, out, err = shell(
        project, "--tenant", a, "-c", show, "-c", "set search_path = x", "-c", show
    )
    assert code == 0
    # The library's path, and again after a SET: each transaction gets the tenant's path.
    assert out.count(f"│ {row[0]} │") == 2
    assert err.startswith("note: the shell sets the tenant's search_path on every transaction")


def test_tenant_by_option_argument_or_host(project: str, pair: tuple[str, str]) -> None:
    a, b = pair
    query = "select current_schema()"
    assert line_with(ok(project, a, "-c", query), a)
    assert line_with(ok(project, "-t", host_of(b), "-c", query), b)
    code, _, err = shell(project, a, "--tenant", b, "-c", query)
    assert code == 2 and err.startswith("error: two tenants given")


def test_unknown_tenant_at_start_is_one_line_and_exit_3(project: str) -> None:
    code, out, err = shell(project, "--tenant", "no_such_tenant", "-c", "select 1")
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: no tenant has the schema name or host 'no_such_tenant'")
    assert "tenantkit list" in err


def test_unreachable_server_is_one_line_and_exit_5() -> None:
    result = tenantkit("shell", "-c", "select 1", dsn="host=127.0.0.1 port=1 dbname=x")
    assert result.returncode == 5
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: cannot connect to PostgreSQL")


def test_stdin_statements_span_lines_and_a_last_one_needs_no_semicolon(
    project: str, pair: tuple[str, str]
) -> None:
    a, _ = pair
    script = (
        "insert into notes (body)\n"
        "values ('one; with a semicolon'),\n"
        "       ('two');\n"
        "-- a comment line\n"
        "select body from notes\n"
        "order by id\n"
    )
    out = ok(project, a, input=script)
    assert "INSERT 0 2" in out
    assert line_with(out, "one; with a semicolon")
    assert "(2 rows)" in out


def test_several_commands_and_statements_in_order(project: str, pair: tuple[str, str]) -> None:
    a, b = pair
    out = ok(
        project,
        "-c",
        f"\\use {a}",
        "-c",
        "select 1 as first; select 2 as second",
        "-c",
        f"\\use {host_of(b)}",
        "-c",
        "select current_schema() as now_in",
    )
    assert out.index("first") < out.index("second") < out.index(f"tenant {b}")
    assert line_with(out, b, "│")


def test_sql_error_is_one_red_line_and_the_shell_goes_on(
    project: str, pair: tuple[str, str]
) -> None:
    a, _ = pair
    code, out, err = shell(project, a, input="select * from nope;\nselect 42 as answer;\n")
    assert code == 1  # a script with a failed statement says so
    assert err == (
        'ERROR: relation "nope" does not exist (SQLSTATE 42P01)\n'
        "LINE 1: select * from nope;\n"
        "                      ^\n"
    )
    assert line_with(out, "42")


def test_sql_error_shows_where_like_psql(project: str, pair: tuple[str, str]) -> None:
    # The line of the error and a caret under the spot, from the server's position (issue 16).
    a, _ = pair
    statement = "select id,\n       body,\n  nope_column\nfrom notes"
    code, _, err = shell(project, a, "-c", statement)
    assert code == 1
    assert err.splitlines() == [
        'ERROR: column "nope_column" does not exist (SQLSTATE 42703)',
        "LINE 3:   nope_column",
        "          ^",
    ]
    # A long line is cut around the spot, so the caret stays on screen.
    wide = "select " + ", ".join(f"{i} as c{i}" for i in range(40)) + ", nope_column from notes"
    _, _, err = shell(project, a, "-c", wide)
    where, caret = err.splitlines()[1:3]
    assert where.startswith("LINE 1: ...") and len(where) < 100
    assert where[caret.index("^") :].startswith("nope_column")
    # Errors without a position (a division by zero) show none.
    _, _, err = shell(project, a, "-c", "select 1/0")
    assert err.splitlines() == ["ERROR: division by zero (SQLSTATE 22012)"]


def test_csv_and_unaligned_output(project: str, pair: tuple[str, str]) -> None:
    a, _ = pair
    fill = "insert into notes (body, author) values ('a, \"b\"', 'x'), ('c|d', 'y')"
    query = "select body, author, null as missing from notes order by id"
    out = ok(project, a, "--csv", "-c", fill, "-c", query)
    assert out == 'INSERT 0 2\nbody,author,missing\n"a, ""b""",x,\nc|d,y,\n'
    out = ok(project, a, "-A", "-c", query)
    assert out == 'body|author|missing\na, "b"|x|\nc|d|y|\n(2 rows)\n'
    out = ok(project, a, "--no-align", "-F", ";", "-c", "select 1 as one, 2 as two")
    assert out == "one;two\n1;2\n(1 row)\n"
    # Backslash commands keep their tables; the format is for query results.
    assert "┃ schema" in ok(project, a, "--csv", "-c", "\\dt")


def test_stop_on_error(project: str, pair: tuple[str, str]) -> None:
    a, _ = pair
    code, out, err = shell(project, a, "--stop-on-error", "-c", "select 1/0", "-c", "select 42")
    assert code == 1
    assert "SQLSTATE 22012" in err
    assert "42" not in out


def test_quit_ends_a_script(project: str) -> None:
    out = ok(project, input="select 'before' as x;\n\\q\nselect 'after' as x;\n")
    assert "before" in out and "after" not in out


def test_explicit_transaction_commit_and_rollback(project: str, pair: tuple[str, str]) -> None:
    a, _ = pair
    script = (
        "begin;\ninsert into notes (body) values ('rolled back');\nrollback;\n"
        "begin;\ninsert into notes (body) values ('kept');\ncommit;\n"
        "begin;\nselect 1/0;\nselect 1;\ncommit;\n"
        "select body from notes;\n"
    )
    code, out, err = shell(project, a, input=script)
    assert "rolled back" not in out
    assert line_with(out, "kept")
    assert "(1 row)" in out
    assert out.count("ROLLBACK") == 2  # the rollback, and the commit of a failed transaction
    assert "SQLSTATE 25P02" in err  # statements in a failed transaction are refused
    assert code == 1


def test_a_lost_connection_is_an_error_line_and_the_next_statement_reconnects(
    project: str, pair: tuple[str, str]
) -> None:
    a, _ = pair
    script = "select pg_terminate_backend(pg_backend_pid());\nselect current_schema() as back;\n"
    code, out, err = shell(project, a, input=script)
    assert code == 1
    assert err == "FATAL: terminating connection due to administrator command (SQLSTATE 57P01)\n"
    assert line_with(out, a, "│")


def test_vacuum_copy_and_temporary_tables(project: str, pair: tuple[str, str]) -> None:
    a, _ = pair
    script = (
        "insert into notes (body) values ('x');\n"
        "vacuum analyze notes;\n"
        "copy (select body from notes) to stdout with (format csv, header);\n"
        "create temp table scratch as select 1 as n;\n"
        "select n from scratch;\n"
    )
    out = ok(project, a, input=script)
    assert "VACUUM" in out
    assert "body\nx\n" in out
    assert "(1 row)" in out  # the temporary table lives as long as the shell stays in a


def test_copy_from_stdin_is_refused_clearly(project: str) -> None:
    code, _, err = shell(project, "-c", "copy plans from stdin")
    assert code == 1
    assert err.startswith("error: COPY FROM STDIN is not supported")


def test_unknown_command(project: str) -> None:
    code, _, err = shell(project, "-c", "\\nope")
    assert code == 1
    assert err == "error: unknown command \\nope; \\? lists the commands\n"


# -- backslash commands -----------------------------------------------------------------------


def test_use_switches_and_public_goes_back(project: str, pair: tuple[str, str]) -> None:
    a, b = pair
    script = (
        f"\\use {a}\nselect current_schema() as s;\n"
        "\\use no_such_tenant\nselect current_schema() as s;\n"
        f"\\c {host_of(b)}\nselect current_schema() as s;\n"
        "\\public\nselect current_schema() as s;\n"
    )
    code, out, err = shell(project, input=script)
    assert code == 1
    assert err == (
        "error: no tenant has the schema name or host 'no_such_tenant'; \\tenants lists them\n"
    )
    assert f"now working in tenant {a}; search_path: {a}, public, pg_temp" in out
    assert f"now working in tenant {b}" in out
    assert "now working in the shared schema (no tenant); search_path: public, pg_temp" in out
    schemas = re.findall(r"│ (\S+) +│", out)
    assert schemas == [a, a, b, "public"]  # the unknown tenant left the shell in a


def test_tenants_lists_domains_and_state(project: str, pair: tuple[str, str]) -> None:
    a, b = pair
    out = ok(project, a, "-c", "\\tenants")
    assert line_with(out, f" {a} ", "active", host_of(a) + "*")
    assert line_with(out, f" {b} ", "active", host_of(b) + "*")
    assert f"current: {a})" in out


def test_dt_lists_tenant_and_shared_tables_with_estimates(
    project: str, pair: tuple[str, str]
) -> None:
    a, _ = pair
    # Rows and ANALYZE in one transaction: the estimate is exact at once.
    script = (
        "begin;\ninsert into notes (body) select 'n' from generate_series(1, 5);\n"
        "analyze notes;\ncommit;\n\\dt\n\\dt not*\n"
    )
    out = ok(project, a, input=script)
    notes = [line for line in out.splitlines() if f" {a} " in line and " notes " in line]
    assert len(notes) == 2  # \dt and \dt not*
    assert re.search(r"│ +table +│ +5 │ +\d+ kB │", notes[0]), notes[0]
    assert line_with(out, " public ", " plans ", "table")
    assert "(1 relation;" in out


def test_dt_leaves_tenantkits_own_tables_out_unless_asked(
    project: str, pair: tuple[str, str]
) -> None:
    # The registry, the migration history and journal are tenantkit's (issue 16).
    a, _ = pair
    internal = ("tenantkit_migrations", "tenantkit_tenants", "tenantkit_domains")
    plain = ok(project, a, "-c", "\\dt")
    assert " notes " in plain and " plans " in plain
    assert not any(name in plain for name in internal), plain
    assert "of tenantkit's own not shown (\\dtS shows them)" in plain
    for command in ("\\dtS", "\\dt+"):
        every = ok(project, a, "-c", command)
        assert line_with(every, f" {a} ", " tenantkit_migrations ")
        assert line_with(every, " public ", " tenantkit_tenants ")
        assert "not shown" not in every
    # A pattern is an explicit request: it may name them.
    assert line_with(ok(project, a, "-c", "\\dt tenantkit_t*"), " tenantkit_tenants ")


def test_d_describes_columns_indexes_constraints_and_foreign_keys(
    project: str, pair: tuple[str, str]
) -> None:
    a, _ = pair
    script = (
        "create table tags (id int primary key, note_id bigint references notes (id), "
        "label text not null check (label <> ''));\n"
        "\\d notes\n\\d tags\n\\d public.plans\n\\d nope\n"
    )
    code, out, err = shell(project, a, input=script)
    assert code == 1 and err == (f"error: no table 'nope' in {a}, public; \\dt lists the tables\n")
    assert f"Table {a}.notes" in out
    assert line_with(out, " created ", "timestamp with time zone", "not null", "now()")
    assert line_with(out, " author ", "text", "not null", "'demo'::text")
    assert '    "notes_pkey" PRIMARY KEY, btree (id)' in out
    assert '    "notes_created_idx" btree (created)' in out
    assert 'Referenced by:\n    TABLE "tags" CONSTRAINT "tags_note_id_fkey" FOREIGN KEY ' in out
    assert f"Table {a}.tags" in out
    assert "Check constraints:\n    \"tags_label_check\" CHECK (label <> ''::text)" in out
    assert (
        'Foreign-key constraints:\n    "tags_note_id_fkey" FOREIGN KEY (note_id) '
        "REFERENCES notes(id)" in out
    )
    assert "Table public.plans" in out
    assert '"plans_name_key" UNIQUE CONSTRAINT, btree (name)' in out


def test_sizes_lists_every_tenant_largest_first(project: str, pair: tuple[str, str]) -> None:
    a, b = pair
    fill = "insert into notes (body) select repeat('x', 500) from generate_series(1, 2000)"
    out = ok(project, b, "-c", fill, "-c", "\\sizes")
    assert out.index(f" {b} ") < out.index(f" {a} ")
    assert line_with(out, " public (shared) ")
    big = line_with(out, f" {b} ")
    assert re.search(r"│ +2 │ +\d+ │ +\d+ (kB|MB) │", big), big
    assert "in all, shared schema included" in out


def test_diff_shows_a_column_added_to_one_tenant(project: str, pair: tuple[str, str]) -> None:
    a, b = pair
    out = ok(
        project,
        "-c",
        f"\\diff {a} {b}",
        "-c",
        f"\\use {b}",
        "-c",
        "alter table notes add column extra int default 7",
        "-c",
        f"\\diff {a} {host_of(b)}",
        "-c",
        f"\\diff {a}",  # one name: the current tenant and it
    )
    first, rest = out.split("ALTER TABLE\n")
    assert first.startswith(f"{a} and {b} are identical (")
    both, inside = rest.split(f"(1 difference between {a} and {b})\n")
    row = line_with(both, "column notes.extra")
    assert f"only in {b}" in row and "integer default 7" in row
    assert f"only in {b}" in line_with(inside, "column notes.extra")
    assert inside.endswith(f"(1 difference between {b} and {a})\n")


def test_drift_against_a_reference_tenant(project: str, pair: tuple[str, str]) -> None:
    a, b = pair
    out = ok(
        project,
        "-c",
        f"\\use {b}",
        "-c",
        "create index notes_body_idx on notes (body)",
        "-c",
        f"\\drift {a}",
    )
    assert line_with(out, f" {b} ", "index notes_body_idx", "extra")
    assert re.search(rf"\d+ of \d+ schemas differ from {a}\.", out)
    assert f" {a} " not in out  # the reference is not compared with itself

    code, _, err = shell(project, "-c", "\\drift")
    assert code == 1
    assert err.startswith("error: \\drift needs a reference: name a tenant")
    assert "--migrations DIR" in err


def test_drift_against_the_migrations_template(server_conninfo: str) -> None:
    # A database of its own: the template \drift builds would change how other tests'
    # tenants get created.
    with (
        temporary_database(server_conninfo, prefix="tk_shell_drift") as dsn,
        Tenancy(dsn, migrations=MIGRATIONS, max_size=2) as tenancy,
    ):
        tenancy.install()
        tenancy.migrate(tenants=False)
        for schema in ("same", "changed"):
            tenancy.create_tenant(schema)
        out = ok(
            dsn,
            "--migrations",
            MIGRATIONS,
            "-c",
            "\\drift",
            "-c",
            "\\use changed",
            "-c",
            "alter table notes drop column author",
            "-c",
            "\\drift",
        )
    first, second = out.split("ALTER TABLE\n")
    assert first.startswith("No drift: 2 schemas match _tenantkit_template_")
    assert line_with(second, " changed ", "column notes.author", "missing")
    assert "1 of 2 schemas differ from _tenantkit_template_" in second


def test_plan_needs_and_uses_the_migrations(project: str, pair: tuple[str, str]) -> None:
    out = ok(project, "--migrations", MIGRATIONS, "-c", "\\plan")
    assert out.startswith("Nothing to migrate (")
    code, _, err = shell(project, "-c", "\\plan")
    assert code == 1 and "start the shell with --migrations DIR" in err


def test_plan_says_which_schemas_are_ahead_of_the_migrations(
    project: str, pair: tuple[str, str], tmp_path: Path
) -> None:
    # The code is older than the database: planning alone saw nothing pending (issue 16).
    older = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, older)
    (older / "tenant" / "0002_note_author.sql").unlink()
    out = ok(project, "--migrations", str(older), "-c", "\\plan")
    assert not out.startswith("Nothing to migrate")
    for schema in pair:
        assert line_with(out, f" {schema} ", "0002_note_author")
    assert "ahead of the migrations directory: the code is older than the database" in out


def test_who_lists_sessions_under_the_tenant_they_hold_locks_in(
    project: str, pair: tuple[str, str]
) -> None:
    a, b = pair
    with (
        psycopg.connect(project, application_name="who-busy") as busy,
        psycopg.connect(project, application_name="who-idle", autocommit=True) as idle,
    ):
        busy.execute(sql.SQL("select count(*) from {}.notes").format(sql.Identifier(b)))
        out = ok(project, a, "-c", "\\who")
        busy_row = line_with(out, f" {busy.info.backend_pid} ")
        assert busy_row.startswith(f"│ {b} ")
        assert "who-busy" in busy_row and "idle in transaction" in busy_row
        assert "select count(*) from" in busy_row
        idle_row = line_with(out, f" {idle.info.backend_pid} ")
        assert idle_row.startswith("│ (no tenant) ") and "who-idle" in idle_row
        assert "tenantkit shell" not in out  # the shell's own connections are left out
        assert re.search(rf"\d+ in {b}", out)


def test_help_lists_every_command(project: str) -> None:
    out = ok(project, "-c", "\\?", "-c", "\\help who")
    for command in (
        "\\use, \\c",
        "\\public",
        "\\tenants",
        "\\dt",
        "\\dtS, \\dt+",
        "\\d ",
        "\\sizes",
        "\\diff",
        "\\drift",
        "\\plan",
        "\\who",
        "\\conninfo",
        "\\timing",
        "\\help, \\?",
        "\\q, \\quit",
    ):
        assert command in out, command
    # \help who explains how sessions are attributed to tenants.
    assert "idle sessions belong to no tenant" in " ".join(out.split("\\who\n    ")[-1].split())


def test_conninfo_and_timing(project: str, pair: tuple[str, str]) -> None:
    a, _ = pair
    out = ok(project, a, "-c", "\\conninfo", "-c", "\\timing on", "-c", "select 1")
    assert f"tenant {a}; search_path: {a}, public, pg_temp" in out
    assert re.search(r"Time: \d+\.\d{3} ms", out)


# -- pure parts -------------------------------------------------------------------------------


def test_statement_splitting_respects_quotes_comments_and_bodies() -> None:
    statements, rest = split_statements(
        "select ';' as a; select $$;$$, $x$ ; $x$; select \"a;b\" from t /* ; */; select (1;"
    )
    assert statements == [
        "select ';' as a;",
        "select $$;$$, $x$ ; $x$;",
        'select "a;b" from t /* ; */;',
    ]
    assert rest == " select (1;"
    buffer = StatementBuffer()
    assert buffer.feed("create function f() returns int as $$") == []
    assert buffer.pending
    assert buffer.feed("begin; return 1;") == []
    assert buffer.feed("end $$ language plpgsql;") != []
    assert not buffer.pending
    assert buffer.feed("-- only a comment") == [] and not buffer.pending
    assert buffer.feed("select E'\\';'") == [] and buffer.pending
    assert buffer.flush() == "select E'\\';'"
    assert first_words("/* c */ -- d\n  BEGIN isolation level", 2) == ["begin", "isolation"]


def complete(text: str, names: CompletionNames) -> list[str]:
    completer = ShellCompleter(lambda: names)
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]


def test_completion_of_commands_tenants_and_tables() -> None:
    names = CompletionNames(
        tenants=("public", "acme", "acorn"),
        hosts=("acme.example.com",),
        tables=("notes", "plans"),
        columns=("body", "author"),
    )
    assert set(complete("\\d", names)) == {
        "\\d",
        "\\dt",
        "\\dtS",
        "\\dt+",
        "\\diff",
        "\\drift",
    }
    assert complete("\\use ac", names) == ["acme", "acorn", "acme.example.com"]
    assert complete("\\diff acme ac", names) == ["acme", "acorn"]  # hosts only for \use
    assert complete("\\d no", names) == ["notes"]
    assert complete("select * from n", names) == ["notes"]
    assert complete("select * from ", names) == ["notes", "plans"]
    assert complete("select ", names) == []
    assert complete("SELECT * FROM plans JOIN n", names) == ["notes"]
    assert complete("SEL", names) == ["SELECT"]
    assert complete("select au", names) == ["author"]
    assert complete("\\tenants x", names) == []


# -- the interactive prompt through a pseudo-terminal -----------------------------------------


class Terminal:
    """A child process on a pseudo-terminal, its screen rendered by pyte."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int = 50, cols: int = 140):
        self.child = pexpect.spawn(args[0], args[1:], env=env, dimensions=(rows, cols))
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    def wait(self, check: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            if check(self.text):
                return self.text
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched; it shows:\n{self.text}")
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.1))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                if check(self.text):
                    return self.text
                raise AssertionError(f"the shell ended; its screen:\n{self.text}") from None

    def prompt(self, prompt: str, timeout: float = 30) -> str:
        """Wait until the last screen line is exactly ``prompt`` (stripped): ready for input."""
        return self.wait(lambda t: t.splitlines()[-1:] == [prompt.rstrip()], timeout)

    def type(self, text: str) -> None:
        self.child.send(text)

    def enter(self, line: str) -> None:
        """Type ``line``, wait for its echo (so the screen shows it, not an older prompt),
        then press Enter."""
        self.child.send(line)
        self.wait(lambda t: t.splitlines()[-1].endswith(line.rstrip()))
        self.child.send("\r")


@pytest.fixture
def terminal(project: str, tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []
    env = cli_env(
        {
            "TERM": "xterm",
            "COLUMNS": "140",
            "LINES": "50",
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "PROMPT_TOOLKIT_NO_CPR": "1",  # pyte answers no cursor position requests
        }
    )

    def start(*args: str) -> Terminal:
        term = Terminal([*tenantkit_command(), "--dsn", project, "shell", *args], env)
        started.append(term)
        return term

    yield start
    for term in started:
        term.child.close(force=True)


def test_interactive_prompt_switches_tenants_runs_sql_and_survives_errors(
    terminal: Callable[..., Terminal], pair: tuple[str, str]
) -> None:
    a, b = pair
    term = terminal(a)
    screen = term.prompt(f"{a}=>")
    assert f"working in tenant {a}" in screen

    term.enter("insert into notes (body) values ('typed at the prompt');")
    term.wait(lambda t: "INSERT 0 1" in t)
    term.enter("select body")
    term.prompt(f"{a}->")  # a statement continues over lines
    term.enter("from notes;")
    screen = term.prompt(f"{a}=>")
    assert "typed at the prompt" in screen and "(1 row)" in screen

    term.enter(f"\\use {b}")
    screen = term.prompt(f"{b}=>")
    assert f"now working in tenant {b}; search_path: {b}, public, pg_temp" in screen
    term.enter("select count(*) as empty_in_b from notes;")
    screen = term.prompt(f"{b}=>")
    assert re.search(r"│ +0 │", screen)

    term.enter("select * from nope;")
    screen = term.prompt(f"{b}=>")
    assert 'ERROR: relation "nope" does not exist (SQLSTATE 42P01)' in screen

    term.enter("\\use no_such_tenant")
    screen = term.prompt(f"{b}=>")
    assert "error: no tenant has the schema name or host 'no_such_tenant'" in screen

    term.enter("\\public")
    term.prompt("public=>")
    term.enter("begin;")
    term.prompt("public=*>")
    term.enter("rollback;")
    term.prompt("public=>")
    term.enter("\\q")
    term.child.expect(pexpect.EOF, timeout=30)
    term.child.close()
    assert term.child.exitstatus == 0


def test_interactive_completion_history_and_ctrl_c(
    terminal: Callable[..., Terminal], pair: tuple[str, str], tmp_path: Path
) -> None:
    a, b = pair
    term = terminal()
    term.prompt("public=>")
    term.type(f"\\use {b[:-1]}")
    term.type("\t")  # both tenants match: the menu shows them
    term.wait(lambda t: a in t and b in t)
    term.type("\t")  # a second Tab takes the first
    term.wait(lambda t: f"\\use {a}" in t)
    term.enter("")
    term.prompt(f"{a}=>")

    term.type("select * from no\t")
    term.wait(lambda t: "select * from notes" in t)
    term.enter(";")
    term.prompt(f"{a}=>")

    term.enter("select 1")
    term.prompt(f"{a}->")
    term.type("\x03")  # Ctrl-C drops the unfinished statement
    term.prompt(f"{a}=>")
    term.type("\x04")  # Ctrl-D quits
    term.child.expect(pexpect.EOF, timeout=30)
    term.child.close()
    assert term.child.exitstatus == 0

    history = (tmp_path / "state" / "tenantkit" / "shell_history").read_text()
    assert f"+\\use {a}\n" in history
    assert "+select * from notes;\n" in history
    assert os.path.getsize(tmp_path / "state" / "tenantkit" / "shell_history") > 0
