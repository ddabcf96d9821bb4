"""Benchmark: tenantkit.django against django-tenants 4.0.1, side by side, in one run.

The project is ``benchmarks/django_requests.py``'s (a ``customers`` app with the tenant and
domain models, an ``items`` app) plus a tenant app ``shop`` holding the standard workload as
Django models: 20 tables with indexes and foreign keys (``benchmarks/workload``'s
``0001_shop.sql``), and a second migration adding a nullable ``note`` column and an index on
it to each table (``0002_note.sql``). The migrations are generated with ``makemigrations``.
Each side runs in its own processes (Django settings are per process) on its own database of
one server; each figure is measured in a fresh process around the command alone.

Measured:

- **create a tenant**: ``Client(schema_name=...).save()`` (schema, 20 tables, Django history),
  median of ``--creates``; tenantkit from warm spares (filled beforehand, not timed);
- **apply migration 2** to ``--tenants`` tenants with ``migrate_schemas --tenant`` (a fresh
  process, so Django renders the migration once, as a deploy does), against the baseline: the
  same DDL (what Django renders for it, ``sqlmigrate``) sent per schema in one message and one
  transaction each over one connection. ``--apply-rounds`` rounds on copies of tenantkit's
  database taken just before (bare DDL and tenantkit alternating, each on its own copy), then
  tenantkit on the database itself; medians, and the ratio per round of twin copies. Each
  round also runs ``--executor threads`` with ``--jobs`` workers (``TENANT_MULTIPROCESSING_
  MAX_PROCESSES``) against the bare DDL over as many connections. The same at ``--noop``
  tenants (``--large-rounds`` rounds, on copies of a copy grown to that size before
  migration 2), where Django's one rendering of the migration weighs less;
- **no-op** ``migrate_schemas`` over ``--tenants`` and ``--noop`` tenants (django-tenants at
  ``--noop`` only with ``--full``; tenants beyond the first are SQL copies of it, so setting up
  1,000 does not take django-tenants' 0.3 s each, and tenantkit adopts their history untimed);
- **routed requests** vs plain Django, and statements per request:
  ``benchmarks/django_requests.py``, run as is;
- **a test with a fresh tenant** vs django-tenants' ``TenantTestCase`` per class:
  ``benchmarks/plugin_django.py``, run as is.

The two scripts run first, on a quiet server: the other phases leave autovacuum working on
the catalogs of a thousand tenants' tables for a while afterwards, on the same cores.

    PGTENANTS_DSN=... python benchmarks/django.py [--tenants 100] [--noop 1000] [--full]
        [--creates 20] [--jobs 2] [--skip-requests] [--skip-tests]

Without PGTENANTS_DSN an embedded server is started.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this file's folder is sys.path[0], and this file (django.py) would shadow
# the real ``django`` package it is named after: drop that entry before anything imports it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402


def _sibling(name: str) -> Any:
    """Import a benchmark script of this folder by its path (the folder is off sys.path)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


project = _sibling("django_requests")

SIDES = ("tenantkit", "django-tenants")
TABLES = 20


def _models(with_note: bool) -> str:
    """The standard workload's 20 tables as Django models (migration 2 adds ``note``)."""
    lines = ["from django.db import models", "from django.utils import timezone", ""]
    for i in range(TABLES):
        lines += [
            f"class T{i}(models.Model):",
            "    name = models.CharField(max_length=200, db_index=True)",
            "    created = models.DateTimeField(default=timezone.now)",
            "    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True)",
            "    data = models.JSONField(null=True)",
        ]
        if i:
            lines.append(
                f"    ref = models.ForeignKey('T{i - 1}', null=True, on_delete=models.CASCADE)"
            )
        if with_note:
            # A column and one index, as the workload's 0002_note.sql (db_index=True would
            # add a second, varchar_pattern_ops index on PostgreSQL).
            lines += [
                "    note = models.TextField(null=True)",
                "",
                "    class Meta:",
                f"        indexes = [models.Index(fields=['note'], name='shop_t{i}_note_idx')]",
            ]
        lines.append("")
    return "\n".join(lines)


def write_project(root: Path) -> None:
    """django_requests' project plus the ``shop`` app (models at migration 1)."""
    project.write_project(root)
    app = root / "bench_proj" / "shop"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "models.py").write_text(_models(False))


def _settings(side: str, conninfo: str) -> dict[str, Any]:
    values = project._settings(side, conninfo)
    if side != "plain":  # plain: no tenancy, no router (makemigrations, sqlmigrate)
        values["TENANT_APPS"] = [*values["TENANT_APPS"], "bench_proj.shop"]
    values["INSTALLED_APPS"] = [*values["INSTALLED_APPS"], "bench_proj.shop"]
    return values


# -- a worker: one side, one phase, one process ----------------------------------------------


def _grow(total: int) -> None:
    """Make tenants t1.. up to ``total`` as SQL copies of t0 (structure and rows)."""
    from bench_proj.customers.models import Client
    from django.db import connection

    from tenantkit.provisioning.clone import clone_schema

    have = Client.objects.exclude(schema_name="public").count()
    connection.ensure_connection()
    raw = connection.connection
    for n in range(have, total):
        name = f"t{n}"
        with raw.transaction():
            clone_schema(raw, "t0", name, data=True)
            raw.execute("insert into customers_client (schema_name, name) values (%s, '')", (name,))


def _migrate_schemas(side: str, **options: Any) -> None:
    from django.core.management import call_command

    if side == "django-tenants":
        options["interactive"] = False
    call_command("migrate_schemas", verbosity=0, **options)


def _timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def worker(side: str, conninfo: str, root: str, phase: str, n: int) -> None:
    """Run one phase; timed phases print one JSON line."""
    sys.path.insert(0, root)
    import django
    from django.conf import settings

    values = _settings(side, conninfo)
    if phase == "apply" and n > 1:  # the threads executor with n workers
        values["TENANT_MULTIPROCESSING_MAX_PROCESSES"] = n
    settings.configure(**values)
    django.setup()
    from django.core.management import call_command

    if phase == "makemigrations":
        call_command("makemigrations", "shop", name=f"step{n}", verbosity=0)
    elif phase == "sqlmigrate":
        from io import StringIO

        out = StringIO()
        call_command("sqlmigrate", "shop", f"000{n}", stdout=out)
        print(json.dumps({"sql": out.getvalue()}), flush=True)
    elif phase == "setup":
        from bench_proj.customers.models import Client

        _migrate_schemas(side, shared=True)
        Client(schema_name="public").save(verbosity=0)
        Client(schema_name="t0").save(verbosity=0)
    elif phase == "create":
        from bench_proj.customers.models import Client

        if side == "tenantkit":
            from tenantkit.django._provision import fill_spares

            _migrate_schemas(side)  # the template and spares at the head (not timed)
            fill_spares(n)
        times = []
        for i in range(n):
            client = Client(schema_name=f"new{i}")
            times.append(_timed(lambda client=client: client.save(verbosity=0)))
        for i in range(n):  # keep the tenant count at what the other phases expect
            Client.objects.get(schema_name=f"new{i}").delete(force_drop=True)
        print(json.dumps({"seconds": statistics.median(times)}), flush=True)
    elif phase == "grow":
        _grow(n)
        if side == "tenantkit":  # adopt the copies' Django history (once, not timed)
            _migrate_schemas(side)
    else:  # noop / apply (n > 1: the threads executor, n workers)
        options: dict[str, Any] = {"tenant": True}
        if n > 1:
            options["executor"] = "threads"
        profile = os.environ.get("BENCH_PROFILE")  # a cProfile of this phase, to that path
        if profile:
            import cProfile

            with cProfile.Profile() as prof:
                seconds = _timed(lambda: _migrate_schemas(side, **options))
            prof.dump_stats(f"{profile}.{side}.{phase}{n if n > 1 else ''}")
        else:
            seconds = _timed(lambda: _migrate_schemas(side, **options))
        print(json.dumps({"seconds": seconds}), flush=True)


def _run(side: str, conninfo: str, root: str, phase: str, n: int = 0) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", side, conninfo, root, phase, str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{side} {phase} failed:\n{done.stderr[-3000:]}")
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else {}


@contextmanager
def _copy(server: str, database: str) -> Iterator[str]:
    """A copy of ``database`` (same schemas, tables and history), dropped afterwards."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    from tenantkit.server.embedded import with_dbname

    name = f"bm_copy_{os.getpid()}_{time.monotonic_ns()}"
    source = conninfo_to_dict(database)["dbname"]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(str(source))
            )
        )
        # The copy's pages are written through the WAL: flush them now, so that the
        # checkpoint does not run during the measurement that follows.
        conn.execute("checkpoint")
    try:
        yield with_dbname(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def _bare(database: str, ddl: str, n: int, jobs: int = 1) -> float:
    """The floor: migration 2's DDL alone (what Django renders for it), sent per tenant
    schema in one message and one transaction each, over one connection (or ``jobs``
    connections in as many threads, taking the schemas in turn)."""
    import threading

    import psycopg
    from psycopg import sql

    conns = [psycopg.connect(database, autocommit=True) for _ in range(jobs)]

    def send(conn: psycopg.Connection[Any], first: int) -> None:
        for i in range(first, n, jobs):
            path = sql.Identifier(f"t{i}").as_string(conn)
            conn.execute(f"begin; set local search_path to {path}, public; {ddl} commit".encode())

    threads = [threading.Thread(target=send, args=(c, k)) for k, c in enumerate(conns)]
    try:
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()


def _variants(jobs: int) -> list[tuple[str, bool, int]]:
    """The variants of one apply round: (name, whether tenantkit's, connections)."""
    out = [("bare", False, 1), ("tenantkit", True, 1)]
    if jobs > 1:
        out += [(f"bare x{jobs}", False, jobs), (f"tenantkit threads x{jobs}", True, jobs)]
    return out


def _on_copies(
    server: str,
    source: str,
    ddl: str,
    count: int,
    rounds: int,
    root: Path,
    second: Path,
    jobs: int,
) -> dict[str, list[float]]:
    """The bare DDL and tenantkit's apply of migration 2 to ``count`` tenants, ``rounds``
    times alternating, each on a copy of the database ``source`` of its own: sequentially,
    and with ``jobs`` connections (tenantkit's threads executor) when ``jobs`` > 1."""
    migrations = root / "bench_proj" / "shop" / "migrations"
    out: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, ours, k in _variants(jobs):
            with _copy(server, source) as copy:
                if not ours:
                    seconds = _bare(copy, ddl, count, k)
                else:
                    _with_second(migrations, second, root)
                    seconds = _run("tenantkit", copy, str(root), "apply", k)["seconds"]
                    _without_second(migrations, second, root)
            out.setdefault(name, []).append(seconds)
    return out


def _paired(label: str, ours: list[float], bare: list[float]) -> float:
    """Print the ratio per round of twin copies; their median."""
    ratios = [a / b for a, b in zip(ours, bare, strict=False)]
    median = statistics.median(ratios)
    print(
        f"  {label} per round (twin copies): "
        + ", ".join(f"{x:.2f}x" for x in ratios)
        + f"; median {median:.2f}x"
    )
    return median


def _with_second(migrations: Path, second: Path, root: Path) -> None:
    """Put migration 2 (and the models it leads to) into a side's project."""
    (migrations / second.name).write_text(second.read_text())
    (root / "bench_proj" / "shop" / "models.py").write_text(_models(True))


def _without_second(migrations: Path, second: Path, root: Path) -> None:
    """Take migration 2 back out of a side's project."""
    (migrations / second.name).unlink()
    (root / "bench_proj" / "shop" / "models.py").write_text(_models(False))


def _script(name: str, args: list[str], dsn: str) -> str:
    """Run another benchmark script of this directory; its output."""
    # PYTHONSAFEPATH: keep this folder (and so this file, django.py) off the scripts' sys.path.
    env = {**os.environ, "PGTENANTS_DSN": dsn, "PYTHONWARNINGS": "ignore", "PYTHONSAFEPATH": "1"}
    done = subprocess.run(
        [sys.executable, str(HERE / name), *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--noop", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=20)
    parser.add_argument(
        "--apply-rounds", type=int, default=5, help="tenantkit's apply and the bare DDL on copies"
    )
    parser.add_argument(
        "--large-rounds",
        type=int,
        default=2,
        help="tenantkit's apply and the bare DDL at --noop tenants (0: not measured)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="workers of the threads-executor rounds, and connections of their bare DDL "
        "(1: not measured)",
    )
    parser.add_argument("--full", action="store_true", help="django-tenants' no-op at --noop too")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated sides")
    parser.add_argument("--skip-requests", action="store_true")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--worker", nargs=5, metavar=("SIDE", "CONNINFO", "ROOT", "PHASE", "N"))
    args = parser.parse_args()
    if args.worker:
        side, conninfo, root, phase, n = args.worker
        worker(side, conninfo, root, phase, int(n))
        return

    from tenantkit.server import server_conninfo_from_env, temporary_database

    n = args.tenants
    res: dict[str, dict[str, float | None]] = {s: {} for s in SIDES}
    requests_out = tests_out = ""
    bares: list[float] = []
    rounds: dict[str, list[float]] = {}
    copies: dict[str, list[float]] = {}  # by variant (_variants), at --tenants
    large: dict[str, list[float]] = {}  # the same at --noop
    with (
        server_conninfo_from_env() as server,
        tempfile.TemporaryDirectory() as tmp,
        temporary_database(server, prefix="bm_tk") as db_tk,
        temporary_database(server, prefix="bm_dt") as db_dt,
        temporary_database(server, prefix="bm_bare") as db_bare,
    ):
        # First, while the server is quiet: the phases below leave autovacuum busy with the
        # catalogs of 1,000 tenants' tables for a while, on the same cores.
        if not args.skip_requests:
            requests_out = _script(
                "django_requests.py", ["--rounds", "10", "--requests", "1000"], server
            )
        if not args.skip_tests:
            tests_out = _script("plugin_django.py", ["--tests", "50", "--per-class", "10"], server)
        dbs = {"tenantkit": db_tk, "django-tenants": db_dt}
        # One project, its migrations generated once (both sides get the same files).
        source = Path(tmp) / "source"
        source.mkdir()
        write_project(source)
        _run("plain", db_bare, str(source), "makemigrations", 1)
        (source / "bench_proj" / "shop" / "models.py").write_text(_models(True))
        _run("plain", db_bare, str(source), "makemigrations", 2)
        ddl2 = _run("plain", db_bare, str(source), "sqlmigrate", 2)["sql"]
        second = next((source / "bench_proj" / "shop" / "migrations").glob("0002_*.py"))
        roots: dict[str, Path] = {}
        for side in SIDES:
            root = Path(tmp) / side
            subprocess.run(["cp", "-r", str(source), str(root)], check=True)
            # Migration 2 is held back until its phase.
            (root / "bench_proj" / "shop" / "migrations" / second.name).unlink()
            (root / "bench_proj" / "shop" / "models.py").write_text(_models(False))
            roots[side] = root
        for side in [s for s in SIDES if s in args.sides.split(",")]:
            db, root = dbs[side], str(roots[side])
            _run(side, db, root, "setup")
            creates = args.creates if side == "tenantkit" else max(3, args.creates // 4)
            res[side]["create (median)"] = _run(side, db, root, "create", creates)["seconds"]
            _run(side, db, root, "grow", n)
            res[side][f"no-op, {n} tenants"] = _run(side, db, root, "noop")["seconds"]
            migrations = roots[side] / "bench_proj" / "shop" / "migrations"
            applies: list[float] = []
            if side == "tenantkit":
                # Rounds on copies of the database taken here (bare DDL and tenantkit
                # alternating, each on a copy of its own), then the real apply below.
                copies = _on_copies(
                    server, db, ddl2, n, args.apply_rounds, roots[side], second, args.jobs
                )
                bares.extend(copies["bare"])
                applies.extend(copies["tenantkit"])
                if args.large_rounds and args.noop > n:
                    # The same at --noop tenants, on copies of a copy grown to that size
                    # before migration 2 (the fixed cost of a run spread over more schemas).
                    with _copy(server, db) as grown:
                        _run(side, grown, root, "grow", args.noop)
                        large = _on_copies(
                            server,
                            grown,
                            ddl2,
                            args.noop,
                            args.large_rounds,
                            roots[side],
                            second,
                            args.jobs,
                        )
            _with_second(migrations, second, roots[side])
            applies.append(_run(side, db, root, "apply")["seconds"])
            res[side][f"apply 2, {n} tenants"] = statistics.median(applies)
            rounds[side] = applies
            key = f"no-op, {args.noop} tenants"
            if side == "tenantkit" or args.full:
                _run(side, db, root, "grow", args.noop)
                res[side][key] = _run(side, db, root, "noop")["seconds"]
            else:
                res[side][key] = None

    tk, dt = res["tenantkit"], res["django-tenants"]
    print(
        f"standard workload as Django models ({TABLES} tables); {n} tenants, no-op also at "
        f"{args.noop}; one run, one server"
    )
    print(f"{'measure':<26}{'tenantkit':>12}{'django-tenants':>16}{'dt / tk':>10}")
    for key in tk or dt:
        a, b = tk.get(key), dt.get(key)
        ratio = f"{b / a:>9.1f}x" if a and b else f"{'-':>10}"
        b_text = f"{b:>15.3f}s" if b is not None else f"{'(--full)':>16}"
        a_text = f"{a:>11.3f}s" if a is not None else f"{'-':>12}"
        print(f"{key:<26}{a_text}{b_text}{ratio}")
    apply = tk.get(f"apply 2, {n} tenants") or 0.0
    dt_apply = dt.get(f"apply 2, {n} tenants") or 0.0
    bare = statistics.median(bares) if bares else 0.0
    print(
        f"bare DDL of migration 2, the same {n} schemas (copies of the database): median "
        f"{bare:.3f}s of {len(bares)} rounds; tenantkit's apply: median of {len(bares) + 1} "
        "(the same copies' twins, and the database itself)"
    )
    for side, seconds in rounds.items():
        print(f"  {side} apply rounds: " + ", ".join(f"{x:.3f}s" for x in seconds))
    threaded: float | None = None  # tenantkit threads / the sequential bare DDL
    both: float | None = None  # tenantkit threads / the bare DDL on as many connections
    if bares:
        print("  bare DDL rounds: " + ", ".join(f"{x:.3f}s" for x in bares))
        _paired("tenantkit / bare DDL", rounds.get("tenantkit", []), bares)
        workers = f"x{args.jobs}"
        if f"bare {workers}" in copies:
            ours = copies[f"tenantkit threads {workers}"]
            both_bare = copies[f"bare {workers}"]
            print(
                f"  with {args.jobs} connections: tenantkit --executor threads "
                + ", ".join(f"{x:.3f}s" for x in ours)
                + f"; bare DDL {workers} "
                + ", ".join(f"{x:.3f}s" for x in both_bare)
            )
            threaded = _paired(f"tenantkit threads {workers} / bare DDL", ours, bares)
            both = _paired(f"tenantkit threads {workers} / bare DDL {workers}", ours, both_bare)
    for name, seconds in large.items() if large.get("bare") else ():
        print(
            f"apply 2 at {args.noop} tenants (copies), {name}: "
            + ", ".join(f"{x:.2f}s" for x in seconds)
            + f"; median {statistics.median(seconds) / statistics.median(large['bare']):.2f}x "
            "the sequential bare DDL"
        )
    print("targets:")
    create = (tk.get("create (median)") or 0.0) * 1000
    print(f"  create from spares {create:.1f} ms (< 10 ms): {_met(create < 10)}")
    noop = tk.get(f"no-op, {args.noop} tenants") or 0.0
    print(f"  no-op of {args.noop} tenants {noop:.3f} s (< 1 s): {_met(noop < 1)}")
    print(
        f"  apply / bare DDL {apply / bare:.2f}x (< 1.5x; django-tenants {dt_apply / bare:.1f}x): "
        f"{_met(apply / bare < 1.5)}"
        if bare
        else "  apply / bare DDL: not measured (tenantkit side not run)"
    )
    if threaded is not None and both is not None:
        print(
            f"  apply --executor threads x{args.jobs} / the sequential bare DDL {threaded:.2f}x "
            f"(< 1.5x): {_met(threaded < 1.5)}; / the bare DDL on {args.jobs} connections "
            f"{both:.2f}x (< 1.5x): {_met(both < 1.5)}"
        )
    if requests_out:
        print("routed requests (benchmarks/django_requests.py):")
        print("  " + requests_out.strip().replace("\n", "\n  "))
        for pattern in ("switch", "repeat"):
            over = _number(rf"overhead vs plain \({pattern}\): ([+-]?[\d.]+)%", requests_out)
            if over is not None:
                print(f"  routed overhead, {pattern} {over:+.1f}% (< 10%): {_met(over < 10)}")
    if tests_out:
        print("fresh tenant per test (benchmarks/plugin_django.py):")
        print("  " + tests_out.strip().replace("\n", "\n  "))
        fresh = _number(r"fresh tenant\) +median +([\d.]+) ms", tests_out)
        if fresh is not None:
            print(f"  fresh tenant per test {fresh:.1f} ms (< 10 ms): {_met(fresh < 10)}")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    main()
