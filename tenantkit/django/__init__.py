"""tenantkit.django: django-tenants' API on tenantkit's core.

Switch a django-tenants project by replacing ``django_tenants`` with ``tenantkit.django`` in
settings and imports::

    DATABASES = {"default": {"ENGINE": "tenantkit.django.postgresql_backend", ...}}
    DATABASE_ROUTERS = ["tenantkit.django.routers.TenantSyncRouter"]
    SHARED_APPS = ["tenantkit.django", "customers", ...]
    MIDDLEWARE = ["tenantkit.django.middleware.main.TenantMainMiddleware", ...]

Modules mirror django-tenants': ``models`` (``TenantMixin``, ``DomainMixin``), ``utils``,
``signals``, ``routers``, ``middleware``, ``urlresolvers``, ``test.cases``, ``test.client``,
``postgresql_backend``. See docs/django.md.
"""

from __future__ import annotations
