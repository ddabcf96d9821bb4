#!/usr/bin/env python3
"""Generate tenantkit's sync modules from their async sources.

The async module is the single source of truth; its sync twin is derived from it through the
syntax tree, so the two cannot drift apart:

* ``async def`` / ``async with`` / ``async for`` lose their ``async``, ``await x`` becomes ``x``;
* names (parameters and keyword arguments too), attributes, imports, strings and comments are
  renamed through :data:`NAMES` (``AsyncTenancy`` -> ``Tenancy``, ``aconn`` -> ``conn``, ...);
* where the two must really differ, the async source says so in one place::

      if True:  # ASYNC
          ...  # async only
      else:
          ...  # sync only (optional)

  The async module runs the first branch (``if True``); the sync module gets only the
  ``else`` branch, inlined.

The output is formatted with ruff (format, import sorting) so the generated file reads like
hand-written code, and carries a header naming its source. ``--check`` regenerates in memory
and exits 1 if a generated file is stale (CI runs it).

Usage::

    python tools/async_to_sync.py            # regenerate every module in MODULES
    python tools/async_to_sync.py --check    # fail if any is stale
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import ast_comments

ROOT = Path(__file__).resolve().parent.parent

#: async source -> generated sync module (paths relative to the repository root).
MODULES: dict[str, str] = {
    "tenantkit/core/_schema_async.py": "tenantkit/core/_schema_sync.py",
    "tenantkit/core/_tenancy_async.py": "tenantkit/core/_tenancy_sync.py",
    "tenantkit/provisioning/_provision_async.py": "tenantkit/provisioning/_provision_sync.py",
    "tests/tenantkit/test_schema_async.py": "tests/tenantkit/test_schema_sync.py",
    "tests/tenantkit/test_tenancy_async.py": "tests/tenantkit/test_tenancy_sync.py",
}

#: Identifiers renamed in code, strings and comments (whole words only).
NAMES: dict[str, str] = {
    "AbstractAsyncContextManager": "AbstractContextManager",
    "AsyncConnection": "Connection",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncIterator": "Iterator",
    "AsyncProvisioner": "Provisioner",
    "AsyncSchemaProvisioner": "SchemaProvisioner",
    "AsyncTenancy": "Tenancy",
    "AsyncTenantConnection": "TenantConnection",
    "_ACheckout": "_Checkout",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "_aend": "_end",
    "_agetconn": "_getconn",
    "acheck_alive": "check_alive",
    "aclose": "close",
    "aconn": "conn",
    "acreate_schema": "create_schema",
    "adrop_schema": "drop_schema",
    "alist_schemas": "list_schemas",
    "aprobe_error": "probe_error",
    "arename_schema": "rename_schema",
    "aschema_exists": "schema_exists",
    "ause_tenant": "use_tenant",
    "aprovision_schema": "provision_schema",
    "_aby_migrations": "_by_migrations",
    "_provision_async": "_provision_sync",
    "atenancy": "tenancy",
    "atk": "tk",
    "_tenancy_async": "_tenancy_sync",
    "test_tenancy_async": "test_tenancy_sync",
}

_ALTERNATIVES = "|".join(sorted(map(re.escape, NAMES), key=len, reverse=True))
_WORDS = re.compile(rf"\b({_ALTERNATIVES})\b")


def _rename(text: str) -> str:
    return _WORDS.sub(lambda m: NAMES[m.group(1)], text)


def _is_async_block(node: ast.AST) -> bool:
    """``if True:  # ASYNC`` (the marker is the comment on the ``if`` line)."""
    if not (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Constant)
        and node.test.value is True
        and node.body
    ):
        return False
    first = node.body[0]
    return isinstance(first, ast_comments.Comment) and first.inline and "ASYNC" in first.value


class _AsyncToSync(ast.NodeTransformer):
    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        self.generic_visit(node)
        fields = {f: getattr(node, f) for f in node._fields}
        new = ast.FunctionDef(**fields)
        new.name = _rename(new.name)
        return ast.copy_location(new, node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.generic_visit(node)
        node.name = _rename(node.name)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.generic_visit(node)
        node.name = _rename(node.name)
        return node

    def visit_AsyncWith(self, node: ast.AsyncWith) -> ast.AST:
        self.generic_visit(node)
        return ast.copy_location(ast.With(items=node.items, body=node.body), node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> ast.AST:
        self.generic_visit(node)
        new = ast.For(target=node.target, iter=node.iter, body=node.body, orelse=node.orelse)
        return ast.copy_location(new, node)

    def visit_Await(self, node: ast.Await) -> ast.AST:
        return self.visit(node.value)

    def visit_If(self, node: ast.If) -> Any:
        if _is_async_block(node):
            return [self.visit(n) for n in node.orelse] or None
        self.generic_visit(node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = _rename(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        self.generic_visit(node)
        node.arg = _rename(node.arg)
        return node

    def visit_keyword(self, node: ast.keyword) -> ast.AST:
        self.generic_visit(node)
        if node.arg:
            node.arg = _rename(node.arg)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        node.attr = _rename(node.attr)
        return node

    def visit_alias(self, node: ast.alias) -> ast.AST:
        node.name = _rename(node.name)
        if node.asname:
            node.asname = _rename(node.asname)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        self.generic_visit(node)
        if node.module:
            node.module = _rename(node.module)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            node.value = _rename(node.value)
        return node

    def visit_Comment(self, node: Any) -> Any:
        node.value = _rename(node.value)
        return node


def _ruff(code: str, path: Path) -> str:
    """Sort imports, drop unused ones and format (ruff reads pyproject.toml).

    Adjacent string literals come out of the syntax tree joined, and an ``async with`` nested
    in a ``with`` becomes two nested ``with``: pyproject.toml exempts generated modules from
    E501 and SIM117.
    """
    ruff = [sys.executable, "-m", "ruff"]
    name = ["--stdin-filename", str(path)]
    fixed = subprocess.run(
        [*ruff, "check", "--select", "I,F401,UP", "--fix", "--quiet", "--exit-zero", *name, "-"],
        input=code,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return subprocess.run(
        [*ruff, "format", "--quiet", *name, "-"],
        input=fixed,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def generate(source: Path, target: Path) -> str:
    """The sync module's text, generated from the async ``source``."""
    tree = ast_comments.parse(source.read_text())
    tree = _AsyncToSync().visit(tree)
    ast.fix_missing_locations(tree)
    body = ast_comments.unparse(tree)
    rel = source.relative_to(ROOT)
    header = (
        f"# WARNING: generated from {rel} by tools/async_to_sync.py. Do not edit this file:\n"
        f"# edit the async source and run `python tools/async_to_sync.py`.\n"
    )
    return _ruff(header + body + "\n", target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    stale = []
    for src, dst in MODULES.items():
        source, target = ROOT / src, ROOT / dst
        text = generate(source, target)
        current = target.read_text() if target.exists() else None
        if text == current:
            continue
        if args.check:
            stale.append(dst)
        else:
            target.write_text(text)
            print(f"generated {dst} from {src}")
    if stale:
        print(
            "stale generated files (run `python tools/async_to_sync.py`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
