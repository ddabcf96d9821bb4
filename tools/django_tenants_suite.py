#!/usr/bin/env python3
"""Run django-tenants' own test suite against ``tenantkit.django``.

For maintainers: the suite lives in django-tenants' source (``django_tenants/tests``) and is run
from its ``dts_test_project`` (in the git repository and in recent sdists), which CI cannot
reach, so this script is run by hand::

    python tools/django_tenants_suite.py /path/to/django_tenants-4.0.1.tar.gz
    python tools/django_tenants_suite.py ~/src/django-tenants --executor standard
    python tools/django_tenants_suite.py SRC --project ~/src/django-tenants/dts_test_project
    python tools/django_tenants_suite.py SRC -- django_tenants.tests.test_routes  # some tests

What it does, the way django-tenants' ``run_tests.sh`` does it, once per executor
(``EXECUTOR=standard`` and ``EXECUTOR=multiprocessing``): ``manage.py test -v2 django_tenants``
in ``dts_test_project``, with ``PYTHONWARNINGS=d``. Around that:

* a scratch directory outside the repository (removed at the end unless ``--keep``) receives a
  copy of ``dts_test_project`` and a ``django_tenants`` package holding only the suite
  (``tests/``) and an app config; every other ``django_tenants.<module>`` import resolves to
  the *same module object* as ``tenantkit.django.<module>`` (an import hook, so
  ``mock.patch("django_tenants.x.y")`` patches tenantkit's code, and there is one copy of every
  ContextVar). The app name ``django_tenants`` in ``SHARED_APPS`` / ``INSTALLED_APPS`` (the
  suite rewrites those settings itself) is tenantkit's app.
* a settings module on top of the project's own sets ``ENGINE``, ``DATABASE_ROUTERS`` and
  ``MIDDLEWARE`` to ``tenantkit.django`` and a test runner that records every outcome.
* PostgreSQL is tenantkit's embedded server (started and removed here), or ``--dsn``.

It prints every test's outcome per executor and a summary, and compares the failures with
``tools/django_tenants_suite_expected.txt`` (one line per test that cannot pass: the test id,
optionally ``@executor``, then the reason). It exits 1 when a test outside that list fails or
a run breaks down, 0 otherwise; listed tests that pass are reported as stale entries
(``--strict`` makes them fail the run too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXECUTORS = ("standard", "multiprocessing")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_EXPECTED = HERE / "django_tenants_suite_expected.txt"
#: Outcomes that make a test count as not passing.
BAD = {"failed", "error", "unexpected-success"}

# -- files written into the scratch directory -----------------------------------------------

ALIAS_PACKAGE = '''\
"""``django_tenants`` resolved to ``tenantkit.django`` (written by tools/django_tenants_suite.py).

This package holds only django-tenants' test suite (``tests``) and an app config (``apps``).
Every other ``django_tenants.<name>`` import is answered with the module object of
``tenantkit.django.<name>`` itself, never a second copy.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys

_SOURCE = "django_tenants"
_TARGET = "tenantkit.django"
_OWN = ("django_tenants.tests", "django_tenants.apps")


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(_SOURCE + "."):
            return None
        if any(fullname == own or fullname.startswith(own + ".") for own in _OWN):
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        real = importlib.import_module(_TARGET + spec.name[len(_SOURCE):])
        spec.loader_state = real.__spec__
        return real

    def exec_module(self, module):
        # The import system stamped the alias spec on the real module: give it its own back,
        # so the module keeps its real name for pickling, reloading and Django's lookups.
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Alias())
'''

ALIAS_APPS = '''\
"""The app ``django_tenants`` is tenantkit's app (written by tools/django_tenants_suite.py)."""

import os

import tenantkit.django
from tenantkit.django.apps import TenantkitDjangoConfig


class DjangoTenantsConfig(TenantkitDjangoConfig):
    """tenantkit's app config under django-tenants' app name, label and commands."""

    # The one config Django picks from this module (TenantkitDjangoConfig is imported too).
    default = True
    name = "django_tenants"
    label = "django_tenants"
    # Management commands are listed from the app's directory: tenantkit's.
    path = os.path.dirname(tenantkit.django.__file__)
'''

SETTINGS = '''\
"""dts_test_project's settings on tenantkit.django (written by tools/django_tenants_suite.py)."""

from dts_test_project.settings import *  # noqa: F403

DATABASES["default"]["ENGINE"] = "tenantkit.django.postgresql_backend"  # noqa: F405
DATABASE_ROUTERS = ("tenantkit.django.routers.TenantSyncRouter",)
MIDDLEWARE = tuple(
    "tenantkit.django." + entry[len("django_tenants."):]
    if entry.startswith("django_tenants.")
    else entry
    for entry in MIDDLEWARE  # noqa: F405
)
TEST_RUNNER = "tk_suite_runner.RecordingRunner"
'''

BASELINE_SETTINGS = '''\
"""dts_test_project's own settings (``--baseline``; written by tools/django_tenants_suite.py)."""

from dts_test_project.settings import *  # noqa: F403

TEST_RUNNER = "tk_suite_runner.RecordingRunner"
'''

RUNNER = '''\
"""Django's DiscoverRunner, recording each outcome (written by tools/django_tenants_suite.py)."""

import json
import os
import unittest

from django.test.runner import DiscoverRunner


class RecordingResult(unittest.TextTestResult):
    """TextTestResult that also keeps (test id, outcome, detail) for the calling script."""

    records = []

    def _record(self, test, outcome, detail=""):
        self.records.append({"id": test.id(), "outcome": outcome, "detail": detail})

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failed", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "expected-failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "unexpected-success")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            # Recorded under the test's own id: that is the unit the expected list names.
            self._record(test, "failed" if failed else "error",
                         subtest.id() + "\\n" + self._exc_info_to_string(err, test))


class RecordingRunner(DiscoverRunner):
    """Writes the recorded outcomes to $TK_SUITE_RESULTS at the end of the run."""

    def get_resultclass(self):
        return RecordingResult

    def run_suite(self, suite, **kwargs):
        try:
            return super().run_suite(suite, **kwargs)
        finally:
            with open(os.environ["TK_SUITE_RESULTS"], "w") as out:
                json.dump(RecordingResult.records, out)
'''


# -- preparing the scratch directory ---------------------------------------------------------


def _find(root: Path, relative: str) -> Path | None:
    """``root/relative``, or ``root/<one level>/relative`` (an extracted sdist)."""
    direct = root / relative
    if direct.exists():
        return direct
    for child in sorted(root.iterdir()):
        if child.is_dir() and (child / relative).exists():
            return child / relative
    return None


def prepare(source: Path, project: Path | None, scratch: Path, baseline: bool = False) -> Path:
    """Fill ``scratch`` (project copy, alias package, settings, runner); return the project.

    ``baseline``: django-tenants' own package instead of the alias, the project's settings
    unchanged (what the suite does against django-tenants itself).
    """
    if source.is_file():
        unpacked = scratch / "source"
        with tarfile.open(source) as archive:
            archive.extractall(unpacked, filter="data")
        source = unpacked
    tests = _find(source, "django_tenants/tests")
    if tests is None:
        raise SystemExit(f"no django_tenants/tests under {source}")
    project_dir = project or _find(source, "dts_test_project")
    if project_dir is None or not (project_dir / "manage.py").exists():
        raise SystemExit(
            f"no dts_test_project under {source} (it is in django-tenants' git repository): "
            "give it with --project"
        )
    work = scratch / "dts_test_project"
    shutil.copytree(project_dir, work, ignore=shutil.ignore_patterns("__pycache__"))
    shim = scratch / "shim"
    package = shim / "django_tenants"
    if baseline:
        shutil.copytree(tests.parent, package, ignore=shutil.ignore_patterns("__pycache__"))
        settings = BASELINE_SETTINGS
    else:
        shutil.copytree(tests, package / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        (package / "__init__.py").write_text(ALIAS_PACKAGE)
        (package / "apps.py").write_text(ALIAS_APPS)
        settings = SETTINGS
    (shim / "tk_suite_settings.py").write_text(settings)
    (shim / "tk_suite_runner.py").write_text(RUNNER)
    return work


# -- the database ----------------------------------------------------------------------------


@contextmanager
def database(dsn: str | None) -> Iterator[dict[str, str]]:
    """``DATABASE_*`` variables (dts_test_project's settings read them) for a server."""
    from psycopg.conninfo import conninfo_to_dict

    if dsn:
        yield _database_env(conninfo_to_dict(dsn))
        return
    from tenantkit.server import EmbeddedServer

    with EmbeddedServer() as server:
        yield _database_env(conninfo_to_dict(server.conninfo))


def _database_env(params: Mapping[str, object]) -> dict[str, str]:
    return {
        # Django's test runner creates and drops test_<name>; <name> itself is not used.
        "DATABASE_DB": "dts_test_project",
        "DATABASE_USER": str(params.get("user") or os.environ.get("USER", "postgres")),
        "DATABASE_PASSWORD": str(params.get("password") or ""),
        "DATABASE_HOST": str(params.get("host") or "localhost"),
        "DATABASE_PORT": str(params.get("port") or "5432"),
    }


# -- running and reporting -------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """One line of the expected-failures file."""

    test_id: str
    executor: str | None
    reason: str

    def matches(self, test_id: str, executor: str) -> bool:
        """Whether this entry covers ``test_id`` under ``executor``."""
        return self.test_id == test_id and self.executor in (None, executor)


def read_expected(path: Path) -> list[Expected]:
    """Parse the expected-failures file (``#`` comments, blank lines ignored)."""
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition(" ")
        if not reason.strip():
            raise SystemExit(f"{path}:{number}: a test id needs a reason after it")
        test_id, _, executor = name.partition("@")
        if executor and executor not in EXECUTORS:
            raise SystemExit(f"{path}:{number}: unknown executor {executor!r}")
        entries.append(Expected(test_id, executor or None, reason.strip()))
    return entries


def run_suite(
    executor: str, work: Path, shim: Path, db_env: dict[str, str], labels: list[str], verbose: bool
) -> tuple[list[dict[str, str]], int]:
    """``manage.py test -v2`` under ``executor``; returns the recorded outcomes and the status."""
    results = work.parent / f"results-{executor}.json"
    env = dict(os.environ)
    env.update(db_env)
    env.update(
        EXECUTOR=executor,
        PYTHONWARNINGS="d",
        PYTHONPATH=os.pathsep.join(
            [str(shim), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        DJANGO_SETTINGS_MODULE="tk_suite_settings",
        TK_SUITE_RESULTS=str(results),
    )
    command = [sys.executable, "manage.py", "test", "-v2", "--noinput", *labels]
    log = work.parent / f"log-{executor}.txt"
    with log.open("w") as out:
        status = subprocess.call(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    if verbose:
        sys.stdout.write(log.read_text())
    if not results.exists():
        print(log.read_text()[-4000:])
        return [], status or 1
    return json.loads(results.read_text()), status


def outcomes(records: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """One record per test id, the worst outcome winning (sub-tests, class fixtures)."""
    rank = {"passed": 0, "expected-failure": 0, "skipped": 1, "failed": 2, "error": 3}
    by_id: dict[str, dict[str, str]] = {}
    for record in records:
        seen = by_id.get(record["id"])
        if seen is None or rank.get(record["outcome"], 4) > rank.get(seen["outcome"], 4):
            by_id[record["id"]] = record
    return by_id


def report(
    executor: str, records: dict[str, dict[str, str]], expected: list[Expected], details: bool
) -> tuple[list[str], list[Expected]]:
    """Print the per-test lines and summary; return unexpected failures and stale entries."""
    unexpected = []
    counts: dict[str, int] = {}
    print(f"\n=== executor {executor}: {len(records)} tests")
    for test_id in sorted(records):
        record = records[test_id]
        outcome = record["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
        entry = next((e for e in expected if e.matches(test_id, executor)), None)
        note = ""
        if outcome in BAD:
            if entry is None:
                unexpected.append(test_id)
                note = "  <-- UNEXPECTED"
            else:
                note = f"  (expected: {entry.reason})"
        print(f"{outcome.upper():>18}  {test_id}{note}")
        if details and outcome in BAD and entry is None and record.get("detail"):
            print(textwrap.indent(record["detail"].rstrip(), " " * 20))
    stale = [
        e
        for e in expected
        if e.executor in (None, executor)
        and e.test_id in records
        and records[e.test_id]["outcome"] not in BAD
    ]
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    print(f"=== executor {executor}: {summary}; {len(unexpected)} unexpected failure(s)")
    for entry in stale:
        print(f"    stale entry (the test passes): {entry.test_id}")
    return unexpected, stale


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="django-tenants sdist (.tar.gz) or source tree")
    parser.add_argument("--project", type=Path, help="dts_test_project, when not in SOURCE")
    parser.add_argument("--executor", choices=EXECUTORS, action="append", help="default: both")
    parser.add_argument("--dsn", help="an existing server (maintenance DSN) instead of one here")
    parser.add_argument("--expected", type=Path, default=DEFAULT_EXPECTED)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="run the suite against django-tenants itself (its own package from SOURCE; it "
        "needs django-tenants' dependencies), to tell the suite's own failures from tenantkit's",
    )
    parser.add_argument("--strict", action="store_true", help="stale entries fail the run")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Django's test output")
    parser.add_argument("--details", action="store_true", help="tracebacks of unexpected failures")
    parser.add_argument("labels", nargs="*", help="test labels (default: django_tenants)")
    args = parser.parse_intermixed_args(argv)

    expected = read_expected(args.expected) if args.expected.exists() else []
    scratch = Path(tempfile.mkdtemp(prefix="tk-dts-suite-"))
    if scratch.resolve().is_relative_to(REPO):
        raise SystemExit("the scratch directory must be outside the repository (set TMPDIR)")
    failing = False
    try:
        work = prepare(args.source.resolve(), args.project, scratch, args.baseline)
        with database(args.dsn) as db_env:
            for executor in args.executor or EXECUTORS:
                records, status = run_suite(
                    executor,
                    work,
                    scratch / "shim",
                    db_env,
                    args.labels or ["django_tenants"],
                    args.verbose,
                )
                by_id = outcomes(records)
                if not by_id:
                    print(f"=== executor {executor}: the run broke down (status {status})")
                    failing = True
                    continue
                unexpected, stale = report(executor, by_id, expected, args.details)
                failing = failing or bool(unexpected) or (args.strict and bool(stale))
    finally:
        if args.keep:
            print(f"scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
