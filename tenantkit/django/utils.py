"""django-tenants' ``utils``: settings helpers, tenant contexts and schema helpers.

Same names and behaviour, with two differences: :class:`schema_context` and
:class:`tenant_context` restore the previous tenant exactly (a ContextVar token, so nesting,
threads and asyncio tasks cannot mix them up), and the ``database`` argument is accepted but
does not matter (the current tenant applies to every database using the backend).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Sequence
from contextlib import ContextDecorator
from functools import lru_cache, wraps
from types import ModuleType
from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.core import mail
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connections
from django.utils.module_loading import import_string
from psycopg import sql

from . import _state
from ._names import is_valid_schema_name, quote_schema_name
from .conf import tenant_settings

__all__ = [
    "app_labels",
    "clean_tenant_url",
    "django_is_in_test_mode",
    "get_app_label",
    "get_creation_fakes_migrations",
    "get_current_tenant",
    "get_limit_set_calls",
    "get_multi_type_database_field_name",
    "get_public_schema_name",
    "get_public_schema_urlconf",
    "get_subfolder_prefix",
    "get_tenant",
    "get_tenant_base_migrate_command_class",
    "get_tenant_base_schema",
    "get_tenant_database_alias",
    "get_tenant_domain_model",
    "get_tenant_migration_order",
    "get_tenant_model",
    "get_tenant_type_choices",
    "get_tenant_types",
    "get_type_base_schemas",
    "has_multi_type_tenants",
    "parse_tenant_config_path",
    "quote_schema_name",
    "remove_www",
    "remove_www_and_dev",
    "schema_context",
    "schema_exists",
    "schema_rename",
    "tenant_context",
    "tenant_migration",
    "validate_extra_extensions",
]


#: (setting value -> model class), so that each request does not look the models up again.
_models: dict[str, Any] = {}


def _model(setting: str, name: str) -> Any:
    model = _models.get(name)
    if model is None:
        if not name:
            raise ImproperlyConfigured(f"set {setting} = 'app_label.ModelName' in your settings")
        model = _models[name] = django_apps.get_model(name)
    return model


def get_tenant_model() -> Any:
    """The tenant model class (``TENANT_MODEL``)."""
    return _model("TENANT_MODEL", tenant_settings().tenant_model)


def get_tenant_domain_model() -> Any:
    """The domain model class (``TENANT_DOMAIN_MODEL``)."""
    return _model("TENANT_DOMAIN_MODEL", tenant_settings().domain_model)


def get_tenant_database_alias() -> str:
    """``TENANT_DB_ALIAS`` (default ``"default"``)."""
    return tenant_settings().db_alias


def get_public_schema_name() -> str:
    """``PUBLIC_SCHEMA_NAME`` (default ``"public"``)."""
    return tenant_settings().public_schema_name


def get_tenant_types() -> Any:
    """``TENANT_TYPES`` (multi-type tenants), ``{}`` when unset."""
    return tenant_settings().tenant_types


def has_multi_type_tenants() -> bool:
    """``HAS_MULTI_TYPE_TENANTS``."""
    return tenant_settings().has_multi_type_tenants


def get_multi_type_database_field_name() -> str:
    """``MULTI_TYPE_DATABASE_FIELD``: the tenant model's field holding its type."""
    return tenant_settings().multi_type_field


def get_public_schema_urlconf() -> str | None:
    """The public URLconf: ``TENANT_TYPES[public]["URLCONF"]`` or ``PUBLIC_SCHEMA_URLCONF``."""
    conf = tenant_settings()
    if conf.has_multi_type_tenants:
        spec = conf.tenant_types.get(conf.public_schema_name, {})
        urlconf: str | None = spec.get("URLCONF")
        return urlconf
    return conf.public_schema_urlconf


def get_tenant_type_choices() -> list[tuple[str, str]]:
    """Choices for the tenant type field: every non-public entry of ``TENANT_TYPES``."""
    public = get_public_schema_name()
    return [(name, name) for name in get_tenant_types() if name != public]


def get_limit_set_calls() -> bool:
    """``TENANT_LIMIT_SET_CALLS`` (accepted; tenantkit never sends a redundant SET anyway)."""
    return tenant_settings().limit_set_calls


def get_subfolder_prefix() -> str:
    """``TENANT_SUBFOLDER_PREFIX`` without slashes ("" when unset)."""
    return tenant_settings().subfolder_prefix


def get_type_base_schemas() -> dict[str, str]:
    """``TENANT_TYPES[type]["BASE_SCHEMA"]`` of the types that name one (multi-type tenants)."""
    conf = tenant_settings()
    if not conf.has_multi_type_tenants:
        return {}
    return {
        name: spec["BASE_SCHEMA"]
        for name, spec in conf.tenant_types.items()
        if isinstance(spec, dict) and spec.get("BASE_SCHEMA")
    }


def get_creation_fakes_migrations() -> bool:
    """``TENANT_CREATION_FAKES_MIGRATIONS``: new tenants are cloned from a template schema.

    It needs ``TENANT_BASE_SCHEMA``, or a ``BASE_SCHEMA`` per tenant type in ``TENANT_TYPES``.
    """
    conf = tenant_settings()
    if conf.creation_fakes_migrations and not conf.base_schema and not get_type_base_schemas():
        raise ImproperlyConfigured(
            "TENANT_CREATION_FAKES_MIGRATIONS needs TENANT_BASE_SCHEMA (or "
            "TENANT_TYPES[type]['BASE_SCHEMA'] per tenant type), the schema new tenants are "
            "cloned from"
        )
    return conf.creation_fakes_migrations


def get_tenant_base_schema(tenant_type: str | None = None) -> str | None:
    """The schema new tenants (of ``tenant_type``) are cloned from, or None.

    ``TENANT_TYPES[tenant_type]["BASE_SCHEMA"]`` when the type names one, else
    ``TENANT_BASE_SCHEMA``. A template without ``TENANT_CREATION_FAKES_MIGRATIONS`` is a
    configuration error (django-tenants' rule): the clone would get no migration history.
    """
    conf = tenant_settings()
    base: str | None = conf.base_schema
    if tenant_type is not None:
        base = get_type_base_schemas().get(tenant_type, base)
    if base and not conf.creation_fakes_migrations:
        raise ImproperlyConfigured(
            "TENANT_BASE_SCHEMA (or a tenant type's BASE_SCHEMA) needs "
            "TENANT_CREATION_FAKES_MIGRATIONS = True: new tenants are cloned from it"
        )
    return base or None


class _Context(ContextDecorator):
    """Make a tenant current for a block; restores the previous one exactly."""

    def __init__(self, tenant: Any, database: str | None = None) -> None:
        self._tenant = tenant
        self.database = database or get_tenant_database_alias()
        self._tokens: list[contextvars.Token[Any]] = []

    def _make(self) -> Any:
        return self._tenant

    def _recreate_cm(self) -> _Context:
        # As a decorator, each call gets its own state (recursion, threads).
        return type(self)(self._tenant, database=self.database)

    def __enter__(self) -> Any:
        tenant = self._make()
        previous = _state.current()[0]
        self._tokens.append(_state.set_current(tenant))
        if previous.schema_name != tenant.schema_name:
            from .postgresql_backend.base import _clear_content_types

            _clear_content_types()
        return tenant

    def __exit__(self, *exc: object) -> None:
        leaving = _state.current()[0]
        _state.reset_current(self._tokens.pop())
        if leaving.schema_name != _state.current()[0].schema_name:
            from .postgresql_backend.base import _clear_content_types

            _clear_content_types()


class schema_context(_Context):
    """``with schema_context("acme"):`` run the block in a schema (a ``FakeTenant``)."""

    def __init__(self, schema_name: str, database: str | None = None) -> None:
        super().__init__(schema_name, database)

    def _make(self) -> Any:
        return _state.FakeTenant(self._tenant)


class tenant_context(_Context):
    """``with tenant_context(tenant):`` run the block as ``tenant`` (a tenant model instance)."""


def clean_tenant_url(url_string: str) -> str:
    """Remove ``PUBLIC_SCHEMA_URLCONF``'s prefix from a URL (django-tenants' helper)."""
    urlconf = getattr(settings, "PUBLIC_SCHEMA_URLCONF", None)
    if urlconf and url_string.startswith(urlconf):
        url_string = url_string[len(urlconf) :]
    return url_string


def remove_www_and_dev(hostname: str) -> str:
    """Strip a leading ``www.`` or ``dev.``."""
    for prefix in ("www.", "dev."):
        if hostname.startswith(prefix):
            return hostname[len(prefix) :]
    return hostname


def remove_www(hostname: str) -> str:
    """Strip a leading ``www.``."""
    return hostname[4:] if hostname.startswith("www.") else hostname


def django_is_in_test_mode() -> bool:
    """Whether Django's test environment is set up (as django-tenants tells it)."""
    return hasattr(mail, "outbox")


def _execute(database: str, query: sql.Composable, params: Sequence[Any] = ()) -> list[Any]:
    connection = connections[database]
    connection.ensure_connection()
    text = query.as_string(connection.connection)
    with connection.cursor() as cursor:
        cursor.execute(text, list(params) or None)
        if cursor.description is None:
            return []
        return list(cursor.fetchall())


def schema_exists(
    schema_name: str, database: str | None = None, case_sensitive: bool = True
) -> bool:
    """Whether the schema exists (``case_sensitive=False``: any spelling of it does)."""
    if case_sensitive:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s)")
    else:
        query = sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE lower(nspname) = lower(%s))"
        )
    rows = _execute(database or get_tenant_database_alias(), query, [schema_name])
    return bool(rows and rows[0][0])


def schema_rename(
    tenant: Any, new_schema_name: str, database: str | None = None, save: bool = True
) -> None:
    """Rename ``tenant``'s schema to ``new_schema_name`` (then save the tenant)."""
    database = database or get_tenant_database_alias()
    if not is_valid_schema_name(new_schema_name):
        raise ValidationError("Invalid string used for the schema name.")
    if schema_exists(new_schema_name, database=database, case_sensitive=False):
        raise ValidationError("New schema name already exists")
    _execute(
        database,
        sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
            sql.Identifier(tenant.schema_name), sql.Identifier(new_schema_name)
        ),
    )
    tenant.schema_name = new_schema_name
    if save:
        tenant.save()


@lru_cache(maxsize=128)
def get_app_label(app: str) -> str:
    """The label of an app given by module path or AppConfig path."""
    candidate = app.split(".")[-1]
    try:
        imported = import_string(app)
    except ImportError:
        return candidate
    name = app if isinstance(imported, ModuleType) else imported.name
    labels = [c.label for c in django_apps.get_app_configs() if c.name == name]
    return labels[0] if len(labels) == 1 else candidate


def app_labels(apps_list: Sequence[str]) -> list[str]:
    """Labels of the given apps."""
    return [get_app_label(app) for app in apps_list]


def parse_tenant_config_path(config_path: str) -> str:
    """``config_path`` with the current schema in place of ``%s`` (or appended as a folder)."""
    schema = _state.current()[0].schema_name
    if "%s" in config_path:
        return config_path.replace("%s", schema)
    return os.path.join(config_path, schema)


def tenant_migration(*args: Any, tenant_schema: bool = True, public_schema: bool = False) -> Any:
    """Decorate a ``RunPython`` function to run it only in tenant and/or public schemas."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(func)
        def wrapper(*fargs: Any, **kwargs: Any) -> Any:
            try:
                _, schema_editor = fargs
            except ValueError as exc:
                raise TypeError(
                    "tenant_migration functions take (apps, schema_editor) positionally"
                ) from exc
            public = schema_editor.connection.schema_name == get_public_schema_name()
            if (tenant_schema and not public) or (public_schema and public):
                return func(*fargs, **kwargs)
            return None

        return wrapper

    if len(args) == 1 and callable(args[0]):
        return decorate(args[0])
    return decorate


def get_tenant(request: Any) -> Any:
    """The tenant the request was routed to, or None."""
    return getattr(request, "tenant", None)


def get_tenant_migration_order() -> Any:
    """``TENANT_MIGRATION_ORDER``: ``order_by()`` fields of the tenants in ``migrate_schemas``."""
    return tenant_settings().migration_order


def get_tenant_base_migrate_command_class() -> Any:
    """``TENANT_BASE_MIGRATE_COMMAND`` (a dotted path), else Django's ``migrate`` command."""
    path = getattr(settings, "TENANT_BASE_MIGRATE_COMMAND", None)
    if path:
        return import_string(path)
    from django.core.management.commands.migrate import Command

    return Command


def validate_extra_extensions() -> None:
    """Check ``PG_EXTRA_SEARCH_PATHS``: not the public schema, not a tenant's schema.

    ``SKIP_PG_EXTRA_VALIDATION = True`` skips the check (django-tenants' setting).
    """
    extras = tenant_settings().extra_search_paths
    if not extras or getattr(settings, "SKIP_PG_EXTRA_VALIDATION", False):
        return
    public = get_public_schema_name()
    if public in extras:
        raise ImproperlyConfigured(f"{public} can not be included on PG_EXTRA_SEARCH_PATHS.")
    model = get_tenant_model()
    rows = _execute(
        get_tenant_database_alias(),
        sql.SQL("SELECT pg_catalog.to_regclass(%s) IS NOT NULL"),
        [quote_schema_name(public) + "." + quote_schema_name(model._meta.db_table)],
    )
    if rows and rows[0][0]:
        clash = set(extras) & set(model._default_manager.values_list("schema_name", flat=True))
        if clash:
            raise ImproperlyConfigured(
                f"Do not include tenant schemas ({sorted(clash)}) on PG_EXTRA_SEARCH_PATHS."
            )


def get_current_tenant(database: str | None = None) -> Any:
    """The current tenant of this thread / task (a ``FakeTenant`` in a bare schema context)."""
    return _state.current()[0]
