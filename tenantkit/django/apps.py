"""The ``tenantkit.django`` app: put it in ``SHARED_APPS`` and ``INSTALLED_APPS``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.db.models.signals import post_delete, post_migrate, post_save

__all__ = ["TenantkitDjangoConfig"]


def _install_triggers(sender: Any, using: str, **kwargs: Any) -> None:
    # After a migrate of the public schema the tenant and domain tables exist: make them
    # NOTIFY the routing listeners on change (idempotent).
    from . import _state
    from ._source import install_triggers
    from .utils import get_public_schema_name, get_tenant_database_alias

    if using != get_tenant_database_alias():
        return
    if _state.current()[0].schema_name != get_public_schema_name():
        return
    try:
        install_triggers(using)
    except (LookupError, ImproperlyConfigured):  # models not configured: nothing to watch
        return


class TenantkitDjangoConfig(AppConfig):
    """Connects the signal handlers and checks the settings at start-up."""

    name = "tenantkit.django"
    label = "tenantkit_django"
    verbose_name = "tenantkit"

    def ready(self) -> None:
        """Check the settings; install the NOTIFY triggers after each public migrate."""
        from django.conf import settings

        from . import signals  # noqa: F401  (connects the post_delete handler)

        for name in ("TENANT_MODEL", "TENANT_DOMAIN_MODEL"):
            if not getattr(settings, name, None):
                raise ImproperlyConfigured(
                    f"tenantkit.django needs {name} = 'app_label.ModelName' in settings"
                )
        routers = getattr(settings, "DATABASE_ROUTERS", [])
        if "tenantkit.django.routers.TenantSyncRouter" not in routers:
            raise ImproperlyConfigured(
                "add 'tenantkit.django.routers.TenantSyncRouter' to DATABASE_ROUTERS: without "
                "it every app would be migrated into every schema"
            )
        post_migrate.connect(_install_triggers, sender=self, dispatch_uid="tenantkit_django")
        from ._source import registry_changed

        post_save.connect(registry_changed, dispatch_uid="tenantkit_django_saved")
        post_delete.connect(registry_changed, dispatch_uid="tenantkit_django_deleted")
