"""Command-line benchmark: what the ``tenantkit`` command costs over many tenants.

Each figure is a median of --repeat runs of the real console script, set beside a baseline
measured in the same run:

* start-up: ``tenantkit --version`` (the floor of every command: Python and imports);
* ``plan``, ``list --json`` and ``list --limit 20`` over --tenants tenants;
* ``create NAME`` (one tenant per command) beside ``create --from-file`` of 100 tenants (one
  command), per tenant, and beside ``Tenancy.create_tenant`` in-process (the transaction alone);
* ``run --all -- "select count(*) from notes"`` (as a table, and as ``--json``) beside the
  hand-written loop it replaces (one psycopg connection, per tenant ``SET search_path`` and the
  query in one transaction); the ratio takes the start-up median off ``--json``'s time;
* ``run --all --jobs 4`` on a statement that waits 2 ms, beside ``--jobs 1``.

Run:  python benchmarks/cli.py [--dsn CONNINFO] [--tenants 1000] [--repeat 5]
Without --dsn (or PGTENANTS_DSN) an embedded server is started. A scratch database holds the
tenants (the packaged demo project: a shared ``plans`` table, a tenant ``notes`` table) and is
dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from tenantkit import Tenancy, _demo
from tenantkit.provisioning import Template
from tenantkit.server import EmbeddedServer, ExternalServer, temporary_database

MIGRATIONS = str(_demo.MIGRATIONS)


def command() -> list[str]:
    """The installed console script next to this Python, else ``python -m tenantkit.cli``."""
    script = Path(sys.executable).with_name("tenantkit")
    if script.exists():
        return [str(script)]
    found = shutil.which("tenantkit")
    return [found] if found else [sys.executable, "-m", "tenantkit.cli"]


def timed_cli(dsn: str, *args: str, repeat: int, each: list[list[str]] | None = None) -> float:
    """Median wall time of ``tenantkit --dsn DSN ARGS`` (output discarded); with ``each``,
    run ``i`` appends ``each[i]`` to the arguments."""
    env = {k: v for k, v in os.environ.items() if k not in ("PGTENANTS_DSN", "DATABASE_URL")}
    env["TENANTKIT_MIGRATIONS"] = MIGRATIONS
    samples = []
    for i in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [*command(), "--dsn", dsn, *args, *(each[i] if each else [])],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def create_in_process(tenancy: Tenancy, names: list[str]) -> float:
    """Median time of ``create_tenant`` (from the template) in this process."""
    samples = []
    for schema in names:
        started = time.perf_counter()
        tenancy.create_tenant(schema)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def hand_loop(dsn: str, schemas: list[str], repeat: int) -> float:
    """Median time of the loop ``run --all`` replaces, connection included."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        with psycopg.connect(dsn) as conn:
            for schema in schemas:
                with conn.transaction():
                    conn.execute(
                        sql.SQL("set local search_path to {}, public").format(
                            sql.Identifier(schema)
                        )
                    )
                    conn.execute("select count(*) from notes").fetchall()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGTENANTS_DSN"))
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # The given server, or an embedded one for the duration of the run.
    server: ExternalServer | EmbeddedServer = (
        ExternalServer(args.dsn) if args.dsn else EmbeddedServer()
    )
    with (
        server,
        temporary_database(server.conninfo, prefix="tk_cli") as dsn,
        tempfile.TemporaryDirectory() as folder,
    ):
        print(f"setting up {args.tenants} tenants...", file=sys.stderr)
        with Tenancy(dsn, migrations=MIGRATIONS) as tenancy:
            tenancy.install()
            tenancy.migrate()
            Template(tenancy).ensure()
            schemas = [f"t{i:05d}" for i in range(args.tenants)]
            for schema in schemas:
                tenancy.create_tenant(schema, domains=[f"{schema}.example.test"])
            in_process = create_in_process(tenancy, [f"p{i:03d}" for i in range(args.repeat)])
        n, r = args.tenants, args.repeat
        startup = timed_cli(dsn, "--version", repeat=r)
        plan = timed_cli(dsn, "plan", repeat=r)
        listing = timed_cli(dsn, "list", "--json", repeat=r)
        page = timed_cli(dsn, "list", "--limit", "20", repeat=r)
        one = timed_cli(dsn, "create", repeat=r, each=[[f"c{i:03d}"] for i in range(r)])
        bulk = 100
        files = []
        for i in range(r):
            listing_file = Path(folder, f"batch{i}.txt")
            names = (f"b{i}_{j:03d} b{i}-{j:03d}.example.test" for j in range(bulk))
            listing_file.write_text("\n".join(names) + "\n")
            files.append(["--from-file", str(listing_file)])
        from_file = timed_cli(dsn, "create", repeat=r, each=files)
        count = "select count(*) from notes"
        run_all = timed_cli(dsn, "run", "--all", "--", count, repeat=r)
        run_json = timed_cli(dsn, "run", "--all", "--json", "--", count, repeat=r)
        loop = hand_loop(dsn, schemas, r)
        wait = "select pg_sleep(0.002)"
        serial = timed_cli(dsn, "run", "--all", "--", wait, repeat=r)
        parallel = timed_cli(dsn, "run", "--all", "--jobs", "4", "--", wait, repeat=r)

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:6.0f} ms"

    rows = [
        ("start-up (tenantkit --version)", ms(startup), ""),
        ("plan", ms(plan), f"{ms(plan - startup)} after start-up"),
        ("list --json", ms(listing), f"{ms(listing - startup)} after start-up"),
        ("list --limit 20", ms(page), f"{ms(page - startup)} after start-up"),
        ("create NAME, one tenant per command", ms(one), f"{ms(one - startup)} after start-up"),
        (
            f"create --from-file, {bulk} tenants",
            ms(from_file),
            f"{ms(from_file / bulk)} per tenant, {one * bulk / from_file:.0f}x faster than "
            f"{bulk} commands",
        ),
        ("create_tenant() in-process, per tenant", ms(in_process), "the transaction alone"),
        ("run --all, select count(*), table", ms(run_all), f"{ms(run_all - run_json)} drawing"),
        ("run --all, select count(*), --json", ms(run_json), ""),
        ("hand-written loop, same statements", ms(loop), ""),
        (
            "run --all --json / loop, start-up off",
            f"{(run_json - startup) / loop:7.2f}x",
            f"{(run_json - startup) / n * 1e6:.0f} vs {loop / n * 1e6:.0f} us per tenant",
        ),
        ("run --all, 2 ms statement, jobs=1", ms(serial), ""),
        ("run --all, 2 ms statement, jobs=4", ms(parallel), f"{serial / parallel:.2f}x faster"),
    ]
    print(f"tenantkit command over {n} tenants, medians of {r} runs")
    for what, value, note in rows:
        print(f"  {what:<36} {value}   {note}".rstrip())


if __name__ == "__main__":
    main()
