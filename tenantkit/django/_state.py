"""The current Django tenant: a ContextVar, so each thread and asyncio task has its own.

django-tenants keeps the tenant on the connection object; Django's connections are per thread,
but its async ORM runs queries in worker threads (``sync_to_async``) and pooled connections
change hands, so the tenant is kept here instead and the backend reads it for every statement.
asgiref copies the caller's context into the worker thread, so an async view's queries see the
tenant its request was routed to.
"""

from __future__ import annotations

import contextvars
from typing import Any

from ._names import check_schema_name, path_bytes
from .conf import tenant_settings

__all__ = ["FakeTenant", "current", "forget_paths", "path_for", "public_tenant", "set_current"]


class FakeTenant:
    """A stand-in tenant that only knows its schema (``set_schema()``, ``schema_context()``)."""

    def __init__(self, schema_name: str, tenant_type: str | None = None) -> None:
        self.schema_name = schema_name
        self.tenant_type = tenant_type

    def get_tenant_type(self) -> str | None:
        """The tenant type given to ``set_schema()`` (multi-type tenants)."""
        return self.tenant_type

    def __repr__(self) -> str:
        return f"FakeTenant(schema_name={self.schema_name!r})"


#: (tenant, include_public) of this thread/task; None: the public schema.
_current: contextvars.ContextVar[tuple[Any, bool] | None] = contextvars.ContextVar(
    "tenantkit_django_tenant", default=None
)
_public: FakeTenant | None = None
_paths: dict[tuple[str, bool], bytes] = {}


def public_tenant() -> FakeTenant:
    """The stand-in for the public schema (``connection.tenant`` when nothing is set)."""
    global _public
    public = _public
    if public is None or public.schema_name != tenant_settings().public_schema_name:
        public = _public = FakeTenant(tenant_settings().public_schema_name)
    return public


def current() -> tuple[Any, bool]:
    """The current (tenant, include_public) pair."""
    value = _current.get()
    if value is None:
        return public_tenant(), True
    return value


def set_current(tenant: Any, include_public: bool = True) -> contextvars.Token[Any]:
    """Make ``tenant`` current in this thread/task; the token restores the previous one.

    The schema name is validated here, before any statement can use it.
    """
    path_for(tenant.schema_name, include_public)
    return _current.set((tenant, include_public))


def reset_current(token: contextvars.Token[Any]) -> None:
    """Restore the tenant that was current before :func:`set_current` returned ``token``."""
    _current.reset(token)


def path_for(schema: str, include_public: bool = True) -> bytes:
    """The ``search_path`` of ``schema`` with django-tenants' order, ``pg_temp`` last.

    Public schema: ``public, extras``; a tenant: ``tenant, public, extras`` (``public``
    left out with ``include_public=False``). Cached; invalid names raise ``ValidationError``.
    """
    key = (schema, include_public)
    path = _paths.get(key)
    if path is not None:
        return path
    conf = tenant_settings()
    public = conf.public_schema_name
    check_schema_name(schema)
    for extra in conf.extra_search_paths:
        check_schema_name(extra)
    if schema == public:
        schemas: tuple[str, ...] = (public, *conf.extra_search_paths)
    elif include_public:
        schemas = (schema, public, *conf.extra_search_paths)
    else:
        schemas = (schema, *conf.extra_search_paths)
    if len(_paths) > 100_000:
        _paths.clear()
    path = _paths[key] = path_bytes(schemas)
    return path


def forget_paths() -> None:
    """Drop cached paths (settings changed)."""
    global _public
    _paths.clear()
    _public = None
