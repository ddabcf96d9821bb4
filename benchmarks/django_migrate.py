"""Benchmark: ``migrate_schemas`` of tenantkit.django vs django-tenants 4.0.1.

The same small project (``benchmarks/django_requests.py``'s: a tenant app with one table) runs
each side in its own processes (Django settings are per process), on its own database of one
server. Tenants beyond the first are copies of the first made with SQL (same structure, same
``django_migrations`` rows), so setting up 1,000 tenants does not take django-tenants' 0.3 s
each; tenantkit's first ``migrate_schemas`` then adopts their Django history (not timed).

Measured, each in a fresh process, around ``call_command("migrate_schemas", ...)`` only:

- no-op ``migrate_schemas`` over 200 tenants, and over 1,000 (django-tenants at 1,000 only with
  ``--full``: about 90 s);
- applying one pending migration (a nullable column and an index) to 200 tenants;
- the baseline: the same DDL (what Django renders) sent per schema in one transaction each,
  over one connection, to 200 schemas of a third database.

    PGTENANTS_DSN=... python benchmarks/django_migrate.py [--tenants 200] [--noop 1000] [--full]

Without PGTENANTS_DSN an embedded server is started.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import django_requests as project

SIDES = ("tenantkit", "django-tenants")

MIGRATION_2 = """
from django.db import migrations, models

class Migration(migrations.Migration):
    dependencies = [("items", "0001_initial")]
    operations = [
        migrations.AddField("item", "note", models.TextField(null=True)),
        migrations.AddIndex("item", models.Index(fields=["note"], name="items_item_note_idx")),
    ]
"""

BARE_DDL = (
    'ALTER TABLE "items_item" ADD COLUMN "note" text NULL;\n'
    'CREATE INDEX "items_item_note_idx" ON "items_item" ("note");'
)


# -- a worker: one side, one phase, one process ----------------------------------------------


def _grow(side: str, total: int) -> None:
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


def worker(side: str, conninfo: str, root: str, phase: str, n: int) -> None:
    """Run one phase; timed phases print ``{"seconds": ...}``."""
    sys.path.insert(0, root)
    import django
    from django.conf import settings

    settings.configure(**project._settings(side, conninfo))
    django.setup()
    from django.core.management import call_command

    if phase == "setup":
        from bench_proj.customers.models import Client

        if side == "tenantkit":
            call_command("migrate_schemas", shared=True, verbosity=0)
        else:
            call_command("migrate_schemas", shared=True, verbosity=0, interactive=False)
        Client(schema_name="public").save(verbosity=0)
        Client(schema_name="t0").save(verbosity=0)
        _grow(side, n)
        if side == "tenantkit":  # adopt the copies' Django history (once, not timed)
            call_command("migrate_schemas", verbosity=0)
        return
    if phase == "grow":
        _grow(side, n)
        if side == "tenantkit":
            call_command("migrate_schemas", verbosity=0)
        return
    started = time.perf_counter()
    if side == "tenantkit":
        call_command("migrate_schemas", tenant=True, verbosity=0)
    else:
        call_command("migrate_schemas", tenant=True, verbosity=0, interactive=False)
    print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


def _run(side: str, conninfo: str, root: str, phase: str, n: int) -> float | None:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", side, conninfo, root, phase, str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{side} {phase} failed:\n{done.stderr[-3000:]}")
    out = done.stdout
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return float(json.loads(lines[-1])["seconds"]) if lines else None


def _bare(conninfo: str, n: int) -> float:
    """The DDL alone, per schema, one transaction each, over one connection."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(conninfo, autocommit=True) as conn:
        for i in range(n):
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(f"b{i}")))
            conn.execute(
                sql.SQL(
                    'create table {} ("id" bigint primary key generated by default as '
                    'identity, "name" varchar(100) not null)'
                ).format(sql.Identifier(f"b{i}", "items_item"))
            )
        started = time.perf_counter()
        for i in range(n):
            path = sql.Identifier(f"b{i}").as_string(conn)
            conn.execute(
                f"begin; set local search_path to {path}, public; {BARE_DDL} commit".encode()
            )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--noop", type=int, default=1000)
    parser.add_argument("--full", action="store_true", help="django-tenants' no-op at --noop too")
    parser.add_argument("--worker", nargs=5, metavar=("SIDE", "CONNINFO", "ROOT", "PHASE", "N"))
    args = parser.parse_args()
    if args.worker:
        side, conninfo, root, phase, n = args.worker
        worker(side, conninfo, root, phase, int(n))
        return

    from tenantkit.server import server_conninfo_from_env, temporary_database

    n = args.tenants
    results: dict[str, dict[str, float | None]] = {s: {} for s in SIDES}
    with (
        server_conninfo_from_env() as server,
        tempfile.TemporaryDirectory() as tmp,
        temporary_database(server, prefix="bm_tk") as db_tk,
        temporary_database(server, prefix="bm_dt") as db_dt,
        temporary_database(server, prefix="bm_bare") as db_bare,
    ):
        dbs = {"tenantkit": db_tk, "django-tenants": db_dt}
        roots = {}
        for side in SIDES:
            root = Path(tmp) / side
            root.mkdir()
            project.write_project(root)
            roots[side] = str(root)
            _run(side, dbs[side], str(root), "setup", n)
            results[side][f"noop_{n}"] = _run(side, dbs[side], str(root), "noop", n)
            (root / "bench_proj" / "items" / "migrations" / "0002_note.py").write_text(MIGRATION_2)
            results[side][f"apply_{n}"] = _run(side, dbs[side], str(root), "apply", n)
            if side == "tenantkit" or args.full:
                _run(side, dbs[side], str(root), "grow", args.noop)
                results[side][f"noop_{args.noop}"] = _run(
                    side, dbs[side], str(root), "noop", args.noop
                )
        bare = _bare(db_bare, n)
    tk, dt = results["tenantkit"], results["django-tenants"]
    print(f"tenants: {n}; no-op also at {args.noop}")
    print(f"{'measure':<24}{'tenantkit':>12}{'django-tenants':>16}{'ratio':>10}")
    for key in tk:
        a, b = tk.get(key), dt.get(key)
        ratio = f"{b / a:>9.1f}x" if a and b else "         -"
        b_text = f"{b:>15.3f}s" if b is not None else f"{'(--full)':>16}"
        print(f"{key:<24}{a:>11.3f}s{b_text}{ratio}")
    apply = tk[f"apply_{n}"] or 0.0
    print(
        f"bare DDL, {n} schemas: {bare:.3f}s; tenantkit apply / bare = {apply / bare:.2f}x "
        "(target < 1.5x)"
    )
    noop = tk.get(f"noop_{args.noop}")
    print(f"tenantkit no-op over {args.noop} tenants: {noop:.3f}s (target < 1 s)")


if __name__ == "__main__":
    main()
