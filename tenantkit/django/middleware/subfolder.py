"""``TenantSubfolderMiddleware``: route ``/<TENANT_SUBFOLDER_PREFIX>/<subfolder>/...``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest
from django.urls import set_urlconf

from ..urlresolvers import get_subfolder_urlconf
from ..utils import get_public_schema_name, get_subfolder_prefix, get_tenant_domain_model
from .main import TenantMainMiddleware

__all__ = ["TenantSubfolderMiddleware"]


class TenantSubfolderMiddleware(TenantMainMiddleware):
    """Select the tenant by the first path segment after the prefix (a domain row's
    ``domain``); other paths are the public tenant's. Unknown subfolders: 404."""

    TENANT_NOT_FOUND_EXCEPTION: type[Exception] = Http404

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if not get_subfolder_prefix():
            raise ImproperlyConfigured(
                '"TenantSubfolderMiddleware" requires "TENANT_SUBFOLDER_PREFIX" present and '
                "non-empty in settings"
            )

    def _route(self, request: HttpRequest) -> Any:
        if hasattr(request, "tenant"):  # another tenant middleware decided already
            return request.tenant
        hostname = self.hostname_from_request(request)
        prefix = f"/{get_subfolder_prefix()}/"
        domain_model = get_tenant_domain_model()
        urlconf = None
        if not request.path.startswith(prefix):
            tenant = self.tenant_by_schema(get_public_schema_name())
            if tenant is None:
                raise self.TENANT_NOT_FOUND_EXCEPTION("Unable to find public tenant")
            self.setup_url_routing(request, force_public=True)
        else:
            subfolder = request.path[len(prefix) :].split("/")[0]
            try:
                tenant = self.get_tenant(domain_model, subfolder)
            except domain_model.DoesNotExist:
                request._tenantkit_hostname = subfolder
                return _not_found()
            tenant.domain_subfolder = subfolder
            urlconf = get_subfolder_urlconf(tenant)
        tenant.domain_url = hostname
        request.tenant = tenant
        if urlconf is not None:
            request.urlconf = urlconf
            set_urlconf(urlconf)
        return tenant

    def no_tenant_found(self, request: HttpRequest, hostname: str) -> Any:
        """An unknown subfolder is a 404."""
        raise self.TENANT_NOT_FOUND_EXCEPTION(f'No tenant for subfolder "{hostname}"')


def _not_found() -> object:
    from .main import _NOT_FOUND

    return _NOT_FOUND
