"""Introspection that sees the current schema, as django-tenants' does.

Django's PostgreSQL introspection lists what is visible on the ``search_path``
(``pg_table_is_visible``). The current tenant's path starts with its schema and the public
schema follows, so this class restricts tables, sequences and constraints to the current
schema alone, without changing the connection's path (django-tenants sends two ``SET``
statements per call for it).
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql.introspection import DatabaseIntrospection

from .. import _state

__all__ = ["DatabaseSchemaIntrospection"]


class DatabaseSchemaIntrospection(DatabaseIntrospection):
    """Introspection limited to the current schema (tenant or public)."""

    def _only_current(self, cursor: Any, method: Any, *args: Any) -> Any:
        schema = _state.current()[0].schema_name
        token = _state.set_current(_state.FakeTenant(schema), include_public=False)
        try:
            return method(cursor, *args)
        finally:
            _state.reset_current(token)

    def get_table_list(self, cursor: Any) -> Any:
        """Tables and views of the current schema."""
        return self._only_current(cursor, super().get_table_list)

    def get_table_description(self, cursor: Any, table_name: str) -> Any:
        """Columns of ``table_name`` in the current schema."""
        return self._only_current(cursor, super().get_table_description, table_name)

    def get_sequences(self, cursor: Any, table_name: str, table_fields: Any = ()) -> Any:
        """Sequences of ``table_name`` in the current schema."""
        return self._only_current(cursor, super().get_sequences, table_name, table_fields)

    def get_relations(self, cursor: Any, table_name: str) -> Any:
        """Foreign keys of ``table_name`` in the current schema."""
        return self._only_current(cursor, super().get_relations, table_name)

    def get_constraints(self, cursor: Any, table_name: str) -> Any:
        """Constraints and indexes of ``table_name`` in the current schema."""
        return self._only_current(cursor, super().get_constraints, table_name)
