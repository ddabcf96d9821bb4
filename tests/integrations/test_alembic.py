"""tenantkit.alembic: Alembic revisions migrated across tenant schemas by tenantkit's engine,
compared with Alembic's own cookbook recipe (one `alembic -x tenant=` run per schema)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from psycopg import sql

from tenantkit import Tenancy
from tenantkit.alembic import AlembicSource, adopt
from tenantkit.introspection.catalog import read_catalog
from tenantkit.migrations import MigrationSource, migrate, plan, template_schema_name
from tenantkit.provisioning import MigrationProvisioner, Template

SHOP = Path(__file__).parent / "alembic_projects" / "shop" / "alembic.ini"


@pytest.fixture
def shared_name() -> str:
    """A unique shared schema, so each test has its own registry and tenants."""
    return f"al_{uuid.uuid4().hex[:10]}"


def _drop_all(dsn: str, shared: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select nspname from pg_namespace where nspname like %s or nspname = %s",
            (shared + "%", template_schema_name(shared)),
        ).fetchall()
        for (name,) in rows:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


@pytest.fixture
def tenancy(dsn: str, shared_name: str) -> Iterator[Tenancy]:
    """An installed tenancy on its own shared schema (no migrations of its own)."""
    try:
        with Tenancy(dsn, shared_schema=shared_name) as t:
            t.install()
            yield t
    finally:
        _drop_all(dsn, shared_name)


def make_tenants(t: Tenancy, n: int) -> list[str]:
    """``n`` empty tenant schemas, registered."""
    return [t.create_tenant(f"{t.shared_schema}_t{i}").schema for i in range(n)]


def alembic_version(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The rows of ``schema.alembic_version``."""
    rows = conn.execute(
        sql.SQL("select version_num from {} order by 1").format(
            sql.Identifier(schema, "alembic_version")
        )
    ).fetchall()
    return [r[0] for r in rows]


def structure(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """The schema's catalog, without tenantkit's own history table."""
    objects = read_catalog(conn, [schema])[schema].objects()
    return {k: v for k, v in objects.items() if "tenantkit_migrations" not in k}


def cookbook_upgrade(dsn: str, schema: str, revision: str) -> None:
    """Alembic's cookbook recipe for one schema: `alembic -x tenant=<schema> upgrade rev`."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn))
    try:
        cfg = Config(str(SHOP))
        cfg.cmd_opts = argparse.Namespace(x=[f"tenant={schema}"])
        cfg.attributes["connection"] = engine
        command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def test_revisions_become_migrations() -> None:
    source = AlembicSource(SHOP)
    assert isinstance(source, MigrationSource)
    found = source.load()
    assert found.shared == ()
    assert [m.id for m in found.tenant] == ["a1", "b2", "c3", "d4"]
    by_id = {m.id: m for m in found.tenant}
    # Rendered once to SQL that names no schema; d4 reads rows through op.get_bind(): online.
    for rid in ("a1", "b2", "c3"):
        text = by_id[rid].sql
        assert text is not None and "alembic_version" not in text
        assert "public" not in text.lower()
    assert "CREATE TYPE order_status" in (by_id["b2"].sql or "")
    assert by_id["d4"].sql is None and by_id["d4"].runner is not None
    path = SHOP.parent / "versions" / "c3_limits.py"
    assert by_id["c3"].checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    # Pinned to a revision: only its ancestors.
    assert [m.id for m in AlembicSource(SHOP, revision="b2").load().tenant] == ["a1", "b2"]
    # Worker processes get it by pickle.
    again = pickle.loads(pickle.dumps(source))
    assert [m.id for m in again.load().tenant] == ["a1", "b2", "c3", "d4"]
    hook = source.after_schema("tenant", "acme", ["a1", "b2"], ["b2"])
    assert hook is not None
    assert '"acme"."alembic_version"' in hook.as_string()


def test_200_tenants_one_pending_revision_equal_to_the_cookbook(
    tenancy: Tenancy, dsn: str, conn: psycopg.Connection[Any]
) -> None:
    schemas = make_tenants(tenancy, 200)
    first = tenancy.migrate(migrations=AlembicSource(SHOP, revision="b2"), jobs=2)
    assert first.ok and first.counts()["applied"] == 200
    head = AlembicSource(SHOP, revision="c3")
    pending = plan(tenancy, migrations=head)
    assert {e.schema: e.pending for e in pending.pending} == dict.fromkeys(schemas, ("c3",))

    report = migrate(tenancy, migrations=head, jobs=2, executor="threads")
    assert report.ok
    assert sorted(r.schema for r in report.results if r.status == "applied") == sorted(schemas)
    assert plan(tenancy, migrations=head).is_empty
    assert {s: alembic_version(conn, s) for s in schemas} == {s: ["c3"] for s in schemas}

    # The same revisions through Alembic's cookbook recipe, in a schema of its own.
    baseline = f"{tenancy.shared_schema}_cookbook"
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(baseline)))
    cookbook_upgrade(dsn, baseline, "b2")
    cookbook_upgrade(dsn, baseline, "c3")
    expected = structure(conn, baseline)
    assert "column accounts.credit_limit" in expected
    assert "table alembic_version" in expected
    for s in (schemas[0], schemas[117], schemas[-1]):
        assert structure(conn, s) == expected
    assert alembic_version(conn, baseline) == ["c3"]


def test_a_failing_revision_leaves_its_tenant_unchanged(
    tenancy: Tenancy, conn: psycopg.Connection[Any]
) -> None:
    schemas = make_tenants(tenancy, 4)
    assert tenancy.migrate(migrations=AlembicSource(SHOP, revision="b2")).ok
    bad = schemas[2]
    conn.execute(
        sql.SQL("insert into {} (name, balance) values ('overdrawn', -5)").format(
            sql.Identifier(bad, "accounts")
        )
    )
    before = structure(conn, bad)
    report = tenancy.migrate(migrations=AlembicSource(SHOP, revision="c3"), jobs=2)
    assert not report.ok
    outcome = {r.schema: r for r in report.results}
    assert outcome[bad].status == "failed" and outcome[bad].migration == "c3"
    assert "accounts_balance_positive" in (outcome[bad].error or "")
    assert all(outcome[s].status == "applied" for s in schemas if s != bad)
    # The failing tenant: same structure, same alembic_version.
    assert structure(conn, bad) == before
    assert alembic_version(conn, bad) == ["b2"]
    assert [alembic_version(conn, s) for s in schemas if s != bad] == [["c3"]] * 3

    # Data fixed: the next run migrates it, and only it.
    conn.execute(sql.SQL("update {} set balance = 0").format(sql.Identifier(bad, "accounts")))
    again = tenancy.migrate(migrations=AlembicSource(SHOP, revision="c3"))
    assert [r.schema for r in again.results if r.status == "applied"] == [bad]
    assert alembic_version(conn, bad) == ["c3"]


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_online_revision_runs_through_alembic_in_each_tenant(
    tenancy: Tenancy, conn: psycopg.Connection[Any], executor: Any
) -> None:
    schemas = make_tenants(tenancy, 6)
    assert tenancy.migrate(migrations=AlembicSource(SHOP, revision="c3")).ok
    for i, schema in enumerate(schemas):  # tenant i holds i accounts
        for j in range(i):
            conn.execute(
                sql.SQL("insert into {} (name) values (%s)").format(
                    sql.Identifier(schema, "accounts")
                ),
                (f"a{j}",),
            )
    report = tenancy.migrate(migrations=AlembicSource(SHOP), jobs=2, executor=executor)
    assert report.ok, [r.error for r in report.results if r.error]
    counts = [
        conn.execute(sql.SQL("select value from {}").format(sql.Identifier(s, "stats"))).fetchall()
        for s in schemas
    ]
    # op.get_bind() read each tenant's own rows, even with two workers at once (Alembic's op
    # proxy is one global: without tenantkit's lock, operations crossed connections).
    assert counts == [[(i,)] for i in range(len(schemas))]
    assert [alembic_version(conn, s) for s in schemas] == [["d4"]] * len(schemas)


def test_online_revision_failure_rolls_back_its_tenant(
    tenancy: Tenancy, conn: psycopg.Connection[Any]
) -> None:
    schemas = make_tenants(tenancy, 2)
    assert tenancy.migrate(migrations=AlembicSource(SHOP, revision="c3")).ok
    # A table in the way: d4's create_table fails in that tenant only.
    conn.execute(sql.SQL("create table {} (x int)").format(sql.Identifier(schemas[0], "stats")))
    report = tenancy.migrate(migrations=AlembicSource(SHOP))
    outcome = {r.schema: r.status for r in report.results}
    assert outcome[schemas[0]] == "failed" and outcome[schemas[1]] == "applied"
    assert alembic_version(conn, schemas[0]) == ["c3"]


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from types import SimpleNamespace
    from tenantkit.alembic import AlembicSource
    from tenantkit.migrations import migrate

    dsn, shared, ini, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def progress(event):
        if event.done >= after:
            os.kill(os.getpid(), signal.SIGKILL)  # killed outright, mid-run

    migrate(SimpleNamespace(conninfo=dsn, shared_schema=shared), migrations=AlembicSource(ini),
            progress=progress)
    """
)


def test_killed_halfway_then_rerun_resumes(
    tenancy: Tenancy, dsn: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    schemas = make_tenants(tenancy, 12)
    assert tenancy.migrate(migrations=AlembicSource(SHOP, revision="b2")).ok
    project = tmp_path / "shop"
    shutil.copytree(SHOP.parent, project, ignore=shutil.ignore_patterns("d4_*", "__pycache__"))
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run(
        [sys.executable, script, dsn, tenancy.shared_schema, project / "alembic.ini", "5"],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    done = [s for s in schemas if alembic_version(conn, s) == ["c3"]]
    assert 5 <= len(done) < len(schemas)

    report = tenancy.migrate(migrations=AlembicSource(project / "alembic.ini"))
    assert report.ok
    assert report.resumed_from is not None
    applied = sorted(r.schema for r in report.results if r.status == "applied")
    assert applied == sorted(set(schemas) - set(done))
    assert {s: alembic_version(conn, s) for s in schemas} == {s: ["c3"] for s in schemas}


def test_new_tenants_start_at_the_alembic_head(
    tenancy: Tenancy, conn: psycopg.Connection[Any]
) -> None:
    tenancy.migration_source = AlembicSource(SHOP, revision="c3")
    tenancy.provisioner = MigrationProvisioner(tenancy)
    first = tenancy.create_tenant(f"{tenancy.shared_schema}_new1")
    assert tenancy.provisioner.last_path == "migrations"  # no template yet: replayed
    assert plan(tenancy).is_empty
    # The template, brought to the head by the engine, alembic_version included.
    template = template_schema_name(tenancy.shared_schema)
    Template(tenancy).ensure()
    assert alembic_version(conn, template) == ["c3"]
    expected = structure(conn, template)
    assert "column accounts.credit_limit" in expected
    replayed = structure(conn, first.schema)

    def tables_only(found: dict[str, str]) -> dict[str, str]:
        # alembic_version is checked by test_new_tenants_carry_alembic_version.
        return {k: v for k, v in found.items() if "alembic_version" not in k}

    assert tables_only(replayed) == tables_only(expected)
    # With the template at the head, the next tenant is a clone of it.
    second = tenancy.create_tenant(f"{tenancy.shared_schema}_new2")
    assert tenancy.provisioner.last_path == "template"
    assert structure(conn, second.schema) == expected
    assert plan(tenancy).is_empty


def test_new_tenants_carry_alembic_version(tenancy: Tenancy, conn: psycopg.Connection[Any]) -> None:
    tenancy.migration_source = AlembicSource(SHOP, revision="c3")
    tenancy.provisioner = MigrationProvisioner(tenancy)
    replayed = tenancy.create_tenant(f"{tenancy.shared_schema}_v1")
    Template(tenancy).ensure()
    cloned = tenancy.create_tenant(f"{tenancy.shared_schema}_v2")
    assert tenancy.provisioner.last_path == "template"
    assert alembic_version(conn, cloned.schema) == ["c3"]
    assert alembic_version(conn, replayed.schema) == ["c3"]


def test_autogenerate_compares_with_the_template(
    tenancy: Tenancy, dsn: str, tmp_path: Path
) -> None:
    project = tmp_path / "shop"
    shutil.copytree(SHOP.parent, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "models.py").write_text(
        textwrap.dedent(
            """
            import sqlalchemy as sa

            metadata = sa.MetaData()
            sa.Table(
                "notes", metadata,
                sa.Column("id", sa.Integer, primary_key=True),
                sa.Column("body", sa.Text, nullable=False),
            )
            """
        )
    )
    (project / "env.py").write_text(
        textwrap.dedent(
            """
            import sys
            from pathlib import Path

            sys.path.insert(0, str(Path(__file__).parent))
            from alembic import context
            from models import metadata
            from tenantkit.alembic import run_env

            run_env(context, metadata, shared_schema=context.config.get_main_option("shared"),
                    include_object=lambda o, name, type_, r, c: type_ != "table" or name == "notes")
            """
        )
    )
    url = "postgresql+psycopg:///?" + "&".join(
        f"{k}={v}" for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items()
    )
    cfg = Config(str(project / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("shared", tenancy.shared_schema)
    script = command.revision(cfg, message="notes", autogenerate=True, rev_id="e5")
    assert script is not None and not isinstance(script, list)
    upgrade = Path(script.path).read_text().split("def downgrade")[0]
    assert "op.create_table('notes'" in upgrade
    assert "schema=" not in upgrade
    # Nothing else: tenantkit's table, alembic_version and the tenant's are not "extra".
    assert "drop_table" not in upgrade and "add_column" not in upgrade


def test_upgrade_through_run_env_is_refused(tmp_path: Path) -> None:
    from alembic.util import CommandError

    project = tmp_path / "shop"
    shutil.copytree(SHOP.parent, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "env.py").write_text(
        "from alembic import context\nfrom tenantkit.alembic import run_env\nrun_env(context)\n"
    )
    cfg = Config(str(project / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", "postgresql+psycopg:///nowhere")
    cfg.cmd_opts = argparse.Namespace(cmd=(command.upgrade, [], []), x=None)
    with pytest.raises(CommandError, match="tenantkit migrate --alembic"):
        command.upgrade(cfg, "head")
    # Offline it renders SQL naming no schema.
    out = tmp_path / "out.sql"
    with out.open("w") as fh:
        cfg2 = Config(str(project / "alembic.ini"), output_buffer=fh)
        command.upgrade(cfg2, "c3", sql=True)
    assert "CREATE TABLE accounts" in out.read_text()


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantkit.cli", "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_cli_migrate_alembic(tenancy: Tenancy, dsn: str, conn: psycopg.Connection[Any]) -> None:
    schemas = make_tenants(tenancy, 3)
    shared = ["--shared-schema", tenancy.shared_schema]
    found = _cli(dsn, "migrate", "--alembic", str(SHOP), *shared, "--plan", "--json")
    assert found.returncode == 0, found.stderr
    pending = {p["schema"]: tuple(p["migrations"]) for p in json.loads(found.stdout)["pending"]}
    assert pending == dict.fromkeys(schemas, ("a1", "b2", "c3", "d4"))
    done = _cli(dsn, "migrate", "--alembic", str(SHOP), *shared, "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [alembic_version(conn, s) for s in schemas] == [["d4"]] * 3
    check = _cli(dsn, "plan", "--alembic", str(SHOP), *shared, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    both = _cli(dsn, "migrate", "--alembic", str(SHOP), "--migrations", str(SHOP.parent), *shared)
    assert both.returncode == 2 and "not both" in both.stderr


def test_adopt_schemas_migrated_by_the_cookbook(
    tenancy: Tenancy, dsn: str, conn: psycopg.Connection[Any]
) -> None:
    old, fresh = make_tenants(tenancy, 2)
    cookbook_upgrade(dsn, old, "b2")  # before tenantkit: Alembic's recipe
    source = AlembicSource(SHOP, revision="c3")
    assert adopt(tenancy, source) == {old: ["a1", "b2"]}
    pending = {e.schema: e.pending for e in plan(tenancy, migrations=source).pending}
    assert pending == {old: ("c3",), fresh: ("a1", "b2", "c3")}
    assert migrate(tenancy, migrations=source).ok
    assert alembic_version(conn, old) == alembic_version(conn, fresh) == ["c3"]
    assert structure(conn, old) == structure(conn, fresh)
    assert adopt(tenancy, source) == {}  # nothing left to adopt
