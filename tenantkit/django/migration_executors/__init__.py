"""django-tenants' executor names, for code that picks an executor by name.

``migrate_schemas`` runs on tenantkit's migration engine, whose executors replace
django-tenants' (``standard`` is the engine's sequential executor, ``multiprocessing`` its
processes executor, ``threads`` its threads executor). :func:`get_executor` keeps
django-tenants' lookup: by codename, else the ``EXECUTOR`` environment variable, else
``standard``; the classes migrate the schemas they are given through ``migrate_schemas``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ..utils import get_public_schema_name

__all__ = [
    "MigrationExecutor",
    "MultiprocessingExecutor",
    "StandardExecutor",
    "ThreadsExecutor",
    "get_executor",
]


class MigrationExecutor:
    """Migrate the given schemas with ``migrate_schemas --executor <codename>``."""

    #: The ``--executor`` value (django-tenants' ``codename``).
    codename = ""

    def __init__(self, args: Iterable[Any] = (), options: dict[str, Any] | None = None) -> None:
        self.args = list(args)
        self.options = dict(options or {})
        self.PUBLIC_SCHEMA_NAME = get_public_schema_name()

    def run_migrations(self, tenants: Iterable[str] | None = None) -> None:
        """Migrate these schemas (the public one first when listed)."""
        from django.core.management import call_command

        options = {
            k: v
            for k, v in self.options.items()
            if k not in ("schema_name", "shared", "tenant", "executor", "skip_checks")
        }
        options.setdefault("interactive", False)
        for schema in sorted(tenants or (), key=lambda s: s != self.PUBLIC_SCHEMA_NAME):
            call_command(
                "migrate_schemas",
                *self.args,
                schema_name=schema,
                executor=self.codename,
                **options,
            )

    def run_multi_type_migrations(self, tenants: Iterable[tuple[str, str]]) -> None:
        """Migrate ``(schema, tenant type)`` pairs (the router picks each type's apps)."""
        self.run_migrations([schema for schema, _type in tenants])


class StandardExecutor(MigrationExecutor):
    """One schema at a time (the engine's sequential executor)."""

    codename = "standard"


class MultiprocessingExecutor(MigrationExecutor):
    """``TENANT_MULTIPROCESSING_MAX_PROCESSES`` processes (the engine's processes executor)."""

    codename = "multiprocessing"


class ThreadsExecutor(MigrationExecutor):
    """As many threads, each with its own connection (the engine's threads executor)."""

    codename = "threads"


_BY_NAME = {k.codename: k for k in (StandardExecutor, MultiprocessingExecutor, ThreadsExecutor)}


def get_executor(codename: str | None = None) -> type[MigrationExecutor]:
    """The executor class named ``codename``, else ``$EXECUTOR``, else ``standard``."""
    name = codename or os.environ.get("EXECUTOR") or StandardExecutor.codename
    try:
        return _BY_NAME[name]
    except KeyError:
        raise NotImplementedError(
            f"no executor {name!r}: use one of {', '.join(sorted(_BY_NAME))}"
        ) from None
