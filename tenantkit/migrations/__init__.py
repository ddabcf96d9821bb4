"""Migrations for the shared schema and every tenant schema.

Files live in ``<dir>/shared`` and ``<dir>/tenant`` (``.sql`` or ``.py``, ordered by name, ID =
stem), or come from any :class:`MigrationSource` (``tenantkit.alembic.AlembicSource``...), given
wherever a directory is (``migrations=``). :func:`plan` says what is pending where in one
query; :func:`migrate` applies it, each schema atomically under its own advisory lock, with
sequential, thread or process executors.
See docs/migrations.md.
"""

from __future__ import annotations

from ._loader import Migration, MigrationSet, load_migrations
from ._report import (
    MigrationInterrupted,
    MigrationReport,
    Plan,
    ProgressEvent,
    SchemaPlan,
    SchemaResult,
)
from ._run import ExecutorName, migrate, plan
from ._source import DirectorySource, MigrationSource, TenantSchemas
from ._tracking import template_schema_name

__all__ = [
    "DirectorySource",
    "ExecutorName",
    "Migration",
    "MigrationInterrupted",
    "MigrationReport",
    "MigrationSet",
    "MigrationSource",
    "Plan",
    "ProgressEvent",
    "SchemaPlan",
    "SchemaResult",
    "TenantSchemas",
    "load_migrations",
    "migrate",
    "plan",
    "template_schema_name",
]
