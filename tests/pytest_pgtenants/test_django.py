"""pytest_pgtenants on Django projects: django_tenant, the factory, clients, markers, isolation.

Each test copies the django-tenants project ``django_projects/dt`` into pytester's directory
and runs pytest on it in a subprocess (Django's settings are process-wide), with pytest-django
making its test database on the outer suite's server. The inner tests check the behaviour
themselves; the outer test checks the outcome and what is left on the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

pytest.importorskip("pytest_django")
pytest.importorskip("django_tenants")

PROJECT = Path(__file__).parent / "django_projects" / "dt"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing-django.md"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class DjangoProject:
    """The ``dt`` project in pytester's directory, with its database on the outer server."""

    def __init__(self, pytester: pytest.Pytester, server: str, db_name: str, backend: str) -> None:
        self.pytester = pytester
        self.server = server
        self.db_name = db_name
        self.backend = backend

    def args(self, *extra: str) -> list[str]:
        return [
            "-p",
            "pytest_pgtenants",
            "-p",
            "pytest_pgtenants._django",
            "-p",
            "no:cacheprovider",
            # Not used here, and each costs start-up time in every inner process.
            "-p",
            "no:faker",
            "-p",
            "no:hypothesispytest",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            *extra,
        ]

    def run(self, *extra: str, timeout: float = 120) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*self.args(*extra), timeout=timeout)

    def databases(self) -> set[str]:
        """This project's databases left on the server (pytest-django's ``test_<name>...``)."""
        with psycopg.connect(self.server, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                [f"test_{self.db_name}"],
            ).fetchall()
        return {r[0] for r in rows}

    def schemas(self, database: str) -> set[str]:
        """The non-system schemas of ``database``."""
        info = psycopg.conninfo.conninfo_to_dict(self.server)
        info["dbname"] = database
        with psycopg.connect(**info, autocommit=True) as conn:  # type: ignore[arg-type]
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname <> 'information_schema'"
                " AND NOT starts_with(nspname, 'pg_')"
            ).fetchall()
        return {r[0] for r in rows}

    def drop_all(self) -> None:
        with psycopg.connect(self.server, autocommit=True) as conn:
            for name in self.databases():
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


#: Run a test on both backends: ``@BOTH`` (the project's settings switch with DT_BACKEND).
BOTH = pytest.mark.parametrize("dt", ["django_tenants", "tenantkit.django"], indirect=True)


@pytest.fixture
def dt(
    request: pytest.FixtureRequest,
    pytester: pytest.Pytester,
    server_conninfo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DjangoProject]:
    """The project, ready to run; its test databases are dropped afterwards.

    On django-tenants unless parametrized with ``"tenantkit.django"`` (see ``BOTH``).
    """
    backend = getattr(request, "param", "django_tenants")
    if backend == "tenantkit.django":
        import importlib.util

        if importlib.util.find_spec("tenantkit.django.postgresql_backend") is None:
            pytest.skip("tenantkit.django is not installed here")
        monkeypatch.setenv("DT_BACKEND", "tenantkit")
    else:
        monkeypatch.delenv("DT_BACKEND", raising=False)
    for key in list(os.environ):
        if key.startswith("PGTENANTS_") and key not in ("PGTENANTS_PG_BIN", "PGTENANTS_PG_USER"):
            monkeypatch.delenv(key)
    shutil.copytree(
        PROJECT, pytester.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    pytester.makeini(
        """
        [pytest]
        DJANGO_SETTINGS_MODULE = dtproject.settings
        pythonpath = .
        asyncio_mode = auto
        asyncio_default_fixture_loop_scope = function
        pgtenants_spares = 2
        """
    )
    db_name = f"dt_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("DT_DSN", server_conninfo)
    monkeypatch.setenv("DT_DB_NAME", db_name)
    project = DjangoProject(pytester, server_conninfo, db_name, backend)
    try:
        yield project
    finally:
        project.drop_all()


BEHAVIOUR = """
import pytest
from django.db import connection
from psycopg import sql

from customers.models import Client, Domain
from shop.models import Order

SEEN = []


def _exists(schema):
    with connection.cursor() as cur:
        cur.execute("select exists (select from pg_namespace where nspname = %s)", [schema])
        return cur.fetchone()[0]


def test_fresh_first(django_tenant):
    SEEN.append(django_tenant.schema_name)
    assert connection.schema_name == django_tenant.schema_name
    assert Order.objects.count() == 0
    Order.objects.create(number=1)
    assert Order.objects.count() == 1


def test_fresh_second(django_tenant):
    assert django_tenant.schema_name != SEEN[0]
    assert Order.objects.count() == 0  # the row of the first test is gone
    assert not _exists(SEEN[0])  # and so is its schema (rolled back into a spare)


def test_saved_migrated_with_domain(django_tenant, pgtenants_django_pool):
    assert django_tenant.pk is not None
    assert Client.objects.get().schema_name == django_tenant.schema_name
    domain = Domain.objects.get(tenant=django_tenant)
    assert domain.is_primary
    assert domain.domain == django_tenant.schema_name + ".example.test"
    with connection.cursor() as cur:
        cur.execute("select app, name from django_migrations where app = 'shop' order by id")
        assert cur.fetchall() == [("shop", "0001_initial"), ("shop", "0002_notes_and_placed_at")]
        cur.execute(
            "select count(*) from information_schema.tables where table_schema = %s",
            [django_tenant.schema_name],
        )
        assert cur.fetchone()[0] >= 4  # shop_order, shop_note, contenttypes, django_migrations
    assert pgtenants_django_pool.template.startswith("_pgtenants_dj_tpl_")


@pytest.mark.django_db(transaction=True)
def test_transactional_first(django_tenant):
    SEEN.append(django_tenant.schema_name)
    Order.objects.create(number=1)


@pytest.mark.django_db(transaction=True)
def test_transactional_second(django_tenant):
    assert Order.objects.count() == 0
    assert not _exists(SEEN[-1])  # dropped after its test
    assert list(Client.objects.values_list("schema_name", flat=True)) == [
        django_tenant.schema_name
    ]


def test_factory(django_tenant, django_tenant_factory):
    acme = django_tenant_factory("acme", name="Acme")
    bare = django_tenant_factory(domains=())
    assert Client.objects.get(schema_name="acme").name == "Acme"
    assert Domain.objects.get(tenant=acme).domain == "acme.example.test"
    assert not Domain.objects.filter(tenant=bare).exists()
    assert connection.schema_name == django_tenant.schema_name  # unchanged by the factory
    with acme:
        Order.objects.create(number=7)
    assert Order.objects.count() == 0


def test_factory_boy(django_tenant_factory):
    import factory

    from pytest_pgtenants.factories import DjangoTenantFactory

    class ClientFactory(DjangoTenantFactory):
        class Meta:
            model = Client

        name = factory.Sequence(lambda n: f"Client {n}")

    acme = ClientFactory(schema_name="acme")
    other = ClientFactory(domains=["shop.other.test", "www.other.test"])
    assert acme.name.startswith("Client ") and acme.pk is not None
    assert Domain.objects.get(tenant=acme).domain == "acme.example.test"
    assert Domain.objects.get(tenant=other, is_primary=True).domain == "shop.other.test"
    assert ClientFactory.build().pk is None
    with acme:
        assert Order.objects.count() == 0


@pytest.mark.tenants("acme", "globex")
def test_marker(tenants, django_tenant):
    assert set(tenants) == {"acme", "globex"}
    assert all(isinstance(t, Client) for t in tenants.values())
    assert django_tenant == tenants["acme"]


def test_client(django_tenant_client, django_tenant, django_tenant_factory):
    assert django_tenant_client.get("/orders/").json() == {
        "schema": django_tenant.schema_name, "orders": 0
    }
    django_tenant_client.post("/orders/add/")
    assert django_tenant_client.get("/orders/").json()["orders"] == 1
    other = django_tenant_client.for_tenant(django_tenant_factory())
    assert other.get("/orders/").json()["orders"] == 0


async def test_async_client(async_django_tenant_client, django_tenant):
    response = await async_django_tenant_client.get("/orders/")
    assert response.json() == {"schema": django_tenant.schema_name, "orders": 0}


@pytest.mark.tenants("acme", "globex")
def test_isolated_when_it_is(tenants, django_tenant_client, assert_tenants_isolated):
    with assert_tenants_isolated(tenants["acme"]):
        django_tenant_client.post("/orders/add/")
    assert_tenants_isolated.between(tenants["acme"], tenants["globex"])


@pytest.mark.tenants("acme", "globex")
def test_leak_through_a_view_is_named(tenants, django_tenant_client, assert_tenants_isolated):
    with pytest.raises(AssertionError) as info:
        with assert_tenants_isolated(tenants["acme"]):
            django_tenant_client.get("/leak/globex/")
    message = str(info.value)
    assert "tenant isolation violated" in message
    assert "globex" in message and "shop_order" in message, message


@pytest.mark.tenants("acme")
def test_row_planted_in_a_spare_is_named(db, tenants, pgtenants_django_pool,
                                         assert_tenants_isolated):
    spare = pgtenants_django_pool.spares[0]
    with pytest.raises(AssertionError) as info:
        with assert_tenants_isolated(tenants["acme"]):
            with connection.cursor() as cur:
                cur.execute(
                    sql.SQL("insert into {}.shop_order (number, total, placed_at) "
                            "values (1, 0, now())").format(sql.Identifier(spare))
                    .as_string(cur.connection)
                )
    assert spare in str(info.value) and "shop_order" in str(info.value)


@pytest.mark.tenants("acme", "globex")
def test_between_catches_a_data_layer_ignoring_the_tenant(db, tenants, assert_tenants_isolated):
    import contextlib

    from django.db import connection as django_connection

    @contextlib.contextmanager
    def always_acme(schema):  # a broken data layer: every tenant gets acme's tables
        class Conn:
            def execute(self, query, params=None):
                django_connection.set_schema("acme")
                cur = django_connection.cursor()
                text = query if isinstance(query, str) else query.as_string(cur.connection)
                cur.execute(text, params)
                return cur

            def transaction(self):
                from django.db import transaction
                return transaction.atomic()

        yield Conn()

    with pytest.raises(AssertionError) as info:
        assert_tenants_isolated.between(tenants["acme"], tenants["globex"], connect=always_acme)
    assert "shop_order" in str(info.value)


@pytest.mark.django_db(transaction=True)
@pytest.mark.tenants("acme", "globex")
def test_isolation_in_a_transactional_test(tenants, django_tenant_client,
                                           assert_tenants_isolated):
    with assert_tenants_isolated(tenants["acme"]):
        django_tenant_client.post("/orders/add/")
    with pytest.raises(AssertionError, match="shop_order"):
        with assert_tenants_isolated(tenants["acme"]):
            django_tenant_client.get("/leak/globex/")
    assert_tenants_isolated.between(tenants["acme"], tenants["globex"])


def test_tenant_creation_inside_a_block_is_allowed(django_tenant, django_tenant_factory,
                                                   assert_tenants_isolated):
    with assert_tenants_isolated(django_tenant):
        django_tenant_factory()
        django_tenant_factory()
        django_tenant_factory()  # more than the pool holds: one is cloned on the spot
"""


@BOTH
def test_fresh_tenants_clients_markers_isolation(dt: DjangoProject) -> None:
    """Fresh tenants per test (db and transactional), factory, marker, clients, isolation."""
    dt.pytester.makepyfile(test_behaviour=BEHAVIOUR)
    result = dt.run("-p", "no:randomly", "-q")
    result.assert_outcomes(passed=16)
    assert dt.databases() == set()  # pytest-django dropped the test database, ours with it


XDIST = """
import os

from shop.models import Order


def _record(tenant):
    from django.db import connection
    path = os.environ["RECORD_DIR"] + "/" + tenant.schema_name
    with open(path, "w") as f:
        f.write(connection.settings_dict["NAME"])


def test_a(django_tenant):
    _record(django_tenant)
    Order.objects.create(number=1)
    assert Order.objects.count() == 1


def test_b(django_tenant):
    _record(django_tenant)
    assert Order.objects.count() == 0


def test_c(django_tenant):
    _record(django_tenant)
    assert Order.objects.count() == 0


def test_d(django_tenant):
    _record(django_tenant)
    Order.objects.create(number=1)
    assert Order.objects.count() == 1
"""


@BOTH
def test_xdist_workers_each_get_their_database(
    dt: DjangoProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``-n 2`` each worker has pytest-django's database and its own template."""
    pytest.importorskip("xdist")
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    dt.pytester.makepyfile(test_xdist=XDIST)
    result = dt.run("-n", "2", "--dist", "load")
    result.assert_outcomes(passed=4)
    databases = {p.read_text() for p in records.iterdir()}
    assert len(list(records.iterdir())) == 4  # four distinct tenants
    assert databases <= {f"test_{dt.db_name}_gw0", f"test_{dt.db_name}_gw1"}
    assert dt.databases() == set()


REUSE = """
import json, os

from shop.models import Order


def test_record(django_tenant, pgtenants_django_pool):
    with open(os.environ["RECORD_FILE"], "a") as f:
        f.write(json.dumps({"template": pgtenants_django_pool.template,
                            "built": pgtenants_django_pool.built}) + "\\n")
    assert Order.objects.count() == 0
    Order.objects.create(number=1)
"""

MIGRATION_3 = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_notes_and_placed_at")]
    operations = [
        migrations.AddField("order", "coupon", models.CharField(max_length=20, null=True)),
    ]
"""


def test_reuse_db_reuses_the_template_until_migrations_change(
    dt: DjangoProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--reuse-db``: the second run migrates nothing; a new migration rebuilds the template."""
    import json

    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("RECORD_FILE", str(record))
    dt.pytester.makepyfile(test_reuse=REUSE)
    for _ in range(2):
        dt.run("--reuse-db").assert_outcomes(passed=1)
    (dt.pytester.path / "shop" / "migrations" / "0003_coupon.py").write_text(MIGRATION_3)
    dt.run("--reuse-db").assert_outcomes(passed=1)
    first, second, third = (json.loads(line) for line in record.read_text().splitlines())
    assert first["built"] and not second["built"]
    assert first["template"] == second["template"]
    assert third["built"] and third["template"] != first["template"]
    (database,) = dt.databases()  # kept by --reuse-db
    ours = {s for s in dt.schemas(database) if s.startswith("_pgtenants_dj_")}
    assert third["template"] in ours and first["template"] not in ours  # the stale one dropped
    assert all(s.startswith("_pgtenants_dj_sp_") for s in ours - {third["template"]})
    assert {s for s in dt.schemas(database) if s.startswith("t")} == set()  # no tenant left


SLOW = """
import os, time

import pytest

from shop.models import Order


@pytest.mark.django_db(transaction=True)
def test_interrupted(django_tenant):
    Order.objects.create(number=1)  # committed: the tenant is really there
    with open(os.environ["READY_FILE"], "w") as f:
        f.write(django_tenant.schema_name)
    time.sleep(60)
"""


def _interrupt(dt: DjangoProject, ready: Path, *extra: str) -> str:
    """Run SLOW, send SIGINT once the test is running; return the tenant's schema."""
    args = [sys.executable, "-m", "pytest", *dt.args(*extra)]
    proc = dt.pytester.popen(args, stdout=sys.stdout, stderr=sys.stderr)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the inner run ended early with code {proc.returncode}")
            time.sleep(0.05)
        assert ready.exists(), "the inner test never started"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return ready.read_text()


@BOTH
def test_ctrl_c_leaves_nothing_behind(
    dt: DjangoProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT during a test: no database left; with --reuse-db, no tenant left in it."""
    dt.pytester.makepyfile(test_slow=SLOW)
    ready = tmp_path / "ready"
    monkeypatch.setenv("READY_FILE", str(ready))
    if dt.backend == "django_tenants":  # (the database drop is pytest-django's, not ours)
        _interrupt(dt, ready)
        assert dt.databases() == set()
        ready.unlink()
    schema = _interrupt(dt, ready, "--reuse-db")
    (database,) = dt.databases()
    left = dt.schemas(database)
    assert schema not in left
    assert {s for s in left if not s.startswith("_pgtenants_dj_")} == {"public"}
    info = psycopg.conninfo.conninfo_to_dict(dt.server)
    info["dbname"] = database
    with psycopg.connect(**info) as conn:  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM customers_client").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM customers_domain").fetchone() == (0,)


def _doc_blocks() -> list[str]:
    """The python blocks of docs/testing-django.md (skipped by test_docs_examples.py: they
    need a Django project, so they run here)."""
    blocks: list[str] = []
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            body: list[str] = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            blocks.append("\n".join(body) + "\n")
        i += 1
    return blocks


def test_docs_examples_run_on_the_project(dt: DjangoProject) -> None:
    """Every python example of docs/testing-django.md runs, as written, on the dt project."""
    import re

    blocks = _doc_blocks()
    conftests = [b for b in blocks if b.startswith("# conftest.py")]
    recipes = [b for b in blocks if b not in conftests]
    assert len(recipes) >= 5 and len(conftests) >= 2
    dt.pytester.makeconftest("\n".join(conftests))
    for number, recipe in enumerate(recipes):
        dt.pytester.makepyfile(**{f"test_doc_{number}": recipe})
    tests = sum(len(re.findall(r"^(?:async )?def test_", b, re.MULTILINE)) for b in recipes)
    result = dt.run()
    result.assert_outcomes(passed=tests)


CORE = """
import pytest


@pytest.mark.tenants("acme", "globex")
def test_core_marker_and_isolation(tenants, tenancy, assert_tenants_isolated):
    from tenantkit import Tenant

    assert all(isinstance(t, Tenant) for t in tenants.values())
    with tenancy.connection(tenants["acme"]) as conn:
        conn.execute("insert into shop_t0 (name) values ('x')")
    with pytest.raises(AssertionError, match="shop_t0"):
        with assert_tenants_isolated(tenants["acme"]):
            with tenancy.connection(tenants["globex"]) as conn:
                conn.execute("insert into shop_t0 (name) values ('leak')")
"""


def test_core_fixtures_unchanged_with_the_django_module_loaded(inner) -> None:
    """Outside Django tests, ``tenants`` and ``assert_tenants_isolated`` stay the core's."""
    inner.pytester.makepyfile(test_core=CORE)
    result = inner.run("-p", "pytest_pgtenants._django")
    result.assert_outcomes(passed=1)


DETECT = """
import sys
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": sys.argv[1]}},
    INSTALLED_APPS=sys.argv[2:],
    TENANT_MODEL="customers.Client",
)
from pytest_pgtenants._django_backend import detect_backend

try:
    print("backend", detect_backend().package)
except RuntimeError as exc:
    print("error", exc)
"""


@pytest.mark.parametrize(
    ("engine", "apps", "expected"),
    [
        ("django_tenants.postgresql_backend", [], "backend django_tenants"),
        ("django.db.backends.postgresql", ["django_tenants"], "backend django_tenants"),
        ("tenantkit.django.postgresql_backend", [], "backend tenantkit.django"),
        ("django.db.backends.postgresql", [], "error pytest_pgtenants' Django fixtures need a"),
    ],
)
def test_backend_detected_from_settings(engine: str, apps: list[str], expected: str) -> None:
    """The backend comes from ENGINE / INSTALLED_APPS; a plain project gets a clear error."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", DETECT, engine, *apps],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.startswith(expected), out
