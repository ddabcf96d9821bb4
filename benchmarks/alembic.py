"""tenantkit.alembic against Alembic's cookbook recipe, side by side in one run (issue 15).

The project is tests/integrations/alembic_projects/shop (revisions a1, b2, c3; d4 is left out
with ``revision="c3"``). Each method gets its own --tenants schemas at revision b2 and applies
c3 to them, once per round (fresh schemas each round); medians are printed with ratios:

* cookbook: Alembic's "schema-level multi tenancy" recipe, ``alembic -x tenant=<schema>
  upgrade c3`` per schema (in process, one engine: the recipe at its cheapest);
* offline replay: ``alembic upgrade b2:c3 --sql`` rendered once, then sent to each schema in
  one transaction with its search_path (the floor: the bare SQL, one connection);
* tenantkit: ``migrate(migrations=AlembicSource(...))``, sequential, and with 2 threads.

No-op (everything at c3): the cookbook over --tenants schemas, tenantkit over --tenants and
--noop-tenants. Targets: apply within 1.5x of the offline replay; no-op of 1,000 < 1 s.

Run:  python benchmarks/alembic.py [--dsn CONNINFO] [--tenants 200] [--noop-tenants 1000]
Without --dsn (or PGTENANTS_DSN) an embedded server is started; a scratch database is created
and dropped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder is sys.path[0], and this file (alembic.py) would shadow
# the real alembic package (so would benchmarks/sqlalchemy.py shadow SQLAlchemy).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import io
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from psycopg import sql

from tenantkit.alembic import AlembicSource
from tenantkit.core.tenancy import Tenancy
from tenantkit.migrations import migrate
from tenantkit.server import EmbeddedServer, ExternalServer, temporary_database

INI = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "integrations"
    / "alembic_projects"
    / "shop"
    / "alembic.ini"
)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def workload_project(root: Path) -> Path:
    """The standard workload (benchmarks/workload) as an Alembic project: revision w1 makes
    its 20 tenant tables, w2 adds a column and an index to each; the shop's env.py (the
    cookbook recipe)."""
    shutil.copytree(INI.parent, root, ignore=shutil.ignore_patterns("versions", "__pycache__"))
    versions = root / "versions"
    versions.mkdir()
    workload = Path(__file__).resolve().parent / "workload" / "migrations" / "tenant"
    for rev, down, name in (("w1", None, "0001_shop.sql"), ("w2", "w1", "0002_note.sql")):
        text = (workload / name).read_text()
        (versions / f"{rev}.py").write_text(
            f"from alembic import op\n\nrevision = {rev!r}\ndown_revision = {down!r}\n"
            f"branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n"
            f"    op.execute({text!r})\n"
        )
    return root / "alembic.ini"


def cookbook(conninfo: str, schemas: Sequence[str], revision: str, ini: Path = INI) -> None:
    """Alembic's recipe, one `upgrade` per schema with `-x tenant=<schema>`."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo))
    try:
        for schema in schemas:
            cfg = Config(str(ini))
            cfg.cmd_opts = argparse.Namespace(x=[f"tenant={schema}"])
            cfg.attributes["connection"] = engine
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def offline_sql(start: str, end: str, ini: Path = INI) -> str:
    """`alembic upgrade start:end --sql`, without its BEGIN/COMMIT (the replay adds them)."""
    buf = io.StringIO()
    cfg = Config(str(ini), output_buffer=buf)
    command.upgrade(cfg, f"{start}:{end}", sql=True)
    lines = [
        line for line in buf.getvalue().splitlines() if line.strip() not in ("BEGIN;", "COMMIT;")
    ]
    return "\n".join(lines)


def replay(conninfo: str, schemas: Sequence[str], body: str) -> None:
    """The offline SQL sent to each schema: one message, one transaction, one connection."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for schema in schemas:
            path = sql.SQL("{}, public").format(sql.Identifier(schema)).as_string(conn)
            conn.execute(f"begin;\nset local search_path to {path};\n{body}\ncommit".encode())


def make_tenants(
    tenancy: Tenancy, prefix: str, n: int, ini: Path = INI, revision: str = "b2"
) -> list[str]:
    """``n`` registered tenants at ``revision`` (migrated by tenantkit, 2 threads)."""
    schemas = [tenancy.create_tenant(f"{prefix}_{i}").schema for i in range(n)]
    report = migrate(
        tenancy,
        migrations=AlembicSource(ini, revision=revision),
        schemas=schemas,
        jobs=2,
        executor="threads",
    )
    assert report.ok, report
    return schemas


def check_at(conn: psycopg.Connection[Any], schemas: Sequence[str], revision: str) -> None:
    """Every schema's alembic_version says ``revision`` and the column exists."""
    for schema in (schemas[0], schemas[-1]):
        row = conn.execute(
            sql.SQL("select version_num from {}").format(sql.Identifier(schema, "alembic_version"))
        ).fetchone()
        assert row is not None and row[0] == revision, (schema, row)


def one_round(
    tenancy: Tenancy,
    conn: psycopg.Connection[Any],
    conninfo: str,
    r: int,
    n: int,
    times: dict[str, list[float]],
    *,
    label: str,
    ini: Path,
    start: str,
    end: str,
    noop: bool,
) -> None:
    """Fresh tenants at ``start`` for each method, ``end`` applied by each, then no-ops."""
    names = ("cookbook", "replay", "tk1", "tk2")
    groups = {name: make_tenants(tenancy, f"{label}{r}_{name}", n, ini, start) for name in names}
    body = offline_sql(start, end, ini)
    head = AlembicSource(ini, revision=end)

    def note(name: str, fn: Callable[[], object]) -> None:
        times.setdefault(f"{name} [{label}]", []).append(timed(fn))

    note("apply: cookbook recipe", lambda: cookbook(conninfo, groups["cookbook"], end, ini))
    note("apply: offline SQL replay", lambda: replay(conninfo, groups["replay"], body))
    note(
        "apply: tenantkit sequential",
        lambda: migrate(tenancy, migrations=head, schemas=groups["tk1"]),
    )
    note(
        "apply: tenantkit 2 threads",
        lambda: migrate(
            tenancy, migrations=head, schemas=groups["tk2"], jobs=2, executor="threads"
        ),
    )
    for schemas in groups.values():
        check_at(conn, schemas, end)
    if noop:
        note("no-op: cookbook recipe", lambda: cookbook(conninfo, groups["cookbook"], end, ini))
        note(
            "no-op: tenantkit, same tenants",
            lambda: migrate(tenancy, migrations=head, schemas=groups["tk1"]),
        )
    # The baselines moved alembic_version behind tenantkit's back, and the workload's
    # tenants follow another project: they go.
    gone = names if label != "shop" else ("cookbook", "replay")
    for name in gone:
        for schema in groups[name]:
            tenancy.drop_tenant(schema, cascade=True)


def run(conninfo: str, n: int, noop_n: int, rounds: int) -> list[tuple[str, float]]:
    head = AlembicSource(INI, revision="c3")
    times: dict[str, list[float]] = {}
    workload = workload_project(Path(tempfile.mkdtemp(prefix="tk_bench_alembic_")) / "wl")
    with (
        Tenancy(conninfo, min_size=1, max_size=2) as tenancy,
        psycopg.connect(conninfo, autocommit=True) as conn,
    ):
        tenancy.install()
        try:
            for r in range(rounds):
                one_round(
                    tenancy,
                    conn,
                    conninfo,
                    r,
                    n,
                    times,
                    label="shop",
                    ini=INI,
                    start="b2",
                    end="c3",
                    noop=True,
                )
                one_round(
                    tenancy,
                    conn,
                    conninfo,
                    r,
                    n,
                    times,
                    label="workload",
                    ini=workload,
                    start="w1",
                    end="w2",
                    noop=False,
                )
        finally:
            shutil.rmtree(workload.parent.parent, ignore_errors=True)
        # Tenants up to --noop-tenants, all at c3, for the big no-op.
        total = rounds * 2 * n  # the shop's tenantkit groups stay
        extra = max(0, noop_n - total)
        if extra:
            make_tenants(tenancy, "noop", extra)
        assert migrate(tenancy, migrations=head, jobs=2, executor="threads").ok
        registered = conn.execute("select count(*) from public.tenantkit_tenants").fetchone()
        assert registered is not None
        for _ in range(max(3, rounds)):
            t = timed(lambda: migrate(tenancy, migrations=head))
            times.setdefault(f"no-op: tenantkit, {registered[0] - 1} tenants [shop]", []).append(t)
    return [(name, statistics.median(values)) for name, values in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGTENANTS_DSN"))
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--noop-tenants", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server: ExternalServer | EmbeddedServer = (
        ExternalServer(args.dsn) if args.dsn else EmbeddedServer()
    )
    with server, temporary_database(server.conninfo, prefix="tk_bench_alembic") as db:
        rows = run(db, args.tenants, args.noop_tenants, args.rounds)
    figures = dict(rows)
    print(f"tenantkit.alembic vs Alembic's cookbook recipe, {args.tenants} tenants per method")
    print(f"(medians of {args.rounds} rounds; ratio = time / offline SQL replay, same project)")
    print("  shop: revision c3 (a column, an index, a check); workload: the standard workload's")
    print("  second migration (a column and an index on 20 tables)")
    for name, value in rows:
        project = name[name.rindex("[") + 1 : -1]
        floor = figures[f"apply: offline SQL replay [{project}]"]
        ratio = f"{value / floor:6.2f}x" if name.startswith("apply") else ""
        print(f"  {name:<50} {value * 1000:9.1f} ms  {ratio}")
    cookbook_noop = figures["no-op: cookbook recipe [shop]"]
    same = figures["no-op: tenantkit, same tenants [shop]"]
    print(f"  no-op speed-up over the cookbook recipe: {cookbook_noop / same:.0f}x")


if __name__ == "__main__":
    main()
