"""pytest hooks of pytest_pgtenants: options, markers, xdist coordination, reporting.

Load the plugin with ``pytest -p pytest_pgtenants`` or ``pytest_plugins = ["pytest_pgtenants"]``
in a ``conftest.py``. Loading it starts nothing: the server, the databases and the tenancies
appear when a test first asks for one of the fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ._options import add_options, resolve_settings
from ._session import PgTenantsSession
from .fixtures import SESSION_KEY, validate_markers

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_report_header",
    "pytest_runtest_setup",
    "pytest_terminal_summary",
    "pytest_testnodedown",
    "pytest_unconfigure",
]

_RUN_DIR_KEY = pytest.StashKey[Path]()
_KEEP_NOTES_KEY = pytest.StashKey[list[str]]()

MARKERS = {
    "tenants": (
        'tenants("acme", "globex", ...): create these tenants (valid schema names) fresh for '
        "the test, before its other fixtures (no fixture argument needed); the `tenants` "
        "fixture maps each name to its Tenant and `tenant` is the first"
    ),
    "pgtenants_strict": (
        "pgtenants_strict: strict mode for this test: a statement on a tenancy connection with "
        "no tenant bound raises NoTenantSelected (fails the test)"
    ),
    "pgtenants_rollback": (
        "pgtenants_rollback: tenant_conn / atenant_conn roll back at the end of the test "
        "instead of committing"
    ),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``pgtenants_*`` ini keys and ``--pgtenants-*`` options."""
    add_options(parser)


#: Fixture modules of the integrations: (module, what must be importable for it).
_INTEGRATIONS = (("_sqlalchemy", ("sqlalchemy",)), ("_django", ("django", "pytest_django")))


def _register_integrations(config: pytest.Config) -> None:
    """Register the fixtures of each integration whose libraries are installed (imported only
    then, so a project without SQLAlchemy or Django pays nothing). Registered after the core
    plugin: the Django module's ``tenants`` marker handling and ``assert_tenants_isolated``
    extend the core's, and fall back to them outside Django tests."""
    import importlib
    import importlib.util

    for name, needs in _INTEGRATIONS:
        if any(importlib.util.find_spec(n) is None for n in needs):
            continue
        if name == "_django" and not config.pluginmanager.has_plugin("django"):
            continue  # pytest-django switched off (-p no:django)
        module = importlib.import_module(f"pytest_pgtenants.{name}")
        if config.pluginmanager.is_registered(module):
            continue
        # pytest_configure is a historic hook: pluggy calls the module's own on registration.
        config.pluginmanager.register(module, f"pytest_pgtenants.{name}")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, resolve and check the options, and prepare (not start) the state."""
    for line in MARKERS.values():
        config.addinivalue_line("markers", line)
    from . import _async

    if not config.pluginmanager.is_registered(_async):
        config.pluginmanager.register(_async, "pytest_pgtenants._async")
    _register_integrations(config)
    settings = resolve_settings(config)
    if settings.migrations is not None and not settings.migrations.is_dir():
        source = settings.sources["migrations"]
        raise pytest.UsageError(
            f"pgtenants migrations directory {str(settings.migrations)!r} (from {source}) does "
            "not exist; it must hold shared/ and tenant/ subfolders"
        )
    worker = "main"
    run_dir: Path | None = None
    controller_pid: int | None = None
    if _is_worker(config):
        workerinput: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
        worker = str(workerinput.get("workerid", "gw"))
        if "pgtenants_run_dir" in workerinput:
            run_dir = Path(workerinput["pgtenants_run_dir"])
            controller_pid = int(workerinput["pgtenants_controller_pid"])
    session = PgTenantsSession(
        settings,
        project=str(config.rootpath),
        worker=worker,
        shared_run_dir=run_dir,
        controller_pid=controller_pid,
    )
    config.stash[SESSION_KEY] = session
    config.stash[_KEEP_NOTES_KEY] = []
    if _is_worker(config):
        # Sent to the controller with the worker's results (printed in its summary).
        config.workeroutput["pgtenants_keep"] = session.keep_notes  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(xdist controller) Tell each worker where the run's shared embedded server lives."""
    from ._server import run_dir_for

    config: pytest.Config = node.config
    run_dir = run_dir_for(str(node.workerinput["testrunuid"]))
    config.stash[_RUN_DIR_KEY] = run_dir
    node.workerinput["pgtenants_run_dir"] = str(run_dir)
    node.workerinput["pgtenants_controller_pid"] = os.getpid()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """(xdist controller) Collect the workers' ``--pgtenants-keep`` notes for the summary."""
    notes = getattr(node, "workeroutput", {}).get("pgtenants_keep") or []
    node.config.stash.setdefault(_KEEP_NOTES_KEY, []).extend(notes)


def pytest_unconfigure(config: pytest.Config) -> None:
    """(xdist controller) Stop the shared embedded server once every worker is done."""
    run_dir = config.stash.get(_RUN_DIR_KEY, None)
    if run_dir is not None:
        from ._server import stop_shared_server

        stop_shared_server(run_dir)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Validate our markers' arguments before the test's fixtures run."""
    if any(item.get_closest_marker(name) is not None for name in MARKERS):
        validate_markers(item, item.config.stash[SESSION_KEY].settings)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One header line with the effective options and where each came from."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None or _is_worker(config):
        return []
    settings = session.settings
    dsn = "embedded" if settings.dsn is None else _redact(settings.dsn)
    parts = [f"dsn={dsn} ({settings.sources['dsn']})"]
    for name in ("migrations", "keep", "strict", "rollback", "spares", "cache"):
        parts.append(f"{name}={getattr(settings, name)} ({settings.sources[name]})")
    return ["pgtenants: " + ", ".join(parts)]


def _redact(dsn: str) -> str:
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(dsn)
    except Exception:
        return "<dsn>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """With ``--pgtenants-keep``: how to connect to what was kept."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.settings.keep:
        return
    # dict.fromkeys: xdist workers sharing one embedded server each report it.
    notes = list(dict.fromkeys([*session.keep_notes, *config.stash.get(_KEEP_NOTES_KEY, [])]))
    if not notes:
        return
    terminalreporter.section("pgtenants: kept for inspection")
    for line in notes:
        terminalreporter.write_line(line)
