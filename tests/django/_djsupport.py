"""Helpers of the Django tests (see conftest.py), importable as ``from _djsupport import ...``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import _threads
from psycopg.conninfo import conninfo_to_dict

__all__ = [
    "PUBLIC_HOST",
    "database_settings",
    "host_of",
    "in_threads",
    "item_names",
    "raw_connection",
]

#: The public tenant's host in the test project.
PUBLIC_HOST = "public.test"


def database_settings(dsn: str, **options: Any) -> dict[str, Any]:
    """A ``DATABASES`` entry for ``dsn`` on tenantkit's backend (persistent connections).

    Complete with the keys Django's connection handler would fill in, so that the entry can
    also build a ``DatabaseWrapper`` for an extra alias directly.
    """
    params = conninfo_to_dict(dsn)
    return {
        "ENGINE": "tenantkit.django.postgresql_backend",
        "NAME": params.get("dbname", ""),
        "HOST": params.get("host", ""),
        "PORT": str(params.get("port", "")),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": False,
        "TIME_ZONE": None,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {},
        "OPTIONS": dict(options),
    }


def raw_connection(alias: str = "default") -> Any:
    """The psycopg connection under Django's connection ``alias`` (opened if needed)."""
    from django.db import connections

    connections[alias].ensure_connection()
    return connections[alias].connection


def item_names(alias: str = "default") -> list[str]:
    """The names of the current schema's ``tenant_app.Item`` rows, by id."""
    from project.tenant_app.models import Item

    return [i.name for i in Item.objects.using(alias).order_by("id")]


def host_of(schema: str) -> str:
    """The host the fixtures give a tenant: its schema with ``-`` for ``_``, under ``.test``."""
    return schema.replace("_", "-") + ".test"


def in_threads(work: Callable[[int], None], count: int = 8) -> None:
    """:func:`_threads.in_threads`, each thread closing its Django connections when done."""

    def close() -> None:
        from django.db import connections

        connections.close_all()

    _threads.in_threads(work, count, cleanup=close)
