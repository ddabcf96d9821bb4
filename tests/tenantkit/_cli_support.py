"""Running the ``tenantkit`` command the way users do: its console script, in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tenantkit import _demo

#: The packaged example project (a shared ``plans`` table, a tenant ``notes`` table).
MIGRATIONS = str(_demo.MIGRATIONS)


def tenantkit_command() -> list[str]:
    """The installed ``tenantkit`` console script (next to this Python, else on PATH, else
    ``python -m tenantkit.cli``)."""
    script = Path(sys.executable).with_name("tenantkit")
    if script.exists():
        return [str(script)]
    found = shutil.which("tenantkit")
    if found is not None:
        return [found]
    # A tree run from a copy with PYTHONPATH (CI's unprivileged run) may have no script for
    # this interpreter: the module runs the same entry point, tenantkit.cli:main.
    return [sys.executable, "-m", "tenantkit.cli"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI run: no inherited DSN or migrations, no colour, wide output."""
    # What names a database, migrations or a shared schema goes; where and how an embedded
    # server runs (PGTENANTS_TMPDIR, _PG_BIN, _PG_USER, _CACHE_DIR) stays, so CI still sees
    # every server the CLI starts.
    chosen = {"DSN", "MIGRATIONS", "SHARED_SCHEMA"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL"
        and not (k.startswith(("PGTENANTS_", "TENANTKIT_")) and k.split("_", 1)[1] in chosen)
    }
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    env.update(extra or {})
    return env


def tenantkit(
    *args: str,
    dsn: str | None = None,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``tenantkit [--dsn DSN] ARGS...``; the result has ``returncode``, ``stdout``,
    ``stderr``."""
    head = ["--dsn", dsn] if dsn is not None else []
    return subprocess.run(
        [*tenantkit_command(), *head, *args],
        input=input,
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
