"""django-tenants' settings, read in one place.

Every setting keeps django-tenants' name, default and meaning, so a project's settings module
works unchanged. They are read once and cached; Django's ``setting_changed`` signal (sent by
``override_settings``) clears the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS

__all__ = ["TenantSettings", "tenant_settings"]


@dataclass(frozen=True)
class TenantSettings:
    """The tenancy settings of the running Django project (django-tenants' names)."""

    #: ``TENANT_MODEL``: ``"app_label.ModelName"`` of the tenant model.
    tenant_model: str
    #: ``TENANT_DOMAIN_MODEL``: ``"app_label.ModelName"`` of the domain model.
    domain_model: str
    #: ``SHARED_APPS`` / ``TENANT_APPS``: apps migrated in the public / tenant schemas.
    shared_apps: tuple[str, ...]
    tenant_apps: tuple[str, ...]
    #: ``HAS_MULTI_TYPE_TENANTS`` with ``TENANT_TYPES`` and ``MULTI_TYPE_DATABASE_FIELD``.
    has_multi_type_tenants: bool
    tenant_types: Mapping[str, Any]
    multi_type_field: str
    #: ``PUBLIC_SCHEMA_NAME`` (default ``"public"``).
    public_schema_name: str
    #: ``PUBLIC_SCHEMA_URLCONF``: the URLconf of requests to the public tenant, or None.
    public_schema_urlconf: str | None
    #: ``PG_EXTRA_SEARCH_PATHS``: schemas after the tenant's and the public one on every path.
    extra_search_paths: tuple[str, ...]
    #: ``TENANT_BASE_SCHEMA`` and ``TENANT_CREATION_FAKES_MIGRATIONS``.
    base_schema: str | None
    creation_fakes_migrations: bool
    #: ``TENANT_SUBFOLDER_PREFIX`` (subfolder routing), without slashes; "" when unset.
    subfolder_prefix: str
    #: ``SHOW_PUBLIC_IF_NO_TENANT_FOUND`` / ``DEFAULT_NOT_FOUND_TENANT_VIEW``.
    show_public_if_no_tenant_found: bool
    default_not_found_tenant_view: str | None
    #: ``TENANT_MULTIPROCESSING_MAX_PROCESSES`` / ``TENANT_MULTIPROCESSING_CHUNKS``.
    multiprocessing_max_processes: int
    multiprocessing_chunks: int
    #: ``TENANT_LIMIT_SET_CALLS``: accepted for compatibility; tenantkit never sends a
    #: redundant ``SET`` whatever its value.
    limit_set_calls: bool
    #: ``TENANT_DB_ALIAS``: the database alias holding the tenants (default ``"default"``).
    db_alias: str
    #: ``TENANT_MIGRATION_ORDER`` (ordering of ``migrate_schemas``), as given.
    migration_order: Any = field(default=None)
    #: ``EXTRA_SET_TENANT_METHOD_PATH``: a function called as ``f(connection, tenant)`` by
    #: ``connection.set_tenant()``.
    extra_set_tenant_method: str | None = None


_cached: TenantSettings | None = None


def _read() -> TenantSettings:
    get = getattr
    multi = bool(get(settings, "HAS_MULTI_TYPE_TENANTS", False))
    types: Mapping[str, Any] = get(settings, "TENANT_TYPES", {}) or {}
    public = get(settings, "PUBLIC_SCHEMA_NAME", "public") or "public"
    if multi:
        if public not in types:
            raise ImproperlyConfigured(
                f"HAS_MULTI_TYPE_TENANTS is set: TENANT_TYPES needs an entry for the public "
                f"schema {public!r} (its APPS are the shared apps)"
            )
        shared = tuple(types[public].get("APPS", ()))
        tenant_apps: list[str] = []
        for name, spec in types.items():
            if name != public:
                tenant_apps.extend(a for a in spec.get("APPS", ()) if a not in tenant_apps)
        tenant = tuple(tenant_apps)
    else:
        shared = tuple(get(settings, "SHARED_APPS", ()))
        tenant = tuple(get(settings, "TENANT_APPS", ()))
    prefix = (get(settings, "TENANT_SUBFOLDER_PREFIX", "") or "").strip("/")
    return TenantSettings(
        tenant_model=get(settings, "TENANT_MODEL", ""),
        domain_model=get(settings, "TENANT_DOMAIN_MODEL", ""),
        shared_apps=shared,
        tenant_apps=tenant,
        has_multi_type_tenants=multi,
        tenant_types=types,
        multi_type_field=get(settings, "MULTI_TYPE_DATABASE_FIELD", "") or "",
        public_schema_name=public,
        public_schema_urlconf=get(settings, "PUBLIC_SCHEMA_URLCONF", None),
        extra_search_paths=tuple(get(settings, "PG_EXTRA_SEARCH_PATHS", ()) or ()),
        base_schema=get(settings, "TENANT_BASE_SCHEMA", None) or None,
        creation_fakes_migrations=bool(get(settings, "TENANT_CREATION_FAKES_MIGRATIONS", False)),
        subfolder_prefix=prefix,
        show_public_if_no_tenant_found=bool(get(settings, "SHOW_PUBLIC_IF_NO_TENANT_FOUND", False)),
        default_not_found_tenant_view=get(settings, "DEFAULT_NOT_FOUND_TENANT_VIEW", None),
        multiprocessing_max_processes=int(get(settings, "TENANT_MULTIPROCESSING_MAX_PROCESSES", 2)),
        multiprocessing_chunks=int(get(settings, "TENANT_MULTIPROCESSING_CHUNKS", 2)),
        limit_set_calls=bool(get(settings, "TENANT_LIMIT_SET_CALLS", False)),
        db_alias=get(settings, "TENANT_DB_ALIAS", DEFAULT_DB_ALIAS) or DEFAULT_DB_ALIAS,
        migration_order=get(settings, "TENANT_MIGRATION_ORDER", None),
        extra_set_tenant_method=get(settings, "EXTRA_SET_TENANT_METHOD_PATH", None),
    )


def tenant_settings() -> TenantSettings:
    """The project's tenancy settings (read once; ``override_settings`` re-reads them)."""
    global _cached
    current = _cached
    if current is None:
        current = _cached = _read()
    return current


def _forget(**kwargs: Any) -> None:
    global _cached
    _cached = None
    from . import _state, utils

    _state.forget_paths()
    utils._models.clear()


setting_changed.connect(_forget, dispatch_uid="tenantkit.django._forget")
