"""Helpers of the Django tests (see conftest.py), importable as ``from _djsupport import ...``."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict

__all__ = ["PUBLIC_HOST", "database_settings", "host_of"]

#: The public tenant's host in the test project.
PUBLIC_HOST = "public.test"


def database_settings(dsn: str, **options: Any) -> dict[str, Any]:
    """A ``DATABASES`` entry for ``dsn`` on tenantkit's backend (persistent connections)."""
    params = conninfo_to_dict(dsn)
    return {
        "ENGINE": "tenantkit.django.postgresql_backend",
        "NAME": params.get("dbname", ""),
        "HOST": params.get("host", ""),
        "PORT": str(params.get("port", "")),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "CONN_MAX_AGE": None,
        "OPTIONS": dict(options),
    }


def host_of(schema: str) -> str:
    """The host the fixtures give a tenant: its schema with ``-`` for ``_``, under ``.test``."""
    return schema.replace("_", "-") + ".test"
