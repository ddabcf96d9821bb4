"""Which multi-tenancy package a Django project uses, and the few calls the plugin needs of it.

Two packages share one API (settings ``TENANT_MODEL`` / ``TENANT_DOMAIN_MODEL``, a
``postgresql_backend`` engine, ``utils.get_tenant_model()`` ..., ``connection.set_tenant()``,
the ``migrate_schemas`` command): an unchanged django-tenants, and ``tenantkit.django``. The
backend is read from the settings (the database ``ENGINE``, else ``INSTALLED_APPS``), so the
fixtures never guess: a project using neither gets an error saying what is missing.

Everything here imports Django lazily; this module is only loaded by :mod:`._django`.
"""

from __future__ import annotations

# Django ships no type information; its imports are typed Any here.
import hashlib
import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DjangoBackend", "detect_backend", "migrations_digest"]

#: package -> the distribution whose version keys the template (``None``: tenantkit's own).
_PACKAGES = {"tenantkit.django": "pytest-pgtenants", "django_tenants": "django-tenants"}


@dataclass(frozen=True)
class DjangoBackend:
    """The multi-tenancy package of the project under test (``package``: its import name)."""

    package: str
    alias: str

    def _utils(self) -> Any:
        return importlib.import_module(f"{self.package}.utils")

    def tenant_model(self) -> Any:
        """The ``TENANT_MODEL`` class."""
        return self._utils().get_tenant_model()

    def domain_model(self) -> Any:
        """The ``TENANT_DOMAIN_MODEL`` class."""
        return self._utils().get_tenant_domain_model()

    def public_schema(self) -> str:
        """The shared schema (``PUBLIC_SCHEMA_NAME``, ``public`` by default)."""
        return str(self._utils().get_public_schema_name())

    def connection(self) -> Any:
        """Django's connection for the tenant database alias."""
        from django.db import connections

        return connections[self.alias]

    def activate(self, tenant: Any) -> None:
        """Make ``tenant`` (a model instance) current on Django's connection."""
        self.connection().set_tenant(tenant)

    def activate_schema(self, schema: str) -> None:
        """Make the schema ``schema`` current on Django's connection (no model instance)."""
        self.connection().set_schema(schema)

    def activate_public(self) -> None:
        """Make the shared schema current on Django's connection."""
        self.connection().set_schema_to_public()

    def current(self) -> Any:
        """The tenant (or stand-in) currently set on Django's connection, or ``None``."""
        return getattr(self.connection(), "tenant", None)

    def migrate_schema(self, schema: str) -> None:
        """Migrate the (existing, empty) schema ``schema`` with the project's tenant apps.

        Through the package's own ``migrate_schemas`` command, exactly as it migrates a new
        tenant, so the template holds what a tenant created by the project would hold.
        """
        from django.core.management import call_command

        call_command(
            "migrate_schemas",
            tenant=True,
            schema_name=schema,
            interactive=False,
            verbosity=0,
            database=self.alias,
        )
        self.activate_public()

    def routes_changed(self) -> None:
        """Tenants or domains changed in a way the backend's routing may not hear of.

        tenantkit.django answers requests from an in-process host table, invalidated by
        NOTIFY, which PostgreSQL only delivers on commit: tenants made or rolled back inside
        a test's transaction would route from a stale table. django-tenants queries the
        domain table per request and needs nothing.
        """
        source = self._tenantkit_routing()
        if source is not None:
            source.get_resolver().invalidate()  # no I/O: the next request reloads

    def close(self) -> None:
        """Stop what the backend runs in the background for routing (the LISTEN thread of
        tenantkit.django's resolver holds a session on the test database, which would keep
        pytest-django from dropping it)."""
        source = self._tenantkit_routing()
        if source is not None:
            source.reset_resolver()

    def _tenantkit_routing(self) -> Any:
        if self.package != "tenantkit.django":
            return None
        # get_resolver() / reset_resolver(), which its middleware and tests use too.
        return importlib.import_module("tenantkit.django.routing")

    def version(self) -> str:
        """The installed version of the package (part of the template's cache key)."""
        try:
            return importlib.metadata.version(_PACKAGES[self.package])
        except importlib.metadata.PackageNotFoundError:
            return "unknown"


def detect_backend() -> DjangoBackend:
    """The backend the configured Django project uses; ``RuntimeError`` saying why when none.

    ``tenantkit.django`` wins when its engine or app is configured, then django-tenants.
    """
    from django.conf import settings

    alias = "default"
    utils_alias = getattr(settings, "TENANT_DB_ALIAS", None)
    if isinstance(utils_alias, str) and utils_alias:
        alias = utils_alias
    databases: dict[str, dict[str, Any]] = settings.DATABASES
    engine = str(databases.get(alias, {}).get("ENGINE", ""))
    apps = [str(app) for app in settings.INSTALLED_APPS]
    for package in ("tenantkit.django", "django_tenants"):
        if engine.startswith(package + ".") or package in apps:
            if importlib.util.find_spec(package) is None:
                raise RuntimeError(
                    f"the Django settings use {package!r} (ENGINE {engine!r}) but it is not "
                    "importable; install it in the environment that runs the tests"
                )
            if not getattr(settings, "TENANT_MODEL", None):
                raise RuntimeError(
                    "pytest_pgtenants' Django fixtures need settings.TENANT_MODEL "
                    '(such as "customers.Client") and settings.TENANT_DOMAIN_MODEL'
                )
            if getattr(settings, "HAS_MULTI_TYPE_TENANTS", False):
                # One template cannot stand for tenants of several types (different apps).
                raise RuntimeError(
                    "pytest_pgtenants' Django fixtures do not support multi-type tenants "
                    "(HAS_MULTI_TYPE_TENANTS) yet; use django-tenants' TenantTestCase there"
                )
            return DjangoBackend(package=package, alias=alias)
    raise RuntimeError(
        f"pytest_pgtenants' Django fixtures need a multi-tenant project: database {alias!r} "
        f"has ENGINE {engine!r} and neither 'django_tenants' nor 'tenantkit.django' is in "
        "INSTALLED_APPS (use ENGINE 'django_tenants.postgresql_backend' or "
        "'tenantkit.django.postgresql_backend')"
    )


def _migration_dirs() -> list[tuple[str, Path]]:
    """``(app label, directory)`` of every installed app's migrations package."""
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    found: list[tuple[str, Path]] = []
    for config in apps.get_app_configs():
        module_name, _ = MigrationLoader.migrations_module(config.label)
        if module_name is None:
            continue
        try:
            spec = importlib.util.find_spec(module_name)
        except ImportError:
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            found.append((config.label, Path(location)))
    return found


def migrations_digest(backend: DjangoBackend, extra: str = "") -> str:
    """A hash of what shapes a freshly migrated tenant schema: the migration files of every
    installed app (names and bytes), ``TENANT_APPS``, Django's and the backend's versions, the
    plugin's Django code, and ``extra``. The template is rebuilt whenever it changes."""
    import django
    from django.conf import settings

    digest = hashlib.sha256()
    parts = [
        django.get_version(),
        backend.package,
        backend.version(),
        repr(list(getattr(settings, "TENANT_APPS", []))),
        backend.public_schema(),
        extra,
    ]
    for part in parts:
        digest.update(part.encode() + b"\0")
    for own in sorted(Path(__file__).parent.glob("_django*.py")):
        digest.update(own.name.encode() + b"\0" + own.read_bytes())
    for label, folder in sorted(_migration_dirs()):
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder).as_posix()
            digest.update(f"{label}/{relative}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
