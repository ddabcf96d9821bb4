"""`tenantkit demo`: the README's main job runs end to end and cleans up after itself."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner

from tenantkit.cli import main


def _databases(server_conninfo: str) -> set[str]:
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        return {r[0] for r in conn.execute("select datname from pg_database")}


def test_demo_routes_each_host_to_its_own_tenant_and_drops_its_database(
    server_conninfo: str,
) -> None:
    before = _databases(server_conninfo)
    result = CliRunner().invoke(main, ["--dsn", server_conninfo, "demo", "--no-wait"])
    assert result.exit_code == 0, result.output
    out = result.output
    # Each tenant host sees its own note and no other tenant's.
    responses = [line for line in out.splitlines() if "200 OK" in line]
    expected = {"acme": "Acme Corp", "globex": "Globex", "initech": "Initech"}
    for schema, name in expected.items():
        lines = [line for line in responses if f"{schema}.localhost " in line.lower()]
        assert lines, out
        for line in lines:
            assert f"hello from {name}" in line
            others = [n for n in expected.values() if n != name]
            assert not any(other in line for other in others), line
    assert "404" in out and "400" in out
    # The three provisioning paths were all taken.
    assert "migrations" in out and "template" in out and "spare" in out
    assert "0 pending" in out and "0 differ" in out
    # The demo's database is gone afterwards.
    assert _databases(server_conninfo) - before == set()
