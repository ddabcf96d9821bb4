"""Tenant commands (init, create, list, show, rename, drop, domains, clone) through the real
``tenantkit`` console script against a real database."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pexpect
import psycopg
import pytest
from _cli_support import MIGRATIONS, cli_env, tenantkit, tenantkit_command
from psycopg import sql


def host_of(schema: str) -> str:
    """The test host of a tenant (hostnames allow '-' where schema names have '_')."""
    return schema.replace("_", "-") + ".example.test"


def ok(*args: str, dsn: str, input: str | None = None) -> str:
    """Run a command that must succeed; its standard output."""
    result = tenantkit(*args, dsn=dsn, input=input)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def listed(dsn: str) -> dict[str, dict[str, object]]:
    return {t["schema"]: t for t in json.loads(ok("list", "--json", dsn=dsn))}


@pytest.fixture
def installed(dsn: str) -> str:
    """The test database with the registry and the demo project's shared migrations."""
    ok("init", dsn=dsn)
    ok("migrate", "--migrations", MIGRATIONS, "--shared", dsn=dsn)
    return dsn


@pytest.fixture
def tenant_schema(installed: str, schema_name: str) -> str:
    """A tenant created through the CLI with the demo migrations, one domain and metadata."""
    out = ok(
        "create",
        schema_name,
        "--name",
        "CLI Test",
        "--domain",
        host_of(schema_name),
        "--meta",
        "plan=pro",
        "--migrations",
        MIGRATIONS,
        dsn=installed,
    )
    # By migrations, or by the template when an earlier test of this process left one.
    assert f"created tenant {schema_name} by " in out
    assert out.rstrip().endswith(f" on {host_of(schema_name)}")
    return schema_name


def test_init_is_safe_to_repeat(dsn: str) -> None:
    assert "registry installed in schema public" in ok("init", dsn=dsn)
    assert "registry installed" in ok("init", dsn=dsn)


def test_create_then_list_shows_domains_head_size_and_state(dsn: str, tenant_schema: str) -> None:
    mine = listed(dsn)[tenant_schema]
    assert mine["name"] == "CLI Test"
    assert mine["domains"] == [host_of(tenant_schema)]
    assert mine["primary_domain"] == host_of(tenant_schema)
    assert mine["metadata"] == {"plan": "pro"}
    assert mine["state"] == "active"
    assert mine["head"] == "0002_note_author"
    assert mine["migrations"] == 2
    assert isinstance(mine["size"], int) and mine["size"] > 0

    table = ok("list", dsn=dsn)
    line = next(row for row in table.splitlines() if row.split()[:1] == [tenant_schema])
    assert "CLI Test" in line and "0002_note_author" in line and "active" in line
    assert host_of(tenant_schema) in line


def test_show_by_schema_or_host(dsn: str, tenant_schema: str) -> None:
    by_host = json.loads(
        ok("show", host_of(tenant_schema), "--migrations", MIGRATIONS, "--json", dsn=dsn)
    )
    assert by_host["schema"] == tenant_schema
    assert by_host["domains"] == [{"host": host_of(tenant_schema), "primary": True}]
    assert by_host["tables"] == 1  # notes; tenantkit's history table is not counted
    assert by_host["pending"] == []
    text = ok("show", tenant_schema, dsn=dsn)
    assert f"{host_of(tenant_schema)} (primary)" in text
    assert "2 applied, head 0002_note_author" in text
    assert "meta plan" in text and "pro" in text


def test_rename_moves_data_and_domains(dsn: str, tenant_schema: str) -> None:
    ok("run", tenant_schema, "--", "insert into notes (body) values ('kept')", dsn=dsn)
    new = tenant_schema + "_r"
    assert f"renamed tenant {tenant_schema} to {new}" in ok("rename", tenant_schema, new, dsn=dsn)
    tenants = listed(dsn)
    assert tenant_schema not in tenants
    assert tenants[new]["domains"] == [host_of(tenant_schema)]
    assert tenants[new]["head"] == "0002_note_author"  # the history moved too
    with psycopg.connect(dsn) as conn:
        query = sql.SQL("select body from {}").format(sql.Identifier(new, "notes"))
        assert conn.execute(query).fetchall() == [("kept",)]
    ok("drop", new, "--yes", dsn=dsn)


@contextmanager
def dropped_afterwards(dsn: str, *schemas: str) -> Iterator[None]:
    """Drop these tenants at the end, whatever happens (an empty tenant left behind would
    fail other tests' ``run --all``)."""
    try:
        yield
    finally:
        for schema in schemas:
            tenantkit("drop", schema, "--yes", dsn=dsn)


def schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select count(*) from pg_namespace where nspname = %s", (schema,))
        return row.fetchone() == (1,)


def test_drop_without_a_terminal_needs_yes(dsn: str, tenant_schema: str) -> None:
    # A piped "y" is not a person at a terminal: nothing is dropped (issue 16).
    refused = tenantkit("drop", tenant_schema, dsn=dsn, input="y\n")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr and "not a terminal" in refused.stderr
    assert refused.stderr.startswith("error: not dropping tenant")
    assert tenant_schema in listed(dsn)
    assert schema_exists(dsn, tenant_schema)


def confirm_on_a_terminal(dsn: str, tenant: str, answer: str) -> tuple[int, str]:
    """Run ``tenantkit drop TENANT`` on a pseudo-terminal, answer its question."""
    command = tenantkit_command()
    child = pexpect.spawn(
        command[0], [*command[1:], "--dsn", dsn, "drop", tenant], env=cli_env(), timeout=60
    )
    child.expect(r"Drop tenant \S+ and all its data \(.+\)\? \[y/N\]: ")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus or 0), (child.before or b"").decode()


def test_drop_asks_on_a_terminal_and_defaults_to_no(dsn: str, tenant_schema: str) -> None:
    code, out = confirm_on_a_terminal(dsn, tenant_schema, "")
    assert code == 1
    assert "not dropped" in out
    assert schema_exists(dsn, tenant_schema)

    code, out = confirm_on_a_terminal(dsn, host_of(tenant_schema), "y")
    assert code == 0, out
    assert f"dropped tenant {tenant_schema}" in out
    assert tenant_schema not in listed(dsn)
    assert not schema_exists(dsn, tenant_schema)


def test_drop_by_host_with_yes(dsn: str, tenant_schema: str) -> None:
    ok("drop", host_of(tenant_schema), "-y", dsn=dsn)
    assert tenant_schema not in listed(dsn)


def test_domains_add_primary_list_remove(dsn: str, tenant_schema: str) -> None:
    www = "www." + host_of(tenant_schema)
    out = ok("domains", "add", tenant_schema, www.upper() + ":8080", dsn=dsn)
    assert f"{www} -> {tenant_schema}" in out  # normalised: lower case, no port
    assert "primary" not in out
    out = ok("domains", "primary", www, dsn=dsn)
    assert f"{www} is now the primary domain of {tenant_schema}" in out
    mine = json.loads(ok("domains", "list", tenant_schema, "--json", dsn=dsn))
    assert mine[0] == {"host": www, "schema": tenant_schema, "primary": True}
    assert {"host": host_of(tenant_schema), "schema": tenant_schema, "primary": False} in mine
    assert listed(dsn)[tenant_schema]["domains"][0] == www  # the primary one first
    assert listed(dsn)[tenant_schema]["primary_domain"] == www
    shown = json.loads(ok("show", tenant_schema, "--json", dsn=dsn))["domains"]
    assert shown == [
        {"host": www, "primary": True},
        {"host": host_of(tenant_schema), "primary": False},
    ]
    assert www in ok("domains", "list", dsn=dsn)

    ok("domains", "remove", www, dsn=dsn)
    hosts = [d["host"] for d in json.loads(ok("domains", "list", tenant_schema, "--json", dsn=dsn))]
    assert hosts == [host_of(tenant_schema)]


def test_domain_taken_by_another_tenant_is_a_conflict(dsn: str, tenant_schema: str) -> None:
    other = tenant_schema + "_o"
    with dropped_afterwards(dsn, other):
        ok("create", other, "--empty", dsn=dsn)
        result = tenantkit("domains", "add", other, host_of(tenant_schema), dsn=dsn)
    assert result.returncode == 4
    assert host_of(tenant_schema) in result.stderr
    # In CLI words, not the Python API's (issue 16: "remove_domain() it first").
    assert f"`tenantkit domains remove {host_of(tenant_schema)}`" in result.stderr
    assert "remove_domain()" not in result.stderr


def test_clone_copies_structure_and_history_and_rows_only_with_data(
    dsn: str, tenant_schema: str
) -> None:
    ok("run", tenant_schema, "--", "insert into notes (body) values ('original')", dsn=dsn)
    bare, full = tenant_schema + "_c", tenant_schema + "_d"
    out = ok("clone", tenant_schema, bare, "--domain", host_of(bare), dsn=dsn)
    assert f"created tenant {bare} from {tenant_schema} (structure)" in out
    ok("clone", host_of(tenant_schema), full, "--data", dsn=dsn)

    count = "select count(*) as n from notes"
    assert json.loads(ok("run", bare, "--json", "--", count, dsn=dsn))[0]["rows"] == [[0]]
    assert json.loads(ok("run", full, "--json", "--", count, dsn=dsn))[0]["rows"] == [[1]]
    tenants = listed(dsn)
    for copy in (bare, full):
        # Same migration state as the source: nothing pending, no drift.
        assert tenants[copy]["head"] == "0002_note_author"
        assert tenants[copy]["migrations"] == 2
    assert tenants[bare]["domains"] == [host_of(bare)]
    assert tenants[full]["domains"] == []  # domains are never copied
    plan = json.loads(ok("plan", "--migrations", MIGRATIONS, "--schema", bare, "--json", dsn=dsn))
    assert (plan["schemas"], plan["pending"]) == (1, []), plan
    drift = tenantkit("drift", "--reference", tenant_schema, "--schema", bare, dsn=dsn)
    assert drift.returncode == 0, drift.stdout + drift.stderr
    # The copy is independent of its source.
    ok("run", full, "--", "delete from notes", dsn=dsn)
    assert json.loads(ok("run", tenant_schema, "--json", "--", count, dsn=dsn))[0]["rows"] == [[1]]


def test_clone_of_an_unknown_tenant_or_onto_an_existing_one_fails_cleanly(
    dsn: str, tenant_schema: str
) -> None:
    missing = tenantkit("clone", tenant_schema + "_nope", tenant_schema + "_x", dsn=dsn)
    assert missing.returncode == 3
    assert "tenantkit list" in missing.stderr
    taken = tenantkit("clone", tenant_schema, tenant_schema, dsn=dsn)
    assert taken.returncode == 4
    assert tenant_schema + "_x" not in listed(dsn)


def test_create_derives_the_schema_name_from_the_display_name(
    installed: str, schema_name: str
) -> None:
    suffix = schema_name.removeprefix("t_")
    name = f"Ünïcode Café, {suffix.upper()}"
    out = ok("create", "--name", name, "--migrations", MIGRATIONS, dsn=installed)
    assert f"created tenant unicode_cafe_{suffix}" in out
    ok("drop", f"unicode_cafe_{suffix}", "--yes", dsn=installed)


def test_create_json_reports_the_new_tenant(installed: str, schema_name: str) -> None:
    created = json.loads(
        ok("create", schema_name, "--migrations", MIGRATIONS, "--json", dsn=installed)
    )
    assert created["schema"] == schema_name
    assert created["head"] == "0002_note_author"
    ok("drop", schema_name, "--yes", dsn=installed)


def test_the_plugin_env_var_names_the_migrations_too(installed: str) -> None:
    result = tenantkit("plan", dsn=installed, env={"PGTENANTS_MIGRATIONS": MIGRATIONS})
    assert result.returncode == 0, result.stderr
    assert "Nothing to migrate" in result.stdout


def test_demo_migrations_are_packaged() -> None:
    assert sorted(p.name for p in Path(MIGRATIONS, "tenant").iterdir()) == [
        "0001_notes.sql",
        "0002_note_author.sql",
    ]


def test_shell_completion_of_commands_and_tenant_names(dsn: str, tenant_schema: str) -> None:
    def complete(*words: str) -> list[str]:
        line = " ".join(["tenantkit", "--dsn", repr(dsn).replace('"', "'"), *words])
        env = {
            "_TENANTKIT_COMPLETE": "bash_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) + 2),
        }
        result = tenantkit(env=env)
        return [item.split(",", 1)[1] for item in result.stdout.split()]

    assert "show" in complete("sh")
    assert complete("show", tenant_schema[:-1]) == [tenant_schema]
    assert complete("domains", "add", tenant_schema) == [tenant_schema]
    assert complete("show", "no_such_prefix") == []


# -- issue 16: no empty tenants by accident; bulk creation --------------------------------


def test_create_without_migrations_is_refused_unless_empty(
    installed: str, schema_name: str
) -> None:
    refused = tenantkit("create", schema_name, dsn=installed)
    assert refused.returncode == 2
    assert "--migrations" in refused.stderr and "--empty" in refused.stderr
    assert schema_name not in listed(installed)
    assert not schema_exists(installed, schema_name)

    with dropped_afterwards(installed, schema_name):
        out = ok("create", schema_name, "--empty", dsn=installed)
        assert f"created tenant {schema_name}" in out
        shown = json.loads(ok("show", schema_name, "--json", dsn=installed))
        assert (shown["tables"], shown["migrations"]) == (0, 0)


def test_create_with_no_tenant_migrations_in_the_directory_is_refused(
    installed: str, schema_name: str, tmp_path: Path
) -> None:
    (tmp_path / "shared").mkdir()
    shutil.copy(Path(MIGRATIONS, "shared", "0001_plans.sql"), tmp_path / "shared")
    refused = tenantkit("create", schema_name, "--migrations", str(tmp_path), dsn=installed)
    assert refused.returncode == 2
    assert "no tenant migrations" in refused.stderr and "--empty" in refused.stderr
    assert schema_name not in listed(installed)


def test_create_several_tenants_at_once(installed: str, schema_name: str) -> None:
    names = [f"{schema_name}_{i}" for i in range(3)]
    out = ok("create", *names, "--migrations", MIGRATIONS, "--meta", "plan=pro", dsn=installed)
    assert "3 tenants created in" in out
    tenants = listed(installed)
    for schema in names:
        assert f"created tenant {schema} by " in out
        assert tenants[schema]["head"] == "0002_note_author"
        assert tenants[schema]["metadata"] == {"plan": "pro"}
    # --name and --domain describe one tenant.
    both = tenantkit("create", "a_x", "b_x", "--domain", "x.test", "--empty", dsn=installed)
    assert both.returncode == 2 and "one tenant" in both.stderr
    ok("drop", names[0], "--yes", dsn=installed)
    again = tenantkit("create", *names, "--migrations", MIGRATIONS, dsn=installed)
    assert again.returncode == 4  # the second exists
    assert "1 tenant created before the error" in again.stderr
    assert "--skip-existing" in again.stderr
    out = ok("create", *names, "--migrations", MIGRATIONS, "--skip-existing", dsn=installed)
    assert out.count("exists already, skipped") == 3
    existing = ok("create", names[1], "--skip-existing", "--json", "--empty", dsn=installed)
    assert json.loads(existing)["schema"] == names[1]  # shown as it is
    for schema in names:
        ok("drop", schema, "--yes", dsn=installed)


def test_create_from_file(installed: str, schema_name: str, tmp_path: Path) -> None:
    a, b, c = (f"{schema_name}_{x}" for x in "abc")
    listing = tmp_path / "tenants.txt"
    listing.write_text(
        f"# schema, then its hosts (the first is the primary one)\n"
        f"{a} {host_of(a)} WWW.{host_of(a).upper()}\n\n"
        f"{b}   # no host\n"
        f"{c} {host_of(c)}\n"
    )
    out = ok("create", "--from-file", str(listing), "--migrations", MIGRATIONS, dsn=installed)
    assert "3 tenants created in" in out
    tenants = listed(installed)
    assert tenants[a]["domains"] == [host_of(a), "www." + host_of(a)]
    assert tenants[a]["primary_domain"] == host_of(a)
    assert tenants[b]["domains"] == []
    assert tenants[c]["head"] == "0002_note_author"
    # From standard input too.
    d = f"{schema_name}_d"
    ok("create", "--from-file", "-", "--migrations", MIGRATIONS, dsn=installed, input=f"{d}\n")
    assert d in listed(installed)
    for schema in (a, b, c, d):
        ok("drop", schema, "--yes", dsn=installed)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("ok_one\nBad-Name\n", "line 2: invalid schema name"),
        ("ok_one x.test\nok_two bad host!\n", "line 2"),
        ("ok_one\nok_one\n", "line 2: tenant ok_one is listed twice (first on line 1)"),
        ("ok_one x.test\nok_two X.test\n", "line 2: host x.test is listed twice"),
        ("# nothing\n\n", "names no tenant"),
    ],
)
def test_a_bad_tenant_file_creates_nothing(
    installed: str, tmp_path: Path, content: str, expected: str
) -> None:
    listing = tmp_path / "tenants.txt"
    listing.write_text(content)
    result = tenantkit("create", "--from-file", str(listing), "--empty", dsn=installed)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "error: " in result.stderr
    assert "ok_one" not in listed(installed)


# -- issue 16: show reports migrations applied here but missing from the directory ---------


def test_show_reports_applied_migrations_missing_from_the_directory(
    dsn: str, tenant_schema: str, tmp_path: Path
) -> None:
    older = tmp_path / "migrations"  # the code as it was before 0002 was written
    shutil.copytree(MIGRATIONS, older)
    (older / "tenant" / "0002_note_author.sql").unlink()
    shown = json.loads(ok("show", tenant_schema, "--migrations", str(older), "--json", dsn=dsn))
    assert shown["unknown"] == ["0002_note_author"]
    assert shown["pending"] == []
    text = ok("show", tenant_schema, "--migrations", str(older), dsn=dsn)
    line = next(x for x in text.splitlines() if x.startswith("unknown"))
    assert "0002_note_author" in line and "older than the database" in line
    current = json.loads(ok("show", tenant_schema, "--migrations", MIGRATIONS, "--json", dsn=dsn))
    assert current["unknown"] == []


# -- issue 17: list pages and filters on the server ---------------------------------------


def test_list_filters_and_pages(installed: str, schema_name: str) -> None:
    names = [f"{schema_name}_{i}" for i in range(5)]
    with dropped_afterwards(installed, *names):
        ok("create", *names, "--empty", dsn=installed)
        list_filters_and_pages(installed, schema_name, names)


def list_filters_and_pages(installed: str, schema_name: str, names: list[str]) -> None:
    ok("domains", "add", names[3], f"shop-{schema_name[-8:]}.example.org", dsn=installed)

    def rows(*args: str) -> list[str]:
        found = json.loads(ok("list", "--json", *args, dsn=installed))
        return [t["schema"] for t in found]

    assert rows("--filter", schema_name) == names  # in creation order
    assert rows("--filter", schema_name.upper()) == names  # any case
    assert rows("--filter", f"{schema_name}_?") == names  # a pattern over the whole value
    assert rows("--filter", f"{schema_name}_[") == []  # no regex, no LIKE: plain text
    assert rows("--filter", f"shop-{schema_name[-8:]}") == [names[3]]  # by host
    assert rows("--filter", f"*{schema_name[-8:]}.example.org") == [names[3]]
    assert rows("--filter", schema_name, "--limit", "2") == names[:2]
    assert rows("--filter", schema_name, "--limit", "2", "--after", names[1]) == names[2:4]
    assert rows("--filter", schema_name, "--after", names[3]) == names[4:]
    assert rows("--filter", schema_name, "--state", "failed") == []

    page = ok("list", "--filter", schema_name, "--limit", "2", dsn=installed)
    assert f"2 of 5 tenants; next page: --limit 2 --after {names[1]}" in page
    last = ok("list", "--filter", schema_name, "--limit", "2", "--after", names[3], dsn=installed)
    assert f"1 tenant after {names[3]}" in last
    assert "No tenants match." in ok("list", "--filter", schema_name + "_zz", dsn=installed)
    unknown = tenantkit("list", "--after", schema_name + "_nope", dsn=installed)
    assert unknown.returncode == 3
