"""``tenantkit run``: SQL in one tenant or every tenant, each in a transaction of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli_support import MIGRATIONS, tenantkit

from tenantkit import Tenancy


@pytest.fixture
def three(dsn: str, schema_name: str) -> list[str]:
    """Three tenants of the demo project, each holding one note; dropped afterwards."""
    schemas = [f"{schema_name}_{i}" for i in range(3)]
    with Tenancy(dsn, migrations=MIGRATIONS, max_size=2) as tenancy:
        tenancy.install()
        tenancy.migrate(tenants=False)
        for schema in schemas:
            tenancy.create_tenant(schema, domains=[schema.replace("_", "-") + ".run.test"])
            with tenancy.connection(schema) as conn:
                conn.execute("insert into notes (body) values (%s)", (f"note of {schema}",))
        yield schemas
        for schema in schemas:
            tenancy.drop_tenant(schema, cascade=True)


def results(*args: str, dsn: str) -> tuple[int, list[dict[str, object]]]:
    result = tenantkit("run", "--json", *args, dsn=dsn)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def mine(found: list[dict[str, object]], schemas: list[str]) -> dict[str, dict[str, object]]:
    return {str(r["tenant"]): r for r in found if r["tenant"] in schemas}


def test_run_in_one_tenant_by_schema_or_host_sees_only_its_rows(dsn: str, three: list[str]) -> None:
    code, found = results(three[0], "--", "select body from notes", dsn=dsn)
    assert code == 0
    assert found[0]["rows"] == [[f"note of {three[0]}"]]
    host = three[1].replace("_", "-") + ".run.test"
    code, found = results(host, "--", "select body from notes", dsn=dsn)
    assert (code, found[0]["tenant"]) == (0, three[1])
    assert found[0]["rows"] == [[f"note of {three[1]}"]]
    # Shared tables stay visible after the tenant's schema, as the application sees them.
    code, found = results(three[0], "--", "select count(*) from plans", dsn=dsn)
    assert found[0]["rows"] == [[2]]


def test_run_all_shows_one_table_with_the_tenant_first(dsn: str, three: list[str]) -> None:
    result = tenantkit("run", "--all", "--", "select body from notes", dsn=dsn)
    assert result.returncode == 0, result.stderr
    for schema in three:
        line = next(row for row in result.stdout.splitlines() if row.split()[:1] == [schema])
        assert f"note of {schema}" in line
    assert "failed" in result.stdout.splitlines()[-1]


def test_a_failing_tenant_rolls_back_alone_and_the_exit_status_says_so(
    dsn: str, three: list[str]
) -> None:
    # The statement fails in three[1] only (a check on its one row), after the insert.
    script = (
        "insert into notes (body) values ('added');"
        f"select 1 / (body <> 'note of {three[1]}')::int from notes where id = 1"
    )
    code, found = results("--all", "--", script, dsn=dsn)
    assert code == 1
    by = mine(found, three)
    assert by[three[1]]["ok"] is False and "22012" in str(by[three[1]]["error"])
    assert by[three[0]]["ok"] and by[three[2]]["ok"]
    _, counts = results("--all", "--", "select count(*) from notes", dsn=dsn)
    counted = {k: v["rows"] for k, v in mine(counts, three).items()}
    assert counted == {three[0]: [[2]], three[1]: [[1]], three[2]: [[2]]}


def test_fail_fast_starts_no_tenant_after_a_failure(dsn: str, three: list[str]) -> None:
    code, found = results("--all", "--fail-fast", "--", "select * from no_such_table", dsn=dsn)
    assert code == 1
    assert len(found) == 1 and found[0]["ok"] is False


def test_script_from_a_file_with_parallel_jobs(dsn: str, three: list[str], tmp_path: Path) -> None:
    script = tmp_path / "fix.sql"
    script.write_text("update notes set body = upper(body);\nselect body from notes;\n")
    code, found = results("--all", "--jobs", "3", "--file", str(script), dsn=dsn)
    assert code == 0
    by = mine(found, three)
    assert {k: v["rows"] for k, v in by.items()} == {s: [[f"NOTE OF {s.upper()}"]] for s in three}


def test_script_from_standard_input(dsn: str, three: list[str]) -> None:
    result = tenantkit(
        "run", three[2], "--json", "--file", "-", dsn=dsn, input="select 40 + 2 as answer;"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["rows"] == [[42]]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), "no TENANT given"),
        # The SQL after -- is not a tenant's name (issue 16: this said "no SQL given").
        (("--", "select 1"), "no TENANT given"),
        (("--all",), "no SQL given"),
        (("--all", "acme", "--", "select 1"), "drop the tenant name 'acme'"),
        (("--all", "--file", "-", "--", "select 1"), "not both"),
    ],
)
def test_usage_errors(dsn: str, args: tuple[str, ...], expected: str) -> None:
    result = tenantkit("run", *args, dsn=dsn, input="select 1")
    assert result.returncode == 2
    assert expected in result.stderr


def test_unknown_tenant(dsn: str, three: list[str]) -> None:
    result = tenantkit("run", three[0] + "_nope", "--", "select 1", dsn=dsn)
    assert result.returncode == 3
    assert result.stderr.startswith("error: no tenant has the schema name or host")
