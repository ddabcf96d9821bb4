"""Template caching, --pgtenants-keep, cleanup after pass / fail / Ctrl-C, pytest-xdist."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

WORKLOAD = Path(__file__).resolve().parents[2] / "benchmarks" / "workload" / "migrations"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and locks")

RECORD = """
import json, os

def test_record(pgtenants_server, pgtenants_database, tenant):
    path = os.environ["RECORD_DIR"] + f"/{os.getpid()}.json"
    with open(path, "w") as f:
        json.dump({"conninfo": pgtenants_server.conninfo, "db": pgtenants_database.name,
                   "template": pgtenants_database.template, "tenant": tenant.schema,
                   "data_dir": pgtenants_server.data_dir}, f)
"""


def _records(folder: Path) -> list[dict[str, str]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _can_connect(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _oid(server: str, dbname: str) -> int | None:
    with psycopg.connect(server, autocommit=True) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", [dbname]).fetchone()
    return None if row is None else int(row[0])


def _drop(server: str, dbname: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


@pytest.fixture
def record_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "records"
    folder.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(folder))
    return folder


@pytest.fixture
def own_migrations(inner, tmp_path: Path) -> Path:
    """A private copy of the workload migrations (so this test's template is its own)."""
    target = tmp_path / f"migrations_{uuid.uuid4().hex[:8]}"
    shutil.copytree(WORKLOAD, target)
    (target / "tenant" / "0003_marker.sql").write_text(f"-- {target.name}\nselect 1;\n")
    return target


def test_template_reused_rebuilt_and_dropped(inner, record_dir: Path, own_migrations: Path) -> None:
    """Same migrations: same template, not rebuilt. Changed: a new one, the stale one dropped."""
    inner.pytester.makepyfile(test_record_tpl=RECORD)
    args = (f"--pgtenants-migrations={own_migrations}",)
    inner.run(*args).assert_outcomes(passed=1)
    first = _records(record_dir)[-1]
    oid = _oid(inner.server, first["template"])
    assert oid is not None
    for p in record_dir.glob("*.json"):
        p.unlink()
    inner.run(*args).assert_outcomes(passed=1)
    second = _records(record_dir)[-1]
    assert second["template"] == first["template"]
    assert _oid(inner.server, second["template"]) == oid  # reused, not rebuilt
    assert second["db"] != first["db"]
    assert not inner.databases(first["db"]) and not inner.databases(second["db"])

    (own_migrations / "tenant" / "0004_more.sql").write_text("create table extra (id int);\n")
    for p in record_dir.glob("*.json"):
        p.unlink()
    inner.run(*args).assert_outcomes(passed=1)
    third = _records(record_dir)[-1]
    assert third["template"] != first["template"]
    assert _oid(inner.server, first["template"]) is None  # the stale template was dropped

    for p in record_dir.glob("*.json"):
        p.unlink()
    inner.run(*args, "--pgtenants-no-cache").assert_outcomes(passed=1)
    assert _oid(inner.server, _records(record_dir)[-1]["template"]) is None


def test_concurrent_runs_share_one_template(inner, record_dir: Path, own_migrations: Path) -> None:
    """Two runs building the same new template at once: both pass, one template is built."""
    inner.pytester.makepyfile(test_record_conc=RECORD)
    procs = [
        inner.pytester.popen(
            [
                sys.executable,
                "-m",
                "pytest",
                *inner.args(f"--pgtenants-migrations={own_migrations}"),
            ],
            stdout=open(os.devnull, "w"),  # noqa: SIM115
            stderr=open(os.devnull, "w"),  # noqa: SIM115
        )
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = _records(record_dir)
    assert len(records) == 2 and records[0]["template"] == records[1]["template"]
    assert not inner.databases(records[0]["template"] + "_build")


def test_keep(inner, record_dir: Path) -> None:
    """--pgtenants-keep keeps the database and tenants and prints how to connect."""
    inner.pytester.makepyfile(test_record_keep=RECORD)
    result = inner.run("--pgtenants-keep")
    result.assert_outcomes(passed=1)
    record = _records(record_dir)[-1]
    try:
        result.stdout.fnmatch_lines(
            [
                "*pgtenants: kept for inspection*",
                f"kept test database {record['db']}; connect with:",
                f"*psql '*dbname={record['db']}*'",
                f"*tenantkit --dsn '*dbname={record['db']}*' shell [[]TENANT[]]",
            ]
        )
        db_conninfo = inner.server.replace("dbname=postgres", "") + f" dbname={record['db']}"
        with psycopg.connect(db_conninfo) as conn:
            row = conn.execute(
                "select 1 from pg_namespace where nspname = %s", [record["tenant"]]
            ).fetchone()
        assert row is not None
    finally:
        _drop(inner.server, record["db"])


def test_nothing_left_after_failure(inner, record_dir: Path) -> None:
    """A failing test run still drops its database."""
    inner.pytester.makepyfile(
        test_record_fail=RECORD + "\n\ndef test_fails(tenant):\n    assert False\n"
    )
    inner.run().assert_outcomes(passed=1, failed=1)
    assert not inner.databases(_records(record_dir)[-1]["db"])


INTERRUPTED = """
import json, os, time

def test_wait(pgtenants_server, pgtenants_database, tenant):
    with open(os.environ["RECORD_DIR"] + "/run.json", "w") as f:
        json.dump({"conninfo": pgtenants_server.conninfo, "db": pgtenants_database.name,
                   "data_dir": pgtenants_server.data_dir}, f)
    time.sleep(60)
"""


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "dsn"])
def test_nothing_left_after_ctrl_c(inner, record_dir: Path, embedded: bool) -> None:
    """Ctrl-C (SIGINT) mid-test: the database is dropped and an embedded server stopped."""
    inner.pytester.makepyfile(test_interrupted=INTERRUPTED)
    args = inner.args()
    if embedded:
        args = [a for a in args if not a.startswith("--pgtenants-dsn")]
    proc = inner.pytester.popen(
        [sys.executable, "-m", "pytest", *args],
        stdout=open(os.devnull, "w"),  # noqa: SIM115
        stderr=open(os.devnull, "w"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 90
    record_file = record_dir / "run.json"
    while not record_file.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    assert record_file.exists(), "the inner test did not start"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == pytest.ExitCode.INTERRUPTED
    record = json.loads(record_file.read_text())
    if embedded:
        assert not _can_connect(record["conninfo"])
        assert not Path(record["data_dir"]).exists()
    else:
        assert not inner.databases(record["db"])


XDIST = """
import json, os, time
import pytest

@pytest.mark.parametrize("n", range(6))
def test_record(pgtenants_server, pgtenants_database, tenant, n):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    with open(os.environ["RECORD_DIR"] + f"/{worker}.json", "w") as f:
        json.dump({"conninfo": pgtenants_server.conninfo, "db": pgtenants_database.name,
                   "worker": worker, "data_dir": pgtenants_server.data_dir}, f)
    time.sleep(0.3)

def test_c(tenant_conn):
    tenant_conn.execute("insert into shop_t0 (name) values ('x')")

def test_d(tenant_conn):
    assert tenant_conn.execute("select count(*) from shop_t0").fetchone()[0] == 0
"""


def test_xdist_workers_share_one_embedded_server(inner, record_dir: Path) -> None:
    """Under -n 2 both workers use one embedded server, each its own database; all cleaned up."""
    inner.pytester.makepyfile(test_xdist_run=XDIST)
    args = [a for a in inner.args() if not a.startswith("--pgtenants-dsn")]
    result = inner.pytester.runpytest_subprocess(*args, "-p", "xdist", "-n", "2", timeout=180)
    result.assert_outcomes(passed=8)
    a, b = _records(record_dir)
    assert a["worker"] != b["worker"]
    assert a["conninfo"] == b["conninfo"]  # one server
    assert a["db"] != b["db"]  # a database per worker
    assert not _can_connect(a["conninfo"])  # stopped at the end
    assert not Path(a["data_dir"]).exists()


def test_xdist_with_dsn(inner, record_dir: Path) -> None:
    """Under -n 2 against a given server: a database per worker, both dropped."""
    inner.pytester.makepyfile(test_xdist_dsn=XDIST)
    result = inner.pytester.runpytest_subprocess(
        *inner.args(), "-p", "xdist", "-n", "2", timeout=180
    )
    result.assert_outcomes(passed=8)
    a, b = _records(record_dir)
    assert a["db"] != b["db"]
    assert not inner.databases(a["db"]) and not inner.databases(b["db"])


KEEP_NAMED = """
import pytest

@pytest.mark.tenants("acme", "globex")
def test_first(tenants, tenant_conn):
    tenant_conn.execute("insert into shop_t0 (name) values ('first')")

@pytest.mark.tenants("acme", "globex")
def test_second(tenants, tenant_conn, tenancy):
    # A fresh acme, not the one the first test kept.
    assert tenant_conn.execute("select count(*) from shop_t0").fetchone()[0] == 0
    tenant_conn.execute("insert into shop_t0 (name) values ('second')")
    assert dict(tenants["acme"].metadata) == {}  # the test sees only its own metadata

def test_anonymous(tenant):
    pass
"""


def test_keep_with_named_tenants_in_several_tests(inner, record_dir: Path) -> None:
    """--pgtenants-keep: a later test reusing a name gets a fresh tenant; the last one is kept.

    Each kept tenant records the test that left it in its registry metadata.
    """
    inner.pytester.makepyfile(test_keep_named=KEEP_NAMED)
    result = inner.run("--pgtenants-keep", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    found = re.search(r"^kept test database (\w+);", out, re.MULTILINE)
    assert found is not None, out
    db = found.group(1)
    try:
        result.stdout.fnmatch_lines(
            [
                f"kept 3 tenant(s) in {db}*pgtenants_test*",
                "    acme  test_keep_named.py::test_second",
            ]
        )
        conninfo = inner.server.replace("dbname=postgres", "") + f" dbname={db}"
        with psycopg.connect(conninfo) as conn:
            rows = dict(
                conn.execute(
                    "select schema, metadata->>'pgtenants_test' from tenantkit_tenants"
                    " where not is_public"
                ).fetchall()
            )
            acme_rows = conn.execute("select name from acme.shop_t0").fetchall()
        assert rows.pop("acme") == rows.pop("globex") == "test_keep_named.py::test_second"
        assert list(rows.values()) == ["test_keep_named.py::test_anonymous"]
        assert acme_rows == [("second",)]
    finally:
        _drop(inner.server, db)


KEEP_XDIST = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_keep(tenant, n):
    pass
"""


def test_keep_under_xdist_leaves_the_embedded_server_running(inner) -> None:
    """-n 2 --pgtenants-keep: the printed server is really running, with the kept databases."""
    from tenantkit.cli.server import stop_server

    inner.pytester.makepyfile(test_keep_xdist=KEEP_XDIST)
    args = [a for a in inner.args() if not a.startswith("--pgtenants-dsn")]
    result = inner.pytester.runpytest_subprocess(
        *args, "-p", "xdist", "-n", "2", "--pgtenants-keep", timeout=180
    )
    out = result.stdout.str()
    match = re.search(
        r"conninfo '([^']+)'\); stop it and remove it with: tenantkit server stop (\S+)", out
    )
    assert match is not None, out
    conninfo, base_dir = match.group(1), match.group(2)
    try:
        result.assert_outcomes(passed=4)
        assert Path(base_dir).is_dir()
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            dbs = [
                r[0]
                for r in conn.execute(
                    "select datname from pg_database where starts_with(datname, 'pgtenants_db_')"
                ).fetchall()
            ]
        assert len(dbs) == 2, dbs  # one per worker, both kept
        for db in dbs:
            with psycopg.connect(conninfo.replace("dbname=postgres", f"dbname={db}")) as conn:
                nodeids = conn.execute(
                    "select metadata->>'pgtenants_test' from tenantkit_tenants where not is_public"
                ).fetchall()
            assert nodeids and all(
                n[0].startswith("test_keep_xdist.py::test_keep[") for n in nodeids
            )
    finally:
        stop_server(base_dir)
    assert not _can_connect(conninfo)
    assert not Path(base_dir).exists()
