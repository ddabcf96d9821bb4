"""Migrations for the shared schema and every tenant schema.

Files live in ``<dir>/shared`` and ``<dir>/tenant`` (``.sql`` or ``.py``, ordered by name, ID =
stem). :func:`plan` says what is pending where in one query; :func:`migrate` applies it, each
schema atomically under its own advisory lock, with sequential, thread or process executors.
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
from ._tracking import template_schema_name

__all__ = [
    "ExecutorName",
    "Migration",
    "MigrationInterrupted",
    "MigrationReport",
    "MigrationSet",
    "Plan",
    "ProgressEvent",
    "SchemaPlan",
    "SchemaResult",
    "load_migrations",
    "migrate",
    "plan",
    "template_schema_name",
]
