"""Tenant commands (init, create, list, show, rename, drop, domains, clone) through the real
``tenantkit`` console script against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from _cli_support import MIGRATIONS, tenantkit
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


def test_drop_asks_and_does_nothing_without_a_yes(dsn: str, tenant_schema: str) -> None:
    refused = tenantkit("drop", tenant_schema, dsn=dsn, input="n\n")
    assert refused.returncode == 1
    assert f"Drop tenant {tenant_schema} and all its data" in refused.stderr
    assert "not dropped" in refused.stderr
    assert tenant_schema in listed(dsn)

    assert f"dropped tenant {tenant_schema}" in ok("drop", tenant_schema, dsn=dsn, input="y\n")
    assert tenant_schema not in listed(dsn)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from pg_namespace where nspname = %s", (tenant_schema,)
        ).fetchone()
        assert row == (0,)


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
    ok("create", other, dsn=dsn)
    result = tenantkit("domains", "add", other, host_of(tenant_schema), dsn=dsn)
    assert result.returncode == 4
    assert host_of(tenant_schema) in result.stderr
    ok("drop", other, "--yes", dsn=dsn)


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
    out = ok("create", "--name", f"Ünïcode Café, {suffix.upper()}", dsn=installed)
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
