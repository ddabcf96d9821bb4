"""Loading migration files from disk (pure: no database access).

A migrations directory holds ``shared/`` and ``tenant/`` sub-directories. Each ``.sql`` or
``.py`` file in them is one migration, ordered by file name; its ID is the file stem. A ``.sql``
file is trusted SQL and may hold several statements. A ``.py`` file defines ``upgrade(conn)``.
A migration that cannot run in a transaction (``CREATE INDEX CONCURRENTLY``...) says so with a
first-line comment ``-- tenantkit: no-transaction`` (SQL) or ``TRANSACTIONAL = False`` (Python).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from ..errors import MigrationError

__all__ = ["Migration", "MigrationSet", "load_migrations", "migrations_digest"]

Kind = Literal["shared", "tenant"]

_NO_TX_RE = re.compile(r"^\s*--\s*tenantkit:\s*no-transaction\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    """One migration file.

    ``id`` is the file stem, ``checksum`` the SHA-256 of the file's bytes, ``transactional``
    False when the file declared itself non-transactional.
    """

    id: str
    kind: Kind
    path: Path
    checksum: str
    transactional: bool
    sql: str | None = field(default=None, repr=False)

    def run(self, conn: Any) -> None:
        """Run the migration on ``conn`` (search_path already set to the target schema)."""
        if self.sql is not None:
            # Trusted SQL from the project's own files; sent without parameters so that several
            # statements travel in one simple-protocol message and '%' needs no escaping.
            if self.sql.strip():
                conn.execute(self.sql.encode())
            return
        _load_module(self.path).upgrade(conn)


@dataclass(frozen=True)
class MigrationSet:
    """The shared and tenant migrations of one directory, each in application order."""

    directory: Path | None
    shared: tuple[Migration, ...] = ()
    tenant: tuple[Migration, ...] = ()

    def of(self, kind: Kind) -> tuple[Migration, ...]:
        """The migrations of ``kind`` ("shared" or "tenant")."""
        return self.shared if kind == "shared" else self.tenant

    def digest(self, kind: Kind) -> str:
        """The digest a schema fully migrated with ``kind`` migrations carries."""
        return migrations_digest((m.id, m.checksum) for m in self.of(kind))


def migrations_digest(applied: Iterable[tuple[str, str]]) -> str:
    """Digest of an ordered list of ``(id, checksum)`` pairs.

    Stored per schema in the central summary, so "is this schema at the head?" is an equality
    test inside one catalog query.
    """
    h = hashlib.sha256()
    for mid, checksum in applied:
        h.update(f"{mid}\0{checksum}\n".encode())
    return h.hexdigest()[:32]


def load_migrations(directory: str | os.PathLike[str] | None) -> MigrationSet:
    """Load ``<directory>/shared`` and ``<directory>/tenant``; a missing part is empty."""
    if directory is None:
        return MigrationSet(None)
    root = Path(directory)
    if not root.is_dir():
        raise MigrationError(f"migrations directory {str(root)!r} does not exist")
    return MigrationSet(
        root, _load_kind(root / "shared", "shared"), _load_kind(root / "tenant", "tenant")
    )


def _load_kind(folder: Path, kind: Kind) -> tuple[Migration, ...]:
    if not folder.is_dir():
        return ()
    found: dict[str, Migration] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".sql", ".py") or path.name.startswith(("_", ".")):
            continue
        if path.stem in found:
            raise MigrationError(
                f"two migrations share the ID {path.stem!r} in {str(folder)!r}; rename one",
                migration=path.stem,
            )
        data = path.read_bytes()
        checksum = hashlib.sha256(data).hexdigest()
        if path.suffix == ".sql":
            text = data.decode("utf-8")
            first = text.split("\n", 1)[0]
            found[path.stem] = Migration(
                path.stem, kind, path, checksum, not _NO_TX_RE.match(first), text
            )
        else:
            module = _load_module(path)
            if not callable(getattr(module, "upgrade", None)):
                raise MigrationError(
                    f"{str(path)!r} defines no upgrade(conn) function", migration=path.stem
                )
            transactional = bool(getattr(module, "TRANSACTIONAL", True))
            found[path.stem] = Migration(path.stem, kind, path, checksum, transactional)
    return tuple(found[k] for k in sorted(found))


_modules: dict[tuple[Path, float], ModuleType] = {}


def _load_module(path: Path) -> Any:
    # Cached by path and mtime: a worker applying one .py migration to 1,000 tenants imports it
    # once, and an edited file is re-imported.
    key = (path.resolve(), path.stat().st_mtime)
    module = _modules.get(key)
    if module is None:
        name = "tenantkit_migration_" + hashlib.sha1(str(key[0]).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise MigrationError(f"cannot import {str(path)!r}", migration=path.stem)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[key] = module
    return module
