"""tenantkit's storage has one owner (issue 12): every table name and reserved prefix is spelled
in :mod:`tenantkit.core.storage` only, and SQLSTATEs are translated in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import pytest_pgtenants
import tenantkit
from tenantkit.core import storage
from tenantkit.errors import RegistryNotInstalled, SchemaExists, SchemaNotEmpty, SchemaNotFound

#: What a table name or an internal prefix of tenantkit's looks like in a string literal.
_SPELLED = re.compile(
    r"\btenantkit_(tenants|domains|notify|registry|migration_state|migration_runs"
    r"|migration_journal|spares|migrations)\b|_tenantkit_(spare|retired|template)_"
)


#: Hostile names the plugin's strategies generate (handed to validators, never run).
_ALLOWED = {
    ("strategies.py", "acme'; DROP TABLE tenantkit_tenants; --"),
    ("strategies.py", "acme'; DROP TABLE tenantkit_domains; --"),
}


def _string_literals(tree: ast.AST) -> list[ast.Constant]:
    """String constants of a module, docstrings left out (prose may name the tables)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _sources() -> list[Path]:
    roots = [Path(tenantkit.__file__).parent, Path(pytest_pgtenants.__file__).parent]
    return [p for root in roots for p in sorted(root.rglob("*.py"))]


def test_table_names_and_prefixes_are_spelled_in_storage_only() -> None:
    offenders = []
    for path in _sources():
        if path == Path(storage.__file__):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in _string_literals(tree):
            found = _SPELLED.search(node.value)
            if found and (path.name, node.value) not in _ALLOWED:
                offenders.append(f"{path}:{node.lineno}: {found.group(0)}")
    assert offenders == []


def test_the_scan_sees_a_spelled_table_name() -> None:
    """Negative control: the scan above finds a literal and ignores a docstring."""
    tree = ast.parse('"""tenantkit_tenants in prose"""\nQ = "select * from tenantkit_spares"\n')
    literals = [n.value for n in _string_literals(tree)]
    assert literals == ["select * from tenantkit_spares"]
    assert _SPELLED.search(literals[0])


def test_tables_are_quoted_and_qualified() -> None:
    names = storage.tables('we"ird')
    rendered = sql.SQL("{tenants} {state} {spares}").format(**names).as_string(None)
    assert rendered == (
        '"we""ird"."tenantkit_tenants" "we""ird"."tenantkit_migration_state" '
        '"we""ird"."tenantkit_spares"'
    )
    assert storage.SPARE_PREFIX.startswith(storage.INTERNAL_PREFIX)
    assert storage.RETIRED_PREFIX.startswith(storage.INTERNAL_PREFIX)
    assert storage.TEMPLATE_PREFIX.startswith(storage.INTERNAL_PREFIX)


def test_one_translation_of_sqlstates(conn: psycopg.Connection, schema_name: str) -> None:
    conn.autocommit = True
    conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema_name)))
    try:
        with pytest.raises(SchemaExists, match=schema_name), storage.translated(schema=schema_name):
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema_name)))
        conn.execute(sql.SQL("create table {}.t ()").format(sql.Identifier(schema_name)))
        with (
            pytest.raises(SchemaNotEmpty, match="cascade=True"),
            storage.translated(schema=schema_name),
        ):
            conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(schema_name)))
    finally:
        conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema_name)))
    with pytest.raises(SchemaNotFound, match="missing_ok"), storage.translated(schema=schema_name):
        conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(schema_name)))
    with pytest.raises(RegistryNotInstalled, match="install"), storage.translated():
        conn.execute(sql.SQL("select * from {tenants}").format(**storage.tables(schema_name)))


def test_a_missing_table_that_is_not_the_registry_passes_through(
    conn: psycopg.Connection,
) -> None:
    """A tenant migration's own missing table is its error, not "install the registry"."""
    conn.autocommit = True
    with pytest.raises(psycopg.errors.UndefinedTable, match="no_such_table"), storage.translated():
        conn.execute("select * from no_such_table")
