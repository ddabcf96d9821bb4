"""``manage.py migrate`` is ``migrate_schemas`` (as with django-tenants): a plain ``migrate``
would migrate only the public schema and leave tenants behind."""

from __future__ import annotations

from .migrate_schemas import MigrateSchemasCommand

__all__ = ["Command"]

Command = MigrateSchemasCommand
