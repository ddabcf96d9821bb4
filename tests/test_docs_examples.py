"""Every Python example in docs/*.md runs, as written.

How the Markdown is read:

* Every fenced ``python`` block is an example (indented ones in list items too).
* A block with a top-level ``def test_...`` (or ``async def test_...``, ``class Test...``) is a
  **pytest recipe**. It runs as a test module of a small project (pytester), against the test
  server, with the docs' ``conftest.py`` example (``pytest_plugins = ["pytest_pgtenants"]``),
  ``pgtenants_migrations = migrations`` and the example project of ``tests/docs_examples``:
  tenant tables ``orders`` and ``notes``, and the ``app`` fixture some recipes take (a routed
  Flask app, standing in for yours). Every test in it must pass.
* The other blocks of a page are **snippets**. They run in order, in one namespace (a page
  reads like one script: a block may use names an earlier block defined), in a fresh Python
  process whose working directory holds the example ``migrations/``, with ``PGTENANTS_DSN``
  and ``DATABASE_URL`` naming a new empty database on the test server, and
  ``PGCONNECT_TIMEOUT=5`` so that an unreachable host fails fast instead of hanging.
* ``<!-- skip-example: why -->`` on the line before a fence skips that block (reported as a
  skip with the reason). Keep them few: a fragment that cannot run on its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenantkit.server import temporary_database

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PROJECT = Path(__file__).resolve().parent / "docs_examples"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)\s*$")
_SKIP = re.compile(r"^\s*<!--\s*skip-example:\s*(?P<reason>.+?)\s*-->\s*$")
_RECIPE = re.compile(r"^(async\s+def\s+test_|def\s+test_|class\s+Test)", re.MULTILINE)


@dataclass(frozen=True)
class Example:
    """One fenced python block: where it is, its code, and how it runs."""

    page: str
    line: int  # the first line of code (1-based)
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        if self.code.lstrip().startswith("# conftest.py"):
            return "conftest"
        return "recipe" if _RECIPE.search(self.code) else "snippet"


def examples(page: Path) -> list[Example]:
    """The python blocks of ``page`` in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent, lang, start = fence.group("indent"), fence.group("lang"), i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if lang != "python":
            continue
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = _SKIP.match(before)
        found.append(
            Example(page.name, start + 2, "\n".join(body) + "\n", skip and skip.group("reason"))
        )
    return found


ALL = {page.name: examples(page) for page in sorted(DOCS.glob("*.md"))}


def _params(kind: str) -> list[object]:
    params: list[object] = []
    for page, found in ALL.items():
        if kind == "snippet":
            runnable = [e for e in found if e.kind == "snippet" and e.skip is None]
            if runnable:
                params.append(pytest.param(page, id=page))
            continue
        for example in found:
            if example.kind != kind:
                continue
            marks = [pytest.mark.skip(reason=f"{example.where}: {example.skip}")] * bool(
                example.skip
            )
            params.append(pytest.param(example, id=f"{page}:{example.line}", marks=marks))
    return params


def _skipped_snippets() -> list[object]:
    return [
        pytest.param(
            e, id=f"{e.page}:{e.line}", marks=pytest.mark.skip(reason=f"{e.where}: {e.skip}")
        )
        for found in ALL.values()
        for e in found
        if e.kind != "recipe" and e.skip is not None
    ]


def test_docs_have_examples() -> None:
    """The parser finds the examples (a broken parser must not pass by finding none)."""
    kinds = [e.kind for found in ALL.values() for e in found]
    assert kinds.count("recipe") >= 5 and kinds.count("snippet") >= 5, kinds
    assert any(e.kind == "conftest" for e in ALL["testing.md"])


_RUNNER = """
import json, sys, traceback
ns = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1])):
    # Padded so that tracebacks give the line in the Markdown page.
    code = compile("\\n" * (block["line"] - 1) + block["code"], block["file"], "exec")
    try:
        exec(code, ns)
    except BaseException:
        traceback.print_exc()
        print("EXAMPLE FAILED: " + block["where"], file=sys.stderr)
        sys.exit(1)
"""


def _example_dir(tmp_path: Path) -> Path:
    work = tmp_path / "example"
    work.mkdir()
    shutil.copytree(PROJECT / "migrations", work / "migrations")
    return work


@pytest.mark.parametrize("page", _params("snippet"))
def test_snippets(page: str, server_conninfo: str, tmp_path: Path) -> None:
    """A page's snippets run in order in a fresh process against a new database."""
    blocks = [
        {"file": f"docs/{e.page}", "line": e.line, "code": e.code, "where": e.where}
        for e in ALL[page]
        if e.kind == "snippet" and e.skip is None
    ]
    work = _example_dir(tmp_path)
    (work / "blocks.json").write_text(json.dumps(blocks))
    (work / "run_examples.py").write_text(_RUNNER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGTENANTS_", "TENANTKIT_"))}
    for keep in ("PGTENANTS_PG_BIN", "PGTENANTS_PG_USER", "PGTENANTS_TMPDIR"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    with temporary_database(server_conninfo, prefix="docs_example") as conninfo:
        env.update(PGTENANTS_DSN=conninfo, DATABASE_URL=conninfo, PGCONNECT_TIMEOUT="5")
        proc = subprocess.run(
            [sys.executable, "run_examples.py", "blocks.json"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    if proc.returncode != 0:
        pytest.fail(f"{page}: an example failed\n{proc.stdout}\n{proc.stderr}", pytrace=False)


@pytest.mark.parametrize("example", _skipped_snippets())
def test_skipped(example: Example) -> None:
    """Blocks marked <!-- skip-example: ... --> (listed as skips, with the reason)."""


@pytest.mark.parametrize("example", _params("recipe"))
def test_recipes(
    example: Example,
    pytester: pytest.Pytester,
    server_conninfo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pytest recipe passes as a test module of a project set up as the docs say."""
    for key in list(os.environ):
        if key.startswith("PGTENANTS_") and key not in ("PGTENANTS_PG_BIN", "PGTENANTS_PG_USER"):
            monkeypatch.delenv(key)
    # pytester clears PYTEST_ADDOPTS; set after it started.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly -p no:cacheprovider")
    shutil.copytree(PROJECT / "migrations", pytester.path / "migrations")
    conftest = next(e for e in ALL["testing.md"] if e.kind == "conftest")
    ours = (
        (PROJECT / "recipe_conftest.py")
        .read_text()
        .replace("from __future__ import annotations\n", "")
    )
    pytester.makeconftest(conftest.code + "\n\n" + ours)
    pytester.makeini(
        """
        [pytest]
        pgtenants_migrations = migrations
        pgtenants_spares = 2
        asyncio_default_fixture_loop_scope = function
        """
    )
    name = f"test_{example.page.removesuffix('.md')}_{example.line}"
    pytester.makepyfile(**{name: example.code})
    result = pytester.runpytest_inprocess(
        f"--pgtenants-dsn={server_conninfo}", "--pgtenants-no-cache"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and set(outcomes) <= {"passed", "warnings"}, (
        f"{example.where}: the recipe does not pass\n{result.stdout.str()}"
    )
