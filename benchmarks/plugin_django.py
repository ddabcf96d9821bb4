"""Benchmark: a fresh tenant per Django test, against django-tenants' own test cases.

One django-tenants 4.0.1 project (``tests/pytest_pgtenants/django_projects/dt``) plus a tenant
app ``workload`` holding the standard workload as Django models: 20 tables with indexes and
foreign keys, and a second migration adding a column and an index to each (the migrations are
generated here with ``makemigrations``). Three pytest-django suites of ``--tests`` tests run
on it, each in its own pytest process, on the same server:

1. ``django_tenant``: every test gets a fresh, fully migrated tenant (pytest_pgtenants). The
   setup time of the fixture is recorded per test (median, p90).
2. ``TenantTestCase``: django-tenants' test case, one tenant created and migrated per class of
   ``--per-class`` tests (its ``setUpClass``, median and p90 per class).
3. ``FastTenantTestCase``: its faster variant, one tenant reused by every class (tests share
   it; only the data is flushed).

Also printed: each suite's wall time, and the cost per test of a fresh tenant against what a
test pays for a tenant with each test case. Uses ``PGTENANTS_DSN`` when set, else an embedded
server.

    python benchmarks/plugin_django.py [--tests 100] [--per-class 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent / "tests" / "pytest_pgtenants" / "django_projects" / "dt"
TABLES = 20

CONFTEST = """
import json, os, time

import pytest

TIMES = {}


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    began = time.perf_counter()
    try:
        return (yield)
    finally:
        if fixturedef.argname == "django_tenant":
            TIMES.setdefault("django_tenant", []).append(time.perf_counter() - began)


def pytest_sessionstart(session):
    session.config._bench_start = time.perf_counter()


def pytest_sessionfinish(session):
    from bench_cases import CLASS_TIMES

    TIMES.update(CLASS_TIMES)
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump({"times": TIMES,
                   "session": time.perf_counter() - session.config._bench_start}, f)
"""

CASES = """
import time

CLASS_TIMES = {}


def timed(base):
    class Timed(base):
        @classmethod
        def setUpClass(cls):
            began = time.perf_counter()
            super().setUpClass()
            CLASS_TIMES.setdefault(base.__name__, []).append(time.perf_counter() - began)

    return Timed
"""


def _models(with_note: bool) -> str:
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
            lines.append("    note = models.TextField(null=True, db_index=True)")
        lines.append("")
    return "\n".join(lines)


def make_project(root: Path, env: dict[str, str]) -> None:
    """Copy the test project and add the workload app with its two generated migrations."""
    shutil.copytree(PROJECT, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    app = root / "workload"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    settings = root / "dtproject" / "settings.py"
    settings.write_text(
        settings.read_text().replace(
            'TENANT_APPS = ["django.contrib.contenttypes", "shop"]',
            'TENANT_APPS = ["django.contrib.contenttypes", "shop", "workload"]',
        )
    )
    for step, with_note in (("tables", False), ("note", True)):
        (app / "models.py").write_text(_models(with_note))
        subprocess.run(
            [sys.executable, "-m", "django", "makemigrations", "workload", "-n", step, "-v", "0"],
            cwd=root,
            env={**env, "PYTHONPATH": str(root)},
            check=True,
        )
    (root / "pytest.ini").write_text(
        "[pytest]\nDJANGO_SETTINGS_MODULE = dtproject.settings\npythonpath = .\n"
    )
    (root / "conftest.py").write_text(CONFTEST)
    (root / "bench_cases.py").write_text(CASES)


def _suite_fresh(tests: int) -> str:
    return "".join(f"\ndef test_{i}(django_tenant):\n    pass\n" for i in range(tests))


def _suite_cases(base: str, tests: int, per_class: int) -> str:
    out = [
        f"from django_tenants.test.cases import {base}",
        "from bench_cases import timed",
        "",
    ]
    for c in range((tests + per_class - 1) // per_class):
        out.append(f"class TestCase{c}(timed({base})):")
        for i in range(min(per_class, tests - c * per_class)):
            out.append(f"    def test_{i}(self):\n        pass")
        out.append("")
    return "\n".join(out)


def run_suite(root: Path, name: str, source: str, env: dict[str, str]) -> dict[str, Any]:
    """Run one suite in a fresh pytest process; return its recorded times."""
    path = root / f"test_{name}.py"
    path.write_text(source)
    out = root / f"{name}.json"
    began = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(path),
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "pytest_pgtenants",
            "-p",
            "pytest_pgtenants._django",
            "-p",
            "no:randomly",
            "-W",
            "ignore::DeprecationWarning",
        ],
        cwd=root,
        env={**env, "BENCH_OUT": str(out)},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - began
    path.unlink()
    if proc.returncode != 0:
        sys.exit(f"suite {name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(out.read_text())
    data["wall"] = wall
    return data


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if q == 0.5:
        return statistics.median(ordered) * 1000
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=10)
    args = parser.parse_args()
    with ExitStack() as stack:
        dsn = os.environ.get("PGTENANTS_DSN")
        if not dsn:
            from tenantkit import EmbeddedServer

            dsn = stack.enter_context(EmbeddedServer()).conninfo
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_dj_")))
        db_name = f"bench_dj_{uuid.uuid4().hex[:8]}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PGTENANTS_")},
            "DT_DSN": dsn,
            "DT_DB_NAME": db_name,
            "DJANGO_SETTINGS_MODULE": "dtproject.settings",
        }
        make_project(root, env)
        fresh = run_suite(root, "fresh", _suite_fresh(args.tests), env)
        slow = run_suite(
            root, "tenant_case", _suite_cases("TenantTestCase", args.tests, args.per_class), env
        )
        fast = run_suite(
            root,
            "fast_case",
            _suite_cases("FastTenantTestCase", args.tests, args.per_class),
            env,
        )
    tenant = fresh["times"]["django_tenant"]
    per_class = slow["times"]["TenantTestCase"]
    fast_class = fast["times"]["FastTenantTestCase"]
    classes = len(per_class)
    print(
        f"standard workload as Django models ({TABLES} tables, 2 migrations), "
        f"{args.tests} tests, classes of {args.per_class}; one run, same server and project"
    )
    rows = [
        ("django_tenant setup per test (fresh tenant)", tenant),
        ("TenantTestCase setUpClass per class (new tenant)", per_class),
        ("FastTenantTestCase setUpClass per class (shared)", fast_class),
    ]
    for label, values in rows:
        print(f"  {label:<52} median {_ms(values, 0.5):8.1f} ms   p90 {_ms(values, 0.9):8.1f} ms")
    print(
        f"  suites (wall, pytest process included): fresh {fresh['wall']:.2f} s, "
        f"TenantTestCase {slow['wall']:.2f} s, FastTenantTestCase {fast['wall']:.2f} s"
    )
    tenant_total = sum(tenant)
    print(
        f"  tenant cost per test: fresh {tenant_total / args.tests * 1000:.1f} ms, "
        f"TenantTestCase {sum(per_class) / args.tests * 1000:.1f} ms "
        f"(one tenant per {args.per_class} tests), FastTenantTestCase "
        f"{sum(fast_class) / args.tests * 1000:.1f} ms (one tenant for all {classes} classes)"
    )
    print(
        f"  ratio fresh tenant / TenantTestCase class: "
        f"{_ms(tenant, 0.5) / _ms(per_class, 0.5):.3f}x (median)"
    )
    target = "met" if _ms(tenant, 0.5) < 10 else "NOT met"
    print(f"  target: median < 10 ms per fresh tenant: {target}")


if __name__ == "__main__":
    main()
