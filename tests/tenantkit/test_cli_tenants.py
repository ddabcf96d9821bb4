"""`tenantkit tenants` and `tenantkit shell` against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from tenantkit import _demo
from tenantkit.cli import main

MIGRATIONS = str(_demo.MIGRATIONS)


def host_of(schema: str) -> str:
    """The test host of a tenant (hostnames allow '-' where schema names have '_')."""
    return schema.replace("_", "-") + ".example.test"


def run(dsn: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--dsn", dsn, *args], input=input)


@pytest.fixture
def tenant_schema(dsn: str, schema_name: str) -> str:
    """A tenant created through the CLI with the demo migrations and one domain."""
    assert run(dsn, "tenants", "install").exit_code == 0
    result = run(dsn, "migrate", "--migrations", MIGRATIONS, "--shared")
    assert result.exit_code == 0, result.output
    result = run(
        dsn,
        "tenants",
        "--migrations",
        MIGRATIONS,
        "create",
        schema_name,
        "--name",
        "Shell Test",
        "--domain",
        host_of(schema_name),
        "--meta",
        "plan=pro",
    )
    assert result.exit_code == 0, result.output
    return schema_name


def test_create_list_rename_drop(dsn: str, tenant_schema: str) -> None:
    listed = json.loads(run(dsn, "tenants", "list", "--json").output)
    mine = next(t for t in listed if t["schema"] == tenant_schema)
    assert mine["name"] == "Shell Test"
    assert mine["domains"] == [host_of(tenant_schema)]
    assert mine["metadata"] == {"plan": "pro"}
    assert mine["state"] == "active"

    new = tenant_schema + "_r"
    assert run(dsn, "tenants", "rename", tenant_schema, new).exit_code == 0
    with psycopg.connect(dsn) as conn:
        # The tenant's table moved with its schema.
        assert conn.execute(f"select count(*) from {new}.notes").fetchone() == (0,)

    refused = run(dsn, "tenants", "drop", new, "--yes")
    assert refused.exit_code != 0
    assert "cascade" in refused.output.lower()
    assert run(dsn, "tenants", "drop", new, "--yes", "--cascade").exit_code == 0
    listed = json.loads(run(dsn, "tenants", "list", "--json").output)
    assert new not in {t["schema"] for t in listed}


def test_bad_schema_name_is_a_clear_error_not_a_traceback(dsn: str) -> None:
    assert run(dsn, "tenants", "install").exit_code == 0
    result = run(dsn, "tenants", "create", 'evil"; drop schema public; --')
    assert result.exit_code == 1
    assert "invalid schema name" in result.output
    assert "Traceback" not in result.output


def test_domains(dsn: str, tenant_schema: str) -> None:
    host = "www." + host_of(tenant_schema)
    result = run(dsn, "tenants", "add-domain", tenant_schema, host.upper(), "--primary")
    assert result.exit_code == 0, result.output
    assert f"{host} -> {tenant_schema} (primary)" in result.output
    listed = json.loads(run(dsn, "tenants", "list", "--json").output)
    mine = next(t for t in listed if t["schema"] == tenant_schema)
    assert mine["domains"][0] == host  # the primary one first
    assert run(dsn, "tenants", "remove-domain", host).exit_code == 0


def test_shell_sees_the_tenant_schema_first(dsn: str, tenant_schema: str) -> None:
    script = "insert into notes (body) values ('from the shell');\nselect body from notes;\n"
    result = run(dsn, "shell", tenant_schema, input=script)
    assert result.exit_code == 0, result.output
    assert "INSERT 0 1" in result.output
    assert "from the shell" in result.output
    # Shared tables stay visible after the tenant's schema.
    result = run(dsn, "shell", tenant_schema, "-c", "select name from plans order by id")
    assert "free" in result.output
    assert "(2 rows)" in result.output


def test_shell_switches_tenants_by_host_and_lists_tables(dsn: str, tenant_schema: str) -> None:
    script = f"\\c {host_of(tenant_schema)}\n\\dt\n\\d notes\n\\c\nselect 1 as one;\n\\q\n"
    result = run(dsn, "shell", input=script)
    assert result.exit_code == 0, result.output
    assert f"now working as {tenant_schema}" in result.output
    assert "notes" in result.output
    assert "author" in result.output  # \d notes shows the column added by migration 0002
    assert "now working as public" in result.output


def test_shell_reports_sql_errors_and_goes_on(dsn: str, tenant_schema: str) -> None:
    result = run(dsn, "shell", tenant_schema, input="select * from nope;\nselect 2 as two;\n")
    assert result.exit_code == 0
    assert "42P01" in result.output  # undefined_table, with its SQLSTATE
    assert "two" in result.output


def test_shell_unknown_tenant_is_a_clear_error(dsn: str, tenant_schema: str) -> None:
    result = run(dsn, "shell", "no_such_tenant")
    assert result.exit_code == 1
    assert "no_such_tenant" in result.output


def test_demo_migrations_are_packaged() -> None:
    assert sorted(p.name for p in Path(MIGRATIONS, "tenant").iterdir()) == [
        "0001_notes.sql",
        "0002_note_author.sql",
    ]


def test_create_derives_the_schema_name_from_the_display_name(dsn: str, schema_name: str) -> None:
    assert run(dsn, "tenants", "install").exit_code == 0
    suffix = schema_name.removeprefix("t_")
    result = run(dsn, "tenants", "create", "--name", f"Ünïcode Café, {suffix.upper()}")
    assert result.exit_code == 0, result.output
    assert f"created tenant unicode_cafe_{suffix} " in result.output
    assert run(dsn, "tenants", "drop", f"unicode_cafe_{suffix}", "--yes").exit_code == 0


def test_the_plugin_env_var_names_the_migrations_too(dsn: str, schema_name: str) -> None:
    assert run(dsn, "tenants", "install").exit_code == 0
    result = CliRunner().invoke(
        main,
        ["--dsn", dsn, "migrate", "--plan"],
        env={"PGTENANTS_MIGRATIONS": MIGRATIONS, "TENANTKIT_MIGRATIONS": None},
    )
    assert result.exit_code == 0, result.output
