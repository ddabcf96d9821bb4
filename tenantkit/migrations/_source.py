"""Migration sources: where the engine gets its migrations from, and which schemas are tenants.

The engine (planning, :func:`~tenantkit.migrations.migrate`, the executors and the
provisioner's replay path) never reads migration files itself: it asks a *migration source*.
tenantkit's own directory of ``.sql``/``.py`` files is one source (:class:`DirectorySource`,
what ``migrations="path"`` and ``Tenancy(migrations=...)`` give); ``tenantkit.alembic`` turns an
Alembic project into another, and a Django integration can turn Django migrations into a third.

Contract of a :class:`MigrationSource`
--------------------------------------
``load() -> MigrationSet``
    The shared and the tenant migrations, each tuple in application order. Each
    :class:`~tenantkit.migrations.Migration` has

    * ``id``: unique within its kind, stable forever (it is stored in every schema's history);
    * ``checksum``: changes when the migration's definition changes (a hash of its file); an
      applied migration whose checksum changed stops planning with
      ``MigrationChecksumMismatch``;
    * ``transactional``: False for a migration that must run outside a transaction (it then
      runs alone, under a session-level lock, and never through a pooler);
    * either ``sql`` (trusted SQL text, several statements allowed, no schema names in it: it
      runs with ``search_path`` set to ``"<schema>", "<shared>", pg_temp``) — this is the fast
      path, sent in one message per schema together with the lock and the bookkeeping — or a
      ``runner`` callable ``runner(conn)`` given a sync ``psycopg.Connection`` in autocommit mode
      with a transaction open (for transactional migrations) and the same ``search_path``.
      A runner must not commit, roll back or change the ``search_path`` for good.

    ``load()`` may be called many times (per ``migrate()``, per provisioned tenant, once in
    each worker process), so cache what is expensive (keyed by file modification times).
    The engine records the source on the set and on each migration (``load_migrations()``
    calls ``bind_source()``), which is how it finds the hook below wherever a migration goes.

``after_schema(kind, schema, applied, new) -> psycopg.sql.Composable | None``
    Called after a schema's pending migrations ran, *in the same transaction*, before it
    commits: return SQL that brings the source's own history table up to date (Alembic's
    ``alembic_version``, Django's ``django_migrations``), or None. ``kind`` is ``"shared"`` or
    ``"tenant"`` (spares and the template are tenant schemas), ``applied`` every ID now
    applied in ``schema`` in migration order, ``new`` the IDs applied by this transaction.
    Name ``schema`` explicitly in the SQL (``sql.Identifier(schema, "table")``): the provisioner
    also calls it when it creates a tenant by cloning the template, without a search_path. It
    must be cheap and must not read the database (it is composed before the message is sent).
    A failure in it rolls the schema's migrations back like a failing migration.

``tenant_schemas`` (attribute or property) ``-> TenantSchemas | None``
    None: the tenants are the rows of tenantkit's registry (``<shared>.tenantkit_tenants``).
    Otherwise a :class:`TenantSchemas` whose ``select(shared)`` is a ``SELECT`` of one text
    column of tenant schema names (e.g. from Django's ``TENANT_MODEL`` table); planning then
    embeds it in its one summary query, so it must be a single statement without parameters.

Worker processes
    The ``processes`` executor pickles the source into each worker and calls ``load()`` there:
    keep a source's state to what re-creates it (paths, option values) and drop caches in
    ``__getstate__`` if they do not pickle.

Where the engine keeps its own books
    Whatever the source, tenantkit records each schema's history in
    ``<schema>.tenantkit_migrations`` and the summary in ``<shared>.tenantkit_migration_state``
    (that is what makes planning one query), in the same transaction as the migrations and the
    ``after_schema`` SQL. The source's own table is written for the source's tools (``alembic
    current``, ``manage.py showmigrations``); tenantkit does not read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._loader import MigrationSet

__all__ = [
    "DirectorySource",
    "MigrationSource",
    "SourceKind",
    "TenantSchemas",
    "as_source",
]

#: The two lists a source provides.
SourceKind = Literal["shared", "tenant"]


@runtime_checkable
class TenantSchemas(Protocol):
    """Which schemas are tenants, as SQL the planner embeds in its one query."""

    def select(self, shared: str) -> sql.Composable:
        """A ``SELECT`` of one text column: the tenant schema names (``shared`` is the shared
        schema's name, for qualifying tables). No parameters, one statement."""
        ...


@runtime_checkable
class MigrationSource(Protocol):
    """Where migrations come from (see the module docstring for the full contract)."""

    @property
    def tenant_schemas(self) -> TenantSchemas | None:
        """Where the tenant schema names come from; None for tenantkit's registry."""
        ...

    def load(self) -> MigrationSet:
        """The shared and tenant migrations, each in application order."""
        ...

    def after_schema(
        self, kind: SourceKind, schema: str, applied: Sequence[str], new: Sequence[str]
    ) -> sql.Composable | None:
        """SQL run in the schema's migrating transaction after its migrations, or None."""
        ...


@dataclass(frozen=True)
class DirectorySource:
    """tenantkit's own migration files: ``<path>/shared`` and ``<path>/tenant``.

    What a directory given as ``migrations=`` becomes; it keeps no history table of its own.
    """

    path: str

    @property
    def tenant_schemas(self) -> TenantSchemas | None:
        """Always the registry."""
        return None

    def load(self) -> MigrationSet:
        """Load the directory (see :func:`tenantkit.migrations.load_migrations`)."""
        from ._loader import load_directory

        return load_directory(self.path)

    def after_schema(
        self, kind: SourceKind, schema: str, applied: Sequence[str], new: Sequence[str]
    ) -> sql.Composable | None:
        """Nothing: ``tenantkit_migrations`` is the only history."""
        return None


def as_source(migrations: object) -> MigrationSource | None:
    """A directory (``str``/``PathLike``) or a source, as a source; None stays None."""
    if migrations is None:
        return None
    if isinstance(migrations, (str, os.PathLike)):
        return DirectorySource(str(Path(migrations)))
    if isinstance(migrations, MigrationSource):
        return migrations
    raise TypeError(
        f"migrations must be a directory or a migration source (with load(), after_schema() "
        f"and tenant_schemas), not {type(migrations).__name__}"
    )
