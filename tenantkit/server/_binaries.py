"""Finding PostgreSQL server binaries (``initdb`` and ``postgres``).

Kept apart from :mod:`tenantkit.server` because it is pure file-system lookup: it never starts
anything, so it can be tested and reused (the CLI, the pytest plugin) without a server.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import PostgresNotFound

__all__ = ["REQUIRED_PROGRAMS", "bundled_bin_dir", "find_pg_bin", "is_pg_bin_dir"]

#: The programs a directory must hold to run a throw-away cluster.
REQUIRED_PROGRAMS = ("initdb", "postgres")

_ENV_BIN = "PGTENANTS_PG_BIN"

_INSTALL_HELP = (
    "Install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`; macOS: "
    "`brew install postgresql@16` or Postgres.app; Fedora/RHEL: `dnf install "
    "postgresql-server`), or `pip install 'pytest-pgtenants[bundled]'` for a bundled "
    "PostgreSQL 16, or point PGTENANTS_PG_BIN at a directory holding initdb and postgres. "
    "To use a server you already run instead, set PGTENANTS_DSN, e.g. "
    "PGTENANTS_DSN='host=127.0.0.1 port=5432 user=postgres dbname=postgres'."
)


def is_pg_bin_dir(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` is a directory holding executable ``initdb`` and ``postgres``."""
    directory = Path(path)
    return all(
        (directory / name).is_file() and os.access(directory / name, os.X_OK)
        for name in REQUIRED_PROGRAMS
    )


def bundled_bin_dir() -> Path | None:
    """Return the bin directory of the PostgreSQL bundled by the ``pgserver`` package.

    The package is located without importing it (importing pgserver pulls in more than we
    need); ``None`` when it is not installed.
    """
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key: the version numbers found in a path (``.../postgresql/15/bin`` -> (15,))."""
    numbers = re.findall(r"\d+", path)
    return tuple(int(n) for n in numbers) or (0,)


def _newest_first(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern), key=_version_key, reverse=True)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = result.stdout.strip()
    return Path(line) if line else None


def _candidates() -> Iterator[tuple[str, Path | None]]:
    """Yield ``(where, directory)`` in search order; ``directory`` is None when not applicable."""
    initdb = shutil.which("initdb")
    postgres = shutil.which("postgres")
    if initdb and postgres:
        # Resolve symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb): the
        # directory that holds both real programs is the one that works.
        yield "PATH", Path(os.path.realpath(initdb)).parent
        yield "PATH", Path(initdb).parent
    else:
        yield "PATH", None
    yield "pg_config --bindir", _pg_config_bindir()
    for path in _newest_first("/usr/lib/postgresql/*/bin"):
        yield "Debian/Ubuntu layout", Path(path)
    for path in _newest_first("/usr/pgsql-*/bin"):
        yield "RHEL/Fedora PGDG layout", Path(path)
    brew_patterns = (
        "/opt/homebrew/opt/postgresql@*/bin",
        "/usr/local/opt/postgresql@*/bin",
        "/home/linuxbrew/.linuxbrew/opt/postgresql@*/bin",
    )
    for pattern in brew_patterns:
        for path in _newest_first(pattern):
            yield "Homebrew layout", Path(path)
    for prefix in ("/opt/homebrew", "/usr/local", "/home/linuxbrew/.linuxbrew"):
        yield "Homebrew layout", Path(prefix) / "opt" / "postgresql" / "bin"
    yield "Postgres.app", Path("/Applications/Postgres.app/Contents/Versions/latest/bin")
    for path in _newest_first("/Applications/Postgres.app/Contents/Versions/*/bin"):
        yield "Postgres.app", Path(path)
    yield "pgserver (pip install 'pytest-pgtenants[bundled]')", bundled_bin_dir()


def _explicit_dir(value: str | os.PathLike[str]) -> Path:
    path = Path(value).expanduser()
    # Accept the path of a program too (``.../bin/postgres`` or ``pg_config``), not only its dir.
    return path.parent if path.is_file() else path


def find_pg_bin(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory holding the PostgreSQL server programs ``initdb`` and ``postgres``.

    Search order: ``explicit`` (or else the ``PGTENANTS_PG_BIN`` environment variable; when
    one of these is given, nothing else is tried), ``PATH``, ``pg_config --bindir``, the
    Debian/Ubuntu layout ``/usr/lib/postgresql/<major>/bin`` (newest first), the PGDG RHEL
    layout, Homebrew and Postgres.app layouts, and finally the PostgreSQL 16 bundled by the
    ``pgserver`` package (extra ``bundled``).

    Raises :class:`~tenantkit.errors.PostgresNotFound` listing every place it looked.
    """
    given = explicit if explicit is not None else os.environ.get(_ENV_BIN) or None
    if given is not None:
        source = "bin_dir option" if explicit is not None else _ENV_BIN
        given_dir = _explicit_dir(given)
        if is_pg_bin_dir(given_dir):
            return given_dir
        missing = ", ".join(n for n in REQUIRED_PROGRAMS if not (given_dir / n).is_file())
        raise PostgresNotFound(
            f"PostgreSQL server programs not found: {given_dir} (from {source}) does not "
            f"hold {missing or 'executable ' + ' and '.join(REQUIRED_PROGRAMS)}. "
            f"Point it at PostgreSQL's bin directory (see `pg_config --bindir`). {_INSTALL_HELP}"
        )
    looked: list[str] = []
    seen: set[Path] = set()
    for where, directory in _candidates():
        if directory is None:
            looked.append(f"{where}: nothing found")
            continue
        if directory in seen:
            continue
        seen.add(directory)
        if is_pg_bin_dir(directory):
            return directory
        looked.append(f"{where}: {directory}")
    places = "\n".join(f"  - {entry}" for entry in looked)
    platform_hint = "" if sys.platform.startswith(("linux", "darwin")) else " (unsupported OS?)"
    raise PostgresNotFound(
        "PostgreSQL server programs (initdb, postgres) not found"
        f"{platform_hint}. Looked in:\n{places}\n{_INSTALL_HELP}"
    )
