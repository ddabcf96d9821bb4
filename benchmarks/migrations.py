"""Migrations and provisioning benchmark on the standard workload (DESIGN.md section 4).

Every figure is set beside the same statements sent directly ("bare DDL": one connection, one
transaction per tenant, search_path set to the tenant), measured in the same run:

* create one tenant (median of --repeat): by migrations, by template clone, by spare claim;
* create --tenants tenants;
* apply migration 0002 to --tenants tenants with 1 and 2 workers (best of --rounds);
* migrate with nothing pending over --noop-tenants tenants.

Run:  python benchmarks/migrations.py [--dsn CONNINFO] [--tenants 200] [--noop-tenants 1000]
Without --dsn (or PGTENANTS_DSN) an embedded server is started. A scratch database is created
and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tenantkit.core.tenancy import Tenancy
from tenantkit.migrations import load_migrations, migrate, plan
from tenantkit.migrations._loader import migrations_digest
from tenantkit.provisioning import MigrationProvisioner, Template
from tenantkit.server import EmbeddedServer, ExternalServer, temporary_database

WORKLOAD = Path(__file__).parent / "workload" / "migrations"
T0001 = (WORKLOAD / "tenant" / "0001_shop.sql").read_text()
T0002 = (WORKLOAD / "tenant" / "0002_note.sql").read_text()
REVERT = "".join(f"alter table shop_t{i} drop column note;\n" for i in range(20))


def bare(conn: psycopg.Connection[Any], schema: str, script: str, *, create: bool) -> None:
    """The floor: the workload's statements sent directly, one transaction."""
    ident = sql.Identifier(schema).as_string(conn)
    head = f"create schema {ident};\n" if create else ""
    with conn.transaction():
        conn.execute(f"{head}set local search_path to {ident}, public;\n{script}".encode())


def bare_create(conn: psycopg.Connection[Any], schema: str, script: str) -> None:
    bare(conn, schema, script, create=True)


def timed(fn: Callable[..., object], *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def split(items: Sequence[str], n: int) -> list[Sequence[str]]:
    return [items[i::n] for i in range(n)]


def bare_parallel(conninfo: str, schemas: Sequence[str], script: str, jobs: int) -> float:
    """``script`` applied to every schema by ``jobs`` threads, each with its own connection."""
    conns = [psycopg.connect(conninfo, autocommit=True) for _ in range(jobs)]

    def work(conn: psycopg.Connection[Any], part: Sequence[str]) -> None:
        for s in part:
            bare(conn, s, script, create=False)

    threads = [
        threading.Thread(target=work, args=(c, p))
        for c, p in zip(conns, split(schemas, jobs), strict=True)
    ]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    for c in conns:
        c.close()
    return elapsed


def revert_0002(conninfo: str, shared: str, schemas: Sequence[str]) -> None:
    """Undo migration 0002 everywhere (untimed), history and summary included."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for s in schemas:
            ident = sql.Identifier(s).as_string(conn)
            with conn.transaction():
                conn.execute(
                    f"set local search_path to {ident};\n{REVERT}"
                    "delete from tenantkit_migrations where id = '0002_note';".encode()
                )
        # The summary goes back to "0001 applied", as a migrate() that had stopped there
        # would have left it.
        first = load_migrations(WORKLOAD).tenant[0]
        conn.execute(
            sql.SQL(
                "update {}.tenantkit_migration_state set applied = %s, checksums = %s, "
                "digest = %s where schema = any(%s)"
            ).format(sql.Identifier(shared)),
            (
                [first.id],
                [first.checksum],
                migrations_digest([(first.id, first.checksum)]),
                list(schemas),
            ),
        )
        conn.execute("vacuum analyze")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGTENANTS_DSN"))
    parser.add_argument("--repeat", type=int, default=20, help="single-tenant samples [20]")
    parser.add_argument("--tenants", type=int, default=200, help="tenants to create/migrate")
    parser.add_argument("--noop-tenants", type=int, default=1000, help="tenants for the no-op")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the 0002 runs [5]")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this file")
    args = parser.parse_args()
    # The given server, or an embedded one for the duration of the run.
    server: ExternalServer | EmbeddedServer = (
        ExternalServer(args.dsn) if args.dsn else EmbeddedServer()
    )
    with server, temporary_database(server.conninfo, prefix="tk_bench") as db:
        rows = run(db, args.repeat, args.tenants, args.noop_tenants, args.rounds)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'bare DDL':>10}  {'tenantkit':>10}  {'ratio':>6}  target")
    for what, floor, ours, target in rows:
        ratio = f"{ours / floor:6.2f}" if floor else "     -"
        floor_s = f"{floor * 1000:8.1f}ms" if floor else "         -"
        print(f"{what:<{width}}  {floor_s}  {ours * 1000:8.1f}ms  {ratio}  {target}")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                [
                    {"what": w, "bare_ms": f * 1000, "tenantkit_ms": o * 1000, "target": t}
                    for w, f, o, t in rows
                ],
                indent=2,
            )
        )


def run(
    db: str, repeat: int, n: int, noop: int, rounds: int
) -> list[tuple[str, float, float, str]]:
    rows: list[tuple[str, float, float, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="tk_bench_"))
    try:
        shutil.copytree(WORKLOAD, tmp / "full")
        (tmp / "v1" / "tenant").mkdir(parents=True)
        shutil.copytree(WORKLOAD / "shared", tmp / "v1" / "shared")
        shutil.copy(WORKLOAD / "tenant" / "0001_shop.sql", tmp / "v1" / "tenant")
        with (
            Tenancy(db, shared_schema="public", migrations=tmp / "full") as tenancy,
            psycopg.connect(db, autocommit=True) as conn,
        ):
            tenancy.install()
            migrate(tenancy)
            single(rows, tenancy, conn, repeat)
            many(rows, tenancy, conn, n)
            second_migration(rows, db, tmp / "v1", n, rounds)
            noop_run(rows, tenancy, noop)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def single(rows: list[Any], tenancy: Tenancy, conn: psycopg.Connection[Any], repeat: int) -> None:
    both = T0001 + T0002
    Template(tenancy).ensure()
    tenancy.spares.fill(repeat)
    by_migrations = MigrationProvisioner(tenancy, spares=False, template=False)
    by_clone = MigrationProvisioner(tenancy, spares=False)
    by_spare = MigrationProvisioner(tenancy)
    samples: dict[str, list[float]] = {"bare": [], "m": [], "c": [], "s": []}
    # Interleaved, so that load from other processes on the machine hits every side alike.
    for i in range(repeat):
        samples["bare"].append(timed(bare_create, conn, f"bare_one_{i}", both))
        for key, prov in (("m", by_migrations), ("c", by_clone), ("s", by_spare)):
            tenancy.provisioner = prov
            samples[key].append(timed(tenancy.create_tenant, f"{key}_{i}"))
        assert (by_migrations.last_path, by_clone.last_path, by_spare.last_path) == (
            "migrations",
            "template",
            "spare",
        )
    floor = statistics.median(samples["bare"])
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows.append(("create 1 tenant, by migrations (median)", floor, med["m"], "-"))
    rows.append(("create 1 tenant, by template clone (median)", floor, med["c"], "<= 1.5x"))
    rows.append(("create 1 tenant, by spare claim (median)", floor, med["s"], "< 10 ms"))


def many(rows: list[Any], tenancy: Tenancy, conn: psycopg.Connection[Any], n: int) -> None:
    both = T0001 + T0002
    tenancy.provisioner = MigrationProvisioner(tenancy, spares=False)
    floor = ours = 0.0
    for start in range(0, n, 10):
        batch = range(start, min(n, start + 10))
        floor += sum(timed(bare_create, conn, f"bare_many_{i}", both) for i in batch)
        ours += sum(timed(tenancy.create_tenant, f"many_{i}") for i in batch)
    rows.append((f"create {n} tenants (template clone)", floor, ours, "<= 1.5x"))


def second_migration(rows: list[Any], db: str, v1: Path, n: int, rounds: int) -> None:
    with Tenancy(db, shared_schema="bench_m", migrations=v1) as tenancy:
        tenancy.install()
        migrate(tenancy)
        tpl = Template(tenancy)
        tpl.ensure()
        tenancy.provisioner = MigrationProvisioner(tenancy, spares=False)
        schemas = [tenancy.create_tenant(f"m2_{i}").schema for i in range(n)]
        everything = [*schemas, tpl.name]
        shutil.copy(WORKLOAD / "tenant" / "0002_note.sql", v1 / "tenant")
        # One untimed apply + revert first, so every timed run starts from the same state
        # (tables that have had a column added and dropped once).
        bare_parallel(db, everything, T0002, 1)
        revert_0002(db, tenancy.shared_schema, everything)
        variants: list[tuple[str, int, str]] = [
            ("bare", 1, ""),
            ("ours", 1, "sequential"),
            ("bare", 2, ""),
            ("ours", 2, "threads"),
            ("ours", 2, "processes"),
        ]
        times: dict[tuple[str, int, str], list[float]] = {v: [] for v in variants}
        for _ in range(rounds):
            for side, jobs, executor in variants:
                if side == "bare":
                    # The same schemas tenantkit migrates: the tenants and the template.
                    times[(side, jobs, executor)].append(bare_parallel(db, everything, T0002, jobs))
                else:
                    report = migrate(tenancy, shared=False, jobs=jobs, executor=executor)  # type: ignore[arg-type]
                    assert report.ok and len(report.applied) == n + 1, report.counts()
                    times[(side, jobs, executor)].append(report.duration)
                revert_0002(db, tenancy.shared_schema, everything)
        # Best of the rounds, both sides alike: the run least disturbed by other load on the
        # machine measures the work itself.
        best = {k: min(v) for k, v in times.items()}
        for (side, jobs, executor), samples in times.items():
            shown = ", ".join(f"{x * 1000:.0f}" for x in samples)
            print(f"  0002 rounds, {side} jobs={jobs} {executor}: [{shown}] ms", file=sys.stderr)
        for side, jobs, executor in variants:
            if side == "ours":
                rows.append(
                    (
                        f"apply 0002 to {n} tenants + template, jobs={jobs} "
                        f"({executor}), best of {rounds}",
                        best[("bare", jobs, "")],
                        best[(side, jobs, executor)],
                        "<= 1.3x",
                    )
                )


def noop_run(rows: list[Any], tenancy: Tenancy, noop: int) -> None:
    tenancy.provisioner = MigrationProvisioner(tenancy, spares=False)
    have = len(tenancy.tenants())
    for i in range(max(0, noop - have)):
        tenancy.create_tenant(f"noop_{i}")
    total = len(tenancy.tenants())
    p = plan(tenancy)
    assert p.is_empty, p.pending[:3]
    samples = [migrate(tenancy).duration for _ in range(5)]
    rows.append(
        (
            f"migrate, nothing pending, {total} tenants (median of 5)",
            0.0,
            statistics.median(samples),
            "< 500 ms",
        )
    )
    plans = [timed(lambda: plan(tenancy)) for _ in range(5)]
    rows.append((f"plan, {total} tenants (median of 5)", 0.0, statistics.median(plans), "-"))


if __name__ == "__main__":
    main()
