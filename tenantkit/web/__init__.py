"""Host routing and the web middleware, on top of :mod:`tenantkit.core`.

- :mod:`~tenantkit.web.routing`: ``TenantResolver``, host -> tenant with a cache (pure).
- :mod:`~tenantkit.web.sources`: where the host map comes from (the registry, a mapping).
- :mod:`~tenantkit.web.wsgi` / :mod:`~tenantkit.web.asgi`: the middleware.

Nothing is imported here; the public names are exported from :mod:`tenantkit`.
"""
