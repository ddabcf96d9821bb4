"""The plugin uses tenantkit's public API only (issue 12).

Every module of ``pytest_pgtenants`` is parsed (not imported) and checked for what would tie
it to tenantkit's insides: a private tenantkit module or name imported, a ``_tk_*`` attribute
or a ``_``-prefixed attribute of a tenancy, spares pool, provisioner, registry or pool
touched, and SQL naming tenantkit's own tables or copying its schema prefixes. Registry rows,
migration state and spares change through ``Tenancy.retire_tenant()``, ``drop_retired()``,
``update_metadata()`` and ``Spares.adopt()`` / ``names()`` instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pytest_pgtenants

PACKAGE = Path(pytest_pgtenants.__file__).parent

#: tenantkit's tables: only tenantkit's storage code may name them in SQL.
_TABLES = re.compile(
    r"\btenantkit_(tenants|domains|migration_state|migration_runs|migration_journal|spares"
    r"|migrations)\b|_tenantkit_(spare|retired|template)_"
)
#: Variables holding tenantkit objects in the plugin, by name (a ``_x`` attribute on one of
#: them is tenantkit's private state).
_TENANTKIT_OBJECTS = re.compile(r"^a?(tenancy|spares|provisioner|registry|pool)$")
#: Hostile inputs the strategies generate: strings the plugin never runs, only hands to
#: tenantkit's validators, which must refuse them.
_ALLOWED_STRINGS = {
    ("strategies.py", "acme'; DROP TABLE tenantkit_tenants; --"),
    ("strategies.py", "acme'; DROP TABLE tenantkit_domains; --"),
}


def _owner_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _owner_name(node.func)  # self.tenancy()._x
    return None


def problems(source: str, filename: str) -> list[str]:
    """What in ``source`` (one module of the plugin) reaches past tenantkit's public API."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "tenantkit":
                if any(p.startswith("_") for p in parts):
                    found.append(f"{where}: imports private module {node.module}")
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found.append(f"{where}: imports private name {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tenantkit" and any(p.startswith("_") for p in parts):
                    found.append(f"{where}: imports private module {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = _owner_name(node.value)
            if node.attr.startswith("_tk_"):
                found.append(f"{where}: uses tenantkit's private attribute {node.attr}")
            elif owner is not None and _TENANTKIT_OBJECTS.match(owner):
                found.append(f"{where}: uses private attribute {owner}.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value.startswith("_")
            and not node.args[1].value.startswith("__")  # dunders are Python's, not ours
        ):
            found.append(f"{where}: {node.func.id}() of private attribute {node.args[1].value}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _TABLES.search(node.value)
            and (filename, node.value) not in _ALLOWED_STRINGS
        ):
            found.append(f"{where}: names tenantkit's tables or prefixes: {node.value[:60]!r}")
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_plugin_uses_public_tenantkit_api_only(path: Path) -> None:
    assert problems(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize(
    "source",
    [
        "from tenantkit.core._connection import TenantConnection",
        "from tenantkit.migrations._tracking import TRACKING_DDL",
        "from tenantkit.core.context import _current",
        "import tenantkit.server._cluster",
        "conn._tk_state = None",
        "self.tenancy()._pool",
        "tenancy._public",
        "getattr(spares, '_table')",
        "q = 'DELETE FROM {}.tenantkit_migration_state WHERE schema = %s'",
        "q = 'INSERT INTO {}.tenantkit_spares (schema) VALUES (%s)'",
        "q = f'UPDATE {s}.tenantkit_tenants SET x = 1'",
        "PREFIX = '_tenantkit_spare_'",
    ],
)
def test_the_check_catches(source: str) -> None:
    """The check itself can fail: each of these is reported."""
    assert problems(source, "example.py")


def test_the_check_allows_public_use() -> None:
    source = (
        "from tenantkit.provisioning import SPARE_PREFIX, Spares\n"
        "from tenantkit.core.tenancy import Tenancy\n"
        "self._lock\n"
        "retired = tenancy.retire_tenant(tenant, lock_timeout=10.0)\n"
        "conn.execute('SELECT 1 FROM pg_namespace')\n"
    )
    assert problems(source, "example.py") == []
