"""The package's public surface: every exported name resolves, and importing it is cheap."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_pgtenants
import tenantkit
import tenantkit._moved
from tenantkit._moved import MOVED


@pytest.mark.parametrize("name", tenantkit.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(tenantkit, name)
    assert value is not None
    if inspect.isclass(value) or inspect.isfunction(value):  # not type aliases
        assert value.__module__.startswith("tenantkit")


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tenantkit.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_import_loads_nothing_heavy() -> None:
    """``import tenantkit`` (the CLI's start-up) must not pull in psycopg or the web stack."""
    code = (
        "import sys, tenantkit; "
        "print(sorted(m for m in ('psycopg', 'psycopg_pool', 'tenantkit.web.routing', "
        "'tenantkit.migrations') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_root_exports_a_curated_surface() -> None:
    """About thirty names an application needs; the rest live in the module that owns them."""
    assert 25 <= len(tenantkit.__all__) <= 35
    assert tenantkit.__all__ == sorted(tenantkit.__all__)
    assert set(tenantkit.__all__) == set(tenantkit._EXPORTS)
    assert not set(tenantkit._EXPORTS) & set(tenantkit._DEPRECATED)


@pytest.mark.parametrize("name", sorted(tenantkit._DEPRECATED))
def test_names_dropped_from_the_root_still_resolve_with_a_warning(name: str) -> None:
    home = importlib.import_module(f"tenantkit.{tenantkit._DEPRECATED[name]}")
    with pytest.warns(DeprecationWarning, match=rf"tenantkit\.{tenantkit._DEPRECATED[name]}"):
        value = getattr(tenantkit, name)
    assert value is getattr(home, name)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_warn_and_give_the_new_module(old: str) -> None:
    """Each module moved into a subpackage keeps its old path for one release (issue 12)."""
    code = f"import warnings; warnings.simplefilter('error'); import {old}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "DeprecationWarning" in out.stderr and MOVED[old] in out.stderr
    code = (
        "import warnings; warnings.simplefilter('ignore'); "
        f"import {old} as old, {MOVED[old]} as new; "
        "print(old is new, sorted(old.__all__) == sorted(new.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_no_module_of_the_package_imports_an_old_path() -> None:
    """Inside tenantkit and the plugin, imports go to the new homes (no warning at run time).

    Every module is imported with DeprecationWarning as an error, except the Django ones, which
    need configured settings to import; all sources are also scanned for absolute old paths.
    """
    code = (
        "import warnings, pkgutil, importlib, tenantkit, tenantkit._moved, pytest_pgtenants\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "skip = set(tenantkit._moved.MOVED)\n"
        "for pkg in (tenantkit, pytest_pgtenants):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name in skip or m.name.endswith('__main__'):\n"
        "            continue\n"
        "        if m.name.startswith(('tenantkit.django', 'pytest_pgtenants._django')):\n"
        "            continue\n"
        "        importlib.import_module(m.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    old = re.compile(
        r"\b(?:from|import) (?:" + "|".join(re.escape(m) for m in sorted(MOVED)) + r")\b(?![.\w])"
    )
    roots = [Path(tenantkit.__file__).parent, Path(pytest_pgtenants.__file__).parent]
    offenders = [
        f"{path}: {match.group(0)}"
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if path.stem not in {"_moved"} and f"tenantkit.{path.stem}" not in MOVED
        for match in old.finditer(path.read_text())
    ]
    assert offenders == []
