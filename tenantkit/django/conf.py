"""django-tenants' settings, read in one place.

Every setting keeps django-tenants' name, default and meaning, so a project's settings module
works unchanged. They are read once and cached; the cache is dropped when Django's
``setting_changed`` signal says so (``override_settings``) and when one of the settings was
assigned or deleted directly (``settings.TENANT_APPS = ...``, as django-tenants' own test cases
do): each call compares the setting objects by identity, a tuple of about twenty attribute
reads.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS

__all__ = ["TenantSettings", "database_conninfo", "tenant_settings"]


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


#: The settings :func:`_read` depends on: a change to any of them re-reads all.
_NAMES = (
    "TENANT_MODEL",
    "TENANT_DOMAIN_MODEL",
    "SHARED_APPS",
    "TENANT_APPS",
    "HAS_MULTI_TYPE_TENANTS",
    "TENANT_TYPES",
    "MULTI_TYPE_DATABASE_FIELD",
    "PUBLIC_SCHEMA_NAME",
    "PUBLIC_SCHEMA_URLCONF",
    "PG_EXTRA_SEARCH_PATHS",
    "TENANT_BASE_SCHEMA",
    "TENANT_CREATION_FAKES_MIGRATIONS",
    "TENANT_SUBFOLDER_PREFIX",
    "SHOW_PUBLIC_IF_NO_TENANT_FOUND",
    "DEFAULT_NOT_FOUND_TENANT_VIEW",
    "TENANT_MULTIPROCESSING_MAX_PROCESSES",
    "TENANT_MULTIPROCESSING_CHUNKS",
    "TENANT_LIMIT_SET_CALLS",
    "TENANT_DB_ALIAS",
    "TENANT_MIGRATION_ORDER",
    "EXTRA_SET_TENANT_METHOD_PATH",
)
_MISSING = object()
#: The ``LazySettings`` object's own attributes (the same dict for the process's life; read
#: past ``LazyObject.__getattribute__``, a Python-level call on every attribute).
_LAZY: dict[str, Any] = object.__getattribute__(settings, "__dict__")
_cached: TenantSettings | None = None
_seen: tuple[Any, ...] = ()


def _fingerprint() -> tuple[Any, ...]:
    # override_settings() swaps the settings object (and sends setting_changed); a direct
    # ``settings.X = ...`` lands in that object's __dict__. Both show here at the cost of
    # dictionary lookups (going through LazySettings for each name cost ~10 us per call, on
    # every request). The objects themselves: tuple equality compares by identity first, so
    # an unchanged configuration costs no deep comparison.
    wrapped = _LAZY.get("_wrapped")
    own = getattr(wrapped, "__dict__", None)
    if own is None:  # not configured yet, or an unusual settings object: read them all
        return tuple(getattr(settings, name, _MISSING) for name in _NAMES)
    return (id(wrapped), *map(own.get, _NAMES))


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
    prefix = (get(settings, "TENANT_SUBFOLDER_PREFIX", "") or "").strip().strip("/")
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
    global _cached, _seen
    current = _cached
    seen = _fingerprint()
    if current is None or seen != _seen:
        if current is not None:
            _forget()
        current = _cached = _read()
        _seen = seen
    return current


#: Settings that change which migrations apply where: the collected migrations go with them.
_MIGRATION_SETTINGS = frozenset(
    {"INSTALLED_APPS", "MIGRATION_MODULES", "DATABASES", "DATABASE_ROUTERS", *_NAMES}
)


def _forget(setting: str | None = None, **kwargs: Any) -> None:
    global _cached
    _cached = None
    from . import _state, utils

    _state.forget_paths()
    utils._models.clear()
    if setting is None or setting in _MIGRATION_SETTINGS:
        # Django's TransactionTestCase sends INSTALLED_APPS here when it narrows the app
        # registry to available_apps: a migration loader built for the other registry names
        # apps that are gone ("No installed app with label ..."). Only if already loaded:
        # importing the engine needs the app registry ready.
        engine = sys.modules.get(f"{__package__}._engine")
        clear = getattr(engine, "clear_cache", None)
        if clear is not None:
            clear()


setting_changed.connect(_forget, dispatch_uid="tenantkit.django._forget")


#: Keys of Django's connection parameters that libpq does not take.
_NOT_LIBPQ = frozenset(
    {
        "autocommit",
        "context",
        "cursor_factory",
        "prepare_threshold",
        "pool",
        "pgbouncer",
        "server_side_binding",
        "isolation_level",
        "assume_role",
    }
)


def database_conninfo(database: str, *, override: str) -> str:
    """A libpq conninfo for Django's ``database`` alias (its connection parameters, less the
    ones libpq does not take); the setting named ``override`` wins when it is set."""
    from django.db import connections
    from psycopg.conninfo import make_conninfo

    explicit = getattr(settings, override, None)
    if explicit:
        return str(explicit)
    params = connections[database].get_connection_params()
    kept = {
        k: v
        for k, v in params.items()
        if k not in _NOT_LIBPQ and isinstance(v, (str, int)) and not isinstance(v, bool)
    }
    return make_conninfo("", **kept)
