"""A mypy plugin declaring ``request.tenant``, which the routing middleware sets.

``HttpRequest`` has no ``tenant`` attribute for a type checker to see; with this plugin every
class deriving from it (Django's ``WSGIRequest`` / ``ASGIRequest``, DRF's ``Request``...) gets
``tenant: TenantMixin``. In ``pyproject.toml``::

    [tool.mypy]
    plugins = ["tenantkit.django.mypy_plugin"]

(django-tenants' ``django_tenants.mypy_plugin`` does the same; the names it exposes are kept.)
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import TypeInfo
from mypy.plugin import ClassDefContext, Plugin
from mypy.plugins.common import add_attribute_to_class
from mypy.types import AnyType, Instance, Type, TypeOfAny

__all__ = ["HTTPREQUEST_FULLNAME", "DjangoTenantsPlugin", "TenantkitPlugin", "plugin"]

HTTPREQUEST_FULLNAME = "django.http.request.HttpRequest"
TENANT_MIXIN_FULLNAME = "tenantkit.django.models.TenantMixin"


def _tenant_type(ctx: ClassDefContext) -> Type:
    # TenantMixin may not be analysed yet in an early pass: Any then, rather than an error.
    symbol = ctx.api.lookup_fully_qualified_or_none(TENANT_MIXIN_FULLNAME)
    if symbol is not None and isinstance(symbol.node, TypeInfo):
        return Instance(symbol.node, [])
    return AnyType(TypeOfAny.implementation_artifact)


def _add_tenant_attribute(ctx: ClassDefContext) -> None:
    """Declare ``tenant`` on a class deriving from ``HttpRequest``."""
    add_attribute_to_class(ctx.api, ctx.cls, "tenant", _tenant_type(ctx))


class TenantkitPlugin(Plugin):
    """Adds ``tenant: TenantMixin`` to the subclasses of ``HttpRequest``."""

    def get_base_class_hook(self, fullname: str) -> Callable[[ClassDefContext], None] | None:
        """The hook for classes based on ``HttpRequest``; None for any other base."""
        return _add_tenant_attribute if fullname == HTTPREQUEST_FULLNAME else None


#: django-tenants' name of the plugin class.
DjangoTenantsPlugin = TenantkitPlugin


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return TenantkitPlugin
