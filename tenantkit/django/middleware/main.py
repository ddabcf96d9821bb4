"""``TenantMainMiddleware``: route each request to a tenant by its host.

The host is looked up in tenantkit's in-memory routing table over the project's domain table
(:mod:`tenantkit.django._source`): no query per request once the table is loaded, changes
seen through LISTEN/NOTIFY. The tenant is current (a ContextVar) for the request only: it is
reset when the response is returned, so nothing leaks into the next request of the thread.
Sync and async: under ASGI no thread is used except for the (rare) table load.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import DisallowedHost
from django.http import Http404, HttpRequest, HttpResponseNotFound
from django.urls import set_urlconf
from django.utils.module_loading import import_string

from tenantkit.web.routing import Outcome

from .. import _state
from .._source import get_resolver
from ..conf import tenant_settings
from ..utils import get_public_schema_urlconf, get_tenant_domain_model, remove_www

__all__ = ["TenantMainMiddleware", "table_only"]

_NOT_FOUND = object()
_FOUND = (Outcome.TENANT, Outcome.PUBLIC)


def table_only(method: Any) -> Any:
    """Mark a ``get_tenant`` override that only reads the routing table (no query), so that
    async requests need no worker thread for it."""
    method._tenantkit_table_only = True
    return method


class TenantMainMiddleware:
    """Select the tenant of the request's host; 404 for a host no tenant has.

    Put it first in ``MIDDLEWARE``. ``request.tenant`` is the tenant (a copy of the model
    instance loaded with the routing table); requests to the public tenant use
    ``PUBLIC_SCHEMA_URLCONF``. Unknown hosts: ``DEFAULT_NOT_FOUND_TENANT_VIEW`` when set, the
    public URLconf with ``SHOW_PUBLIC_IF_NO_TENANT_FOUND``, else ``Http404``. Override
    :meth:`get_tenant` (it may query), :meth:`hostname_from_request` or
    :meth:`no_tenant_found` as with django-tenants.
    """

    sync_capable = True
    async_capable = True
    TENANT_NOT_FOUND_EXCEPTION: type[Exception] = Http404

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        # Overridden hooks may query: under ASGI they then run in a worker thread.
        self._pure = getattr(type(self).get_tenant, "_tenantkit_table_only", False)
        # None of the routing hooks overridden: a request to a known host takes the direct
        # path (_direct), the same steps without the hooks' layers.
        cls, base = type(self), TenantMainMiddleware
        self._plain = all(
            getattr(cls, name) is getattr(base, name)
            for name in ("hostname_from_request", "get_tenant", "setup_url_routing", "_route")
        )

    # -- django-tenants' hooks ----------------------------------------------------------

    @staticmethod
    def hostname_from_request(request: HttpRequest) -> str:
        """The request's host without port and ``www.`` (``DisallowedHost`` if not allowed)."""
        return remove_www(request.get_host().split(":")[0])

    @table_only
    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        """The tenant of ``hostname`` from the routing table (raises ``DoesNotExist``)."""
        resolver = get_resolver()
        instance = _instance(resolver, resolver.resolve(hostname))
        if instance is None:
            raise domain_model.DoesNotExist(f"no tenant for hostname {hostname!r}")
        return instance

    @staticmethod
    def tenant_by_schema(schema_name: str) -> Any:
        """A copy of the tenant instance of ``schema_name`` from the routing table, or None."""
        resolver = get_resolver()
        resolver.table()
        return resolver.source.tenant(schema_name)  # type: ignore[attr-defined]

    def no_tenant_found(self, request: HttpRequest, hostname: str) -> Any:
        """What an unknown host gets (django-tenants' rules); None: go on as public."""
        conf = tenant_settings()
        if conf.default_not_found_tenant_view:
            view = import_string(conf.default_not_found_tenant_view)
            response = view.as_view()(request) if hasattr(view, "as_view") else view(request)
            if hasattr(response, "render"):
                response.render()
            return response
        if conf.show_public_if_no_tenant_found:
            self.setup_url_routing(request, force_public=True)
            return None
        raise self.TENANT_NOT_FOUND_EXCEPTION(f'No tenant for hostname "{hostname}"')

    @staticmethod
    def setup_url_routing(request: HttpRequest, force_public: bool = False) -> None:
        """Use the public URLconf (or the tenant type's) for this request."""
        conf = tenant_settings()
        public = conf.public_schema_name
        tenant = getattr(request, "tenant", None)
        is_public = force_public or tenant is None or tenant.schema_name == public
        if conf.has_multi_type_tenants:
            types = conf.tenant_types
            if is_public and "URLCONF" in types.get(public, {}):
                request.urlconf = get_public_schema_urlconf()
            elif tenant is not None and not is_public:
                request.urlconf = types[tenant.get_tenant_type()]["URLCONF"]
            else:
                return
            set_urlconf(request.urlconf)
        elif conf.public_schema_urlconf and is_public:
            request.urlconf = conf.public_schema_urlconf

    # -- the request --------------------------------------------------------------------

    def _route(self, request: HttpRequest) -> Any:
        """The request's tenant, a response (host not allowed), or ``_NOT_FOUND``."""
        try:
            hostname = self.hostname_from_request(request)
        except DisallowedHost:
            return HttpResponseNotFound()
        domain_model = get_tenant_domain_model()
        try:
            tenant = self.get_tenant(domain_model, hostname)
        except domain_model.DoesNotExist:
            request._tenantkit_hostname = hostname
            return _NOT_FOUND
        tenant.domain_url = hostname
        request.tenant = tenant
        self.setup_url_routing(request)
        return tenant

    def _direct(self, request: HttpRequest) -> Any:
        """:meth:`_route`'s steps for a host the fresh routing table knows, in one frame (a
        request runs them all; each layer costs). None: take the general path, which also
        answers every other case (a host not allowed, an unknown host, a table to load)."""
        try:
            hostname = remove_www(request.get_host().split(":")[0])
        except DisallowedHost:
            return None
        resolver = get_resolver()
        table = resolver.cached_table()
        if table is None:
            return None
        instance = _instance(resolver, resolver.resolve_in(table, hostname))
        if instance is None:
            return None
        instance.domain_url = hostname
        request.tenant = instance
        self.setup_url_routing(request)
        return instance

    def process_request(self, request: HttpRequest) -> Any:
        """django-tenants' entry point: route and make the tenant current (no reset)."""
        early = _settle(self._route(request))
        if early is _NOT_FOUND:
            return self.no_tenant_found(request, request._tenantkit_hostname)
        return early

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        tenant = self._direct(request) if self._plain else None
        if tenant is not None:
            token = _state.set_current(tenant)
            try:
                return _keep_tenant(self.get_response(request))
            finally:
                _state.reset_current(token)
        token = _state.set_current(_state.public_tenant())
        try:
            early = _settle(self._route(request))
            if early is _NOT_FOUND:
                early = self.no_tenant_found(request, request._tenantkit_hostname)
            if early is not None:
                return early
            return _keep_tenant(self.get_response(request))
        finally:
            _state.reset_current(token)

    async def __acall__(self, request: HttpRequest) -> Any:
        tenant = self._direct(request) if self._plain else None  # pure: no I/O
        if tenant is not None:
            token = _state.set_current(tenant)
            try:
                return _keep_tenant(await self.get_response(request))
            finally:
                _state.reset_current(token)
        token = _state.set_current(_state.public_tenant())
        try:
            if self._pure and get_resolver().cached_table() is not None:
                routed = self._route(request)  # pure: a dictionary lookup
            else:
                routed = await sync_to_async(self._route)(request)
            early = _settle(routed)
            if early is _NOT_FOUND:
                hostname = request._tenantkit_hostname
                early = await sync_to_async(self.no_tenant_found)(request, hostname)
            if early is not None:
                return early
            return _keep_tenant(await self.get_response(request))
        finally:
            _state.reset_current(token)


def _instance(resolver: Any, result: Any) -> Any:
    """A copy of the tenant instance a routing result names (None: no tenant), loaded with
    the table the result came from."""
    tenant = result.tenant
    if tenant is None or result.outcome not in _FOUND:
        return None
    schema = tenant if isinstance(tenant, str) else tenant.schema
    return resolver.source.tenant(schema)


def _settle(routed: Any) -> Any:
    """What a routing outcome means, for the sync and async paths alike: ``_NOT_FOUND`` (ask
    ``no_tenant_found``), a response to return at once (a host not allowed), or None once the
    routed tenant is made current (the caller resets it after the response)."""
    if routed is _NOT_FOUND:
        return _NOT_FOUND
    if not hasattr(routed, "schema_name"):
        return routed
    _state.set_current(routed)
    return None


def _keep_tenant(response: Any) -> Any:
    """Streamed content is produced after the middleware returned: give it the tenant."""
    if not getattr(response, "streaming", False) or response.is_async:
        return response
    context = contextvars.copy_context()
    content = response.streaming_content

    def stream() -> Iterator[Any]:
        iterator = iter(content)
        while True:
            try:
                chunk = context.run(next, iterator)
            except StopIteration:
                return
            yield chunk

    response.streaming_content = stream()
    return response
