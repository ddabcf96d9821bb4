"""Settings of the test project, completed with a database by :func:`configure`."""

from __future__ import annotations

from typing import Any

SHARED_APPS = [
    "tenantkit.django",
    "project.customers",
    "project.shared_app",
    "django.contrib.contenttypes",
    "django.contrib.auth",
]
TENANT_APPS = ["project.tenant_app"]


def settings_for(database: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The settings of the project on ``database`` (a ``DATABASES`` entry)."""
    values: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": "tenantkit-tests",
        "ALLOWED_HOSTS": ["*"],
        "USE_TZ": True,
        "DATABASES": {"default": database},
        "DATABASE_ROUTERS": ["tenantkit.django.routers.TenantSyncRouter"],
        "SHARED_APPS": SHARED_APPS,
        "TENANT_APPS": TENANT_APPS,
        "INSTALLED_APPS": SHARED_APPS + [a for a in TENANT_APPS if a not in SHARED_APPS],
        "TENANT_MODEL": "customers.Client",
        "TENANT_DOMAIN_MODEL": "customers.Domain",
        "MIDDLEWARE": ["tenantkit.django.middleware.main.TenantMainMiddleware"],
        "ROOT_URLCONF": "project.urls_tenant",
        "PUBLIC_SCHEMA_URLCONF": "project.urls_public",
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
    }
    values.update(overrides)
    return values
