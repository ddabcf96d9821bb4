"""Settings of the `dt` test project: django-tenants 4.0.1, unchanged.

``DT_BACKEND=tenantkit`` runs the same project on ``tenantkit.django`` instead (its names in
place of ``django_tenants``'), as a project that switched would.
"""

import os

from psycopg.conninfo import conninfo_to_dict

_server = conninfo_to_dict(os.environ.get("DT_DSN", "host=127.0.0.1 user=postgres"))

#: "django_tenants" or "tenantkit.django".
TENANCY_PACKAGE = (
    "tenantkit.django" if os.environ.get("DT_BACKEND") == "tenantkit" else "django_tenants"
)

SECRET_KEY = "not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["localhost"]
ROOT_URLCONF = "dtproject.urls"
PUBLIC_SCHEMA_URLCONF = "dtproject.urls_public"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": f"{TENANCY_PACKAGE}.postgresql_backend",
        "NAME": os.environ.get("DT_DB_NAME", "dt"),
        "USER": _server.get("user", ""),
        "PASSWORD": _server.get("password", ""),
        "HOST": _server.get("host", ""),
        "PORT": _server.get("port", ""),
    }
}
DATABASE_ROUTERS = (f"{TENANCY_PACKAGE}.routers.TenantSyncRouter",)

SHARED_APPS = [TENANCY_PACKAGE, "customers", "shared", "django.contrib.contenttypes"]
TENANT_APPS = ["django.contrib.contenttypes", "shop"]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"

MIDDLEWARE = [f"{TENANCY_PACKAGE}.middleware.main.TenantMainMiddleware"]
