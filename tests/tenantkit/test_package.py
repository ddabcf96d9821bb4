"""The package's public surface: every exported name resolves, and importing it is cheap."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import tenantkit


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
        "print(sorted(m for m in ('psycopg', 'psycopg_pool', 'tenantkit.routing', "
        "'tenantkit.migrations') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_inspect_module_still_works_with_a_deprecation_warning() -> None:
    code = "import warnings; warnings.simplefilter('error'); import tenantkit.inspect"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "tenantkit.describe" in out.stderr
    old = importlib.import_module("tenantkit.inspect")
    with pytest.warns(DeprecationWarning, match=r"tenantkit\.describe"):
        importlib.reload(old)
    from tenantkit import describe, errors
    from tenantkit.inspect import list_tables

    assert list_tables is describe.list_tables
    assert tenantkit.CloneError is errors.CloneError
