"""Loading migrations (pure: no database access): tenantkit's own directory layout, or any
:class:`~._source.MigrationSource`.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from ..errors import MigrationError

if TYPE_CHECKING:
    from psycopg import sql

    from ._source import MigrationSource

__all__ = [
    "Migration",
    "MigrationSet",
    "bind_source",
    "load_directory",
    "load_migrations",
    "migrations_digest",
]

Kind = Literal["shared", "tenant"]

_NO_TX_RE = re.compile(r"^\s*--\s*tenantkit:\s*no-transaction\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Migration:
    """One migration.

    For a file of a migrations directory, ``id`` is the file stem, ``checksum`` the SHA-256 of
    the file's bytes, ``transactional`` False when the file declared itself non-transactional.
    Other sources (``tenantkit.alembic``...) fill the same fields; ``sql`` is trusted SQL text
    (the fast path), else ``runner(conn)`` (or, for files, the module's ``upgrade(conn)``)
    runs it. ``source`` is the source it came from (for its ``after_schema`` hook).
    """

    id: str
    kind: Kind
    path: Path
    checksum: str
    transactional: bool
    sql: str | None = field(default=None, repr=False)
    runner: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)
    source: MigrationSource | None = field(default=None, repr=False, compare=False)

    def run(self, conn: Any) -> None:
        """Run the migration on ``conn`` (search_path already set to the target schema)."""
        if self.sql is not None:
            # Trusted SQL from the project's own files; sent without parameters so that several
            # statements travel in one simple-protocol message and '%' needs no escaping.
            if self.sql.strip():
                conn.execute(self.sql.encode())
            return
        if self.runner is not None:
            self.runner(conn)
            return
        _load_module(self.path).upgrade(conn)


@dataclass(frozen=True)
class MigrationSet:
    """The shared and tenant migrations of one directory (or source), each in application
    order. ``source`` is the source they came from, if any (see :func:`bind_source`)."""

    directory: Path | None
    shared: tuple[Migration, ...] = ()
    tenant: tuple[Migration, ...] = ()
    source: MigrationSource | None = field(default=None, repr=False, compare=False)

    def of(self, kind: Kind) -> tuple[Migration, ...]:
        """The migrations of ``kind`` ("shared" or "tenant")."""
        return self.shared if kind == "shared" else self.tenant

    def digest(self, kind: Kind) -> str:
        """The digest a schema fully migrated with ``kind`` migrations carries."""
        return migrations_digest((m.id, m.checksum) for m in self.of(kind))

    def after_sql(
        self, kind: Kind, schema: str, applied: Sequence[str], new: Sequence[str]
    ) -> sql.Composable | None:
        """The source's ``after_schema`` SQL for ``schema`` (None without a source or hook)."""
        return after_sql(self.source, kind, schema, applied, new)


def after_sql(
    source: MigrationSource | None,
    kind: Kind,
    schema: str,
    applied: Sequence[str],
    new: Sequence[str],
) -> sql.Composable | None:
    """``source.after_schema(...)`` when the source has the hook, else None."""
    hook = getattr(source, "after_schema", None)
    if hook is None:
        return None
    result: sql.Composable | None = hook(kind, schema, tuple(applied), tuple(new))
    return result


def bind_source(mset: MigrationSet, source: MigrationSource) -> MigrationSet:
    """``mset`` with ``source`` recorded on it and on each of its migrations, so that the
    engine finds the source's ``after_schema`` hook wherever the migrations go."""
    return MigrationSet(
        mset.directory,
        tuple(replace(m, source=source) for m in mset.shared),
        tuple(replace(m, source=source) for m in mset.tenant),
        source,
    )


def migrations_digest(applied: Iterable[tuple[str, str]]) -> str:
    """Digest of an ordered list of ``(id, checksum)`` pairs.

    Stored per schema in the central summary, so "is this schema at the head?" is an equality
    test inside one catalog query.
    """
    h = hashlib.sha256()
    for mid, checksum in applied:
        h.update(f"{mid}\0{checksum}\n".encode())
    return h.hexdigest()[:32]


def load_migrations(
    directory: str | os.PathLike[str] | MigrationSource | None,
) -> MigrationSet:
    """Load ``<directory>/shared`` and ``<directory>/tenant`` (a missing part is empty), or the
    migrations of a :class:`~tenantkit.migrations.MigrationSource`."""
    if directory is None:
        return MigrationSet(None)
    if not isinstance(directory, (str, os.PathLike)):
        from ._source import as_source

        source = as_source(directory)
        assert source is not None
        found = source.load()
        bound = found.source is source and all(
            m.source is source for m in (*found.shared, *found.tenant)
        )
        return found if bound else bind_source(found, source)
    return load_directory(directory)


def load_directory(directory: str | os.PathLike[str]) -> MigrationSet:
    """Load a tenantkit migrations directory (no source attached: it has no hook)."""
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
