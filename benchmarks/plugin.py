"""Benchmark of the pytest plugin on the standard workload (20 tenant tables, 2 migrations).

Prints, from one run:

1. the per-test cost of the ``tenant`` fixture (a fresh, fully migrated tenant) against
   creating the same schema by running its DDL directly (median and p90 over 200 tests);
2. the wall time of a 200-test suite where every test gets a fresh ``tenant``, against the
   same suite creating a schema plus migrations once per test class (10 tests per class: the
   django-tenants ``TenantTestCase`` pattern, with less isolation);
3. the cost of the snapshot behind ``with assert_tenants_isolated(acme):`` for N other tenants
   on the workload's tables, with the plugin's default pool of 20 spares and the template:
   the snapshot taken on entry (on a new connection, as the fixture does) and the one taken on
   exit (same connection, ``since=`` the first), medians over --snapshot-repeat runs, set
   beside the snapshot as it was before it covered sequences, privileges, owners, rules,
   policies, spares and the template (kept below as :func:`baseline_snapshot`), measured in
   the same run, interleaved.

Uses the server of ``PGTENANTS_DSN`` when set, else an embedded one. Each suite runs in its own
pytest subprocess; fixture setup times are recorded by a small hook in the generated conftest.

    python benchmarks/plugin.py [--tests 200] [--per-class 10]
    python benchmarks/plugin.py --only-snapshot [--snapshot-tenants 0,1,10,100]
"""

from __future__ import annotations

import argparse
import contextlib
import io
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
from typing import Any

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
    from tenantkit.core.tenancy import Tenancy

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


# -- 3. the isolation snapshot -------------------------------------------------------------------

# The snapshot of assert_tenants_isolated before issue 11 (structure deparsed, rows of every
# table, table names of the shared schema), kept verbatim as the baseline.
_BASELINE_STRUCTURE = """
SELECT n.nspname, 'relation', c.relname, c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'i', 'I')
UNION ALL
SELECT n.nspname, 'column', c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = ANY(%(schemas)s) AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT n.nspname, 'index', c.relname, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT n.nspname, 'constraint', c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT n.nspname, 'view', c.relname, pg_get_viewdef(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('v', 'm')
UNION ALL
SELECT n.nspname, 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(coalesce(p.prosrc, ''))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = ANY(%(schemas)s)
UNION ALL
SELECT n.nspname, 'trigger', c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND NOT t.tgisinternal
"""
_BASELINE_TABLES = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')
 ORDER BY 1, 2
"""


def baseline_snapshot(conn: Any, schemas: list[str], shared: str = "public") -> object:
    """The snapshot before issue 11, as ``pytest_pgtenants.asserts.take_snapshot`` took it."""
    from psycopg import sql

    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        structure = conn.execute(_BASELINE_STRUCTURE, {"schemas": schemas}).fetchall()
        tables = conn.execute(_BASELINE_TABLES, [schemas]).fetchall()
        rows = []
        if tables:
            query = sql.SQL(" UNION ALL ").join(
                sql.SQL(
                    "SELECT {s}::text, {t}::text, count(*),"
                    " coalesce(sum(hashtextextended(x::text, 0)::numeric), 0)::text,"
                    " (SELECT array_agg(y::text) FROM (SELECT y FROM {i} y LIMIT 51) q)"
                    " FROM {i} x"
                ).format(s=sql.Literal(s), t=sql.Literal(t), i=sql.Identifier(s, t))
                for s, t in tables
            )
            rows = conn.execute(query).fetchall()
        shared_tables = conn.execute(_BASELINE_TABLES, [[shared]]).fetchall()
    return structure, rows, shared_tables


def _block(conninfo: str, schemas: list[str], *, new: bool, reserved: bool = True) -> float:
    """Seconds of snapshot work for one ``with assert_tenants_isolated(...)`` block that
    changes nothing: a snapshot on a new connection, then one more on the same connection."""
    import psycopg

    from pytest_pgtenants.asserts import take_snapshot

    with psycopg.connect(conninfo, autocommit=True) as conn:
        began = time.perf_counter()
        if new:
            before = take_snapshot(conn, schemas, reserved=reserved)
            take_snapshot(conn, schemas, reserved=reserved, since=before)
        else:
            baseline_snapshot(conn, schemas)
            baseline_snapshot(conn, schemas)
        return time.perf_counter() - began


def snapshot_costs(dsn: str, counts: list[int], spares: int, repeat: int) -> None:
    """Print section 3: the snapshot cost for each number of other tenants in ``counts``.

    The database holds the acting tenant and exactly N others when N is measured (as in a
    test where every other registered tenant is snapshotted): the largest N first, then
    tenants are dropped down to the next.
    """
    from tenantkit.core.tenancy import Tenancy
    from tenantkit.server import temporary_database

    most = max(counts)
    results: dict[int, tuple[float, float, float]] = {}
    with (
        temporary_database(dsn, prefix="tk_bench_snap") as db,
        Tenancy(db, migrations=MIGRATIONS) as tenancy,
    ):
        tenancy.install()
        tenancy.migrate()
        tenancy.spares.fill(most + 1 + spares)
        schemas = [tenancy.create_tenant(f"t{i:04d}").schema for i in range(most + 1)]
        # schemas[0] is the tenant acting in the block; the others are snapshotted.
        left = tenancy.spares.count()
        for n in sorted(counts, reverse=True):
            while len(schemas) > n + 1:
                tenancy.drop_tenant(schemas.pop(), cascade=True)
            others = schemas[1:]
            old: list[float] = []
            now: list[float] = []
            bare: list[float] = []
            for _ in range(repeat):  # interleaved, so load changes hit all three alike
                old.append(_block(db, others, new=False))
                now.append(_block(db, others, new=True))
                bare.append(_block(db, others, new=True, reserved=False))
            results[n] = (
                statistics.median(old) * 1000,
                statistics.median(now) * 1000,
                statistics.median(bare) * 1000,
            )
    print(
        "3. snapshot work of one `with assert_tenants_isolated(acme):` block that changes "
        f"nothing\n   (standard workload; {left} spares + the template; median of {repeat}; a "
        "snapshot on a new connection + one on exit)"
    )
    print(
        "   other tenants   before (baseline)         now   now/before   "
        "now w/o spares+template   per extra tenant: before / now"
    )
    base = results.get(0)
    for n in sorted(results):
        o, a, b = results[n]
        per = ""
        if n and base is not None:
            per = f"{(o - base[0]) / n:8.2f} / {(a - base[1]) / n:.2f} ms"
        elif n:
            per = f"{o / n:8.2f} / {a / n:.2f} ms"
        print(f"   {n:>13}   {o:14.1f} ms   {a:6.1f} ms   {a / o:9.2f}x   {b:19.1f} ms   {per}")
    print(
        "   (before: the snapshot as it was, tenants only; now: as the fixture takes it; "
        "w/o spares+template:\n   take_snapshot(reserved=False); per extra tenant: "
        "(N others - 0 others) / N)"
    )
    load = os.getloadavg()
    print(f"   load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(ordered) * 1000:6.2f} ms   p90 {p90 * 1000:6.2f} ms"


def main() -> None:
    """Run the three suites and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument(
        "--snapshot-tenants", default="0,1,10,100", help="other tenants in section 3 [0,1,10,100]"
    )
    parser.add_argument("--snapshot-spares", type=int, default=20, help="spares in section 3 [20]")
    parser.add_argument("--snapshot-repeat", type=int, default=15, help="runs per figure [15]")
    parser.add_argument("--only-snapshot", action="store_true", help="run section 3 only")
    args = parser.parse_args()
    counts = [int(n) for n in args.snapshot_tenants.split(",")]
    with ExitStack() as stack:
        dsn = os.environ.get("PGTENANTS_DSN")
        if not dsn:
            from tenantkit.server import EmbeddedServer

            dsn = stack.enter_context(EmbeddedServer()).conninfo
        if args.only_snapshot:
            snapshot_costs(dsn, counts, args.snapshot_spares, args.snapshot_repeat)
            return
        project = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgt-bench-")))
        (project / "conftest.py").write_text(CONFTEST)
        (project / "pytest.ini").write_text("[pytest]\n")
        # A warm-up run builds the template database, as a developer's first run would.
        _run(project, "ddl", dsn, 2, args.per_class)
        ddl = _run(project, "ddl", dsn, args.tests, args.per_class)
        fresh = _run(project, "tenant", dsn, args.tests, args.per_class)
        per_class = _run(project, "class", dsn, args.tests, args.per_class)
        _drop_templates(dsn, project)
        snapshot_lines = io.StringIO()
        with contextlib.redirect_stdout(snapshot_lines):
            snapshot_costs(dsn, counts, args.snapshot_spares, args.snapshot_repeat)

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
    print()
    print(snapshot_lines.getvalue(), end="")


if __name__ == "__main__":
    main()
