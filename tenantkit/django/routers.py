"""``TenantSyncRouter``: which apps migrate in the public schema and which in tenant schemas."""

from __future__ import annotations

from typing import Any

from django.apps import apps as django_apps

from . import _state
from .conf import tenant_settings

__all__ = ["TenantSyncRouter"]


class TenantSyncRouter:
    """Migrate ``SHARED_APPS`` in the public schema and ``TENANT_APPS`` in tenant schemas.

    With ``HAS_MULTI_TYPE_TENANTS``, a tenant schema gets the apps of its tenant's type
    (``TENANT_TYPES[type]["APPS"]``). Other databases than ``TENANT_DB_ALIAS`` get nothing.
    """

    def app_in_list(self, app_label: str, apps_list: Any) -> bool:
        """Whether the app (by name or AppConfig path) is in ``apps_list``."""
        if app_label == "django_cache":  # the database cache backend's table
            return True
        config = django_apps.get_app_config(app_label)
        full_name = f"{config.__module__}.{type(config).__name__}"
        return config.name in apps_list or full_name in apps_list

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        """False for apps that do not belong in the current schema; None lets others decide."""
        conf = tenant_settings()
        if db != conf.db_alias:
            return False
        tenant = _state.current()[0]
        public = conf.public_schema_name
        if conf.has_multi_type_tenants:
            if tenant.schema_name == public:
                installed = conf.tenant_types[public]["APPS"]
            else:
                installed = conf.tenant_types[tenant.get_tenant_type()]["APPS"]
        elif tenant.schema_name == public:
            installed = conf.shared_apps
        else:
            installed = conf.tenant_apps
        if not self.app_in_list(app_label, installed):
            return False
        return None
