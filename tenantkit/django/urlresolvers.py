"""URL helpers of django-tenants: ``reverse`` without the public URLconf prefix, and the
URLconf of a tenant reached by subfolder (``TENANT_SUBFOLDER_PREFIX``)."""

from __future__ import annotations

import threading
from importlib import import_module
from types import ModuleType
from typing import Any

from django.conf import settings
from django.urls import include, path
from django.urls import reverse as reverse_default
from django.utils.functional import lazy

from .utils import clean_tenant_url, get_subfolder_prefix, get_tenant_types, has_multi_type_tenants

__all__ = ["get_subfolder_urlconf", "reverse", "reverse_lazy"]


def reverse(
    viewname: Any,
    urlconf: Any = None,
    args: Any = None,
    kwargs: Any = None,
    current_app: Any = None,
) -> str:
    """Django's ``reverse`` with the public URLconf prefix removed."""
    return clean_tenant_url(
        reverse_default(viewname, urlconf, args, kwargs, current_app=current_app)
    )


reverse_lazy = lazy(reverse, str)

_lock = threading.Lock()
_urlconfs: dict[tuple[str, str], ModuleType] = {}


def get_subfolder_urlconf(tenant: Any) -> ModuleType:
    """A URLconf with every pattern of the root (or tenant type's) URLconf under the tenant's
    subfolder (``<prefix>/<subfolder>/``).

    One module per (URLconf, subfolder), kept: Django caches a resolver per URLconf object,
    so a new module per request (as django-tenants builds, then clears every cache) would
    cost a resolver build per request.
    """
    if has_multi_type_tenants():
        urlconf = get_tenant_types()[tenant.get_tenant_type()]["URLCONF"]
    else:
        urlconf = settings.ROOT_URLCONF
    prefix = get_subfolder_prefix()
    folder = f"{prefix}/{tenant.domain_subfolder}/" if prefix else f"{tenant.domain_subfolder}/"
    key = (urlconf, folder)
    module = _urlconfs.get(key)
    if module is not None:
        return module
    with _lock:
        module = _urlconfs.get(key)
        if module is None:
            root = import_module(urlconf)

            class TenantUrlConf(ModuleType):
                urlpatterns = [path(folder, include(root.urlpatterns))]

                def __getattr__(self, attr: str) -> Any:
                    # handler404 & co come from the root URLconf.
                    return getattr(root, attr)

            module = TenantUrlConf(f"{urlconf}_tenant_{tenant.domain_subfolder}")
            if len(_urlconfs) > 10_000:
                _urlconfs.clear()
            _urlconfs[key] = module
    return module
