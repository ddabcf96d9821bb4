"""factory-boy factories for tenants, domains and rows in tenant tables.

``factory-boy`` is an optional dependency (extra ``factories``); the classes are built when an
attribute of this module is first used, so importing ``pytest_pgtenants`` never needs it.

* :class:`TenantFactory` - a registered, fully migrated tenant (through the test's
  ``tenancy``; dropped after the test like ``tenant_factory``'s).
* :class:`DomainFactory` - a domain added to a tenant (a new one unless ``tenant=`` is given).
* :class:`TenantRowFactory` - base class for rows of a tenant table, inserted through a
  connection bound to the current tenant (``tenantkit.current_tenant()``, or ``_tenant=``)::

      class OrderFactory(TenantRowFactory):
          class Meta:
              model = "orders"          # the table, resolved by the tenant's search_path
          number = factory.Sequence(lambda n: n)

      with tenant_context(acme):
          order = OrderFactory()        # a dict of the inserted row (RETURNING *)
      OrderFactory(_tenant=globex)

* :class:`DjangoTenantFactory` - for Django projects (django-tenants or tenantkit.django, with
  ``pytest_pgtenants._django`` loaded): a saved ``TENANT_MODEL`` instance on a fresh, migrated
  schema, made by the running test like ``django_tenant_factory``'s (so it is undone after
  the test). Subclass it to set your tenant model's fields::

      class ClientFactory(DjangoTenantFactory):
          class Meta:
              model = Client                 # the project's TENANT_MODEL
          name = factory.Sequence(lambda n: f"Client {n}")

      acme = ClientFactory(schema_name="acme", domains=["acme.example.test"])

  ``domains`` (default: ``<schema>.example.test``) become the tenant's domains, the first one
  primary. ``.build()`` returns an unsaved instance. Django is imported only when this class
  is first used.
"""

from __future__ import annotations

from typing import Any

from ._extras import require

__all__ = [  # noqa: F822 (module __getattr__)
    "DjangoTenantFactory",
    "DomainFactory",
    "TenantFactory",
    "TenantRowFactory",
]

_BUILT: dict[str, Any] = {}
_BUILT_DJANGO: dict[str, Any] = {}


def _build() -> dict[str, Any]:
    if _BUILT:
        return _BUILT
    factory = require("factory")
    from psycopg import sql
    from psycopg.rows import dict_row

    from tenantkit.core.context import current_tenant
    from tenantkit.core.models import Domain, Tenant

    from ._runtime import current_scope

    class TenantFactory(factory.Factory):  # type: ignore[misc,name-defined]
        """A tenant created through the running test's ``tenancy`` (dropped after the test)."""

        class Meta:
            model = Tenant

        name = factory.Sequence(lambda n: f"Factory tenant {n}")
        schema = factory.LazyFunction(lambda: current_scope().session.new_schema_name())
        domains = factory.LazyAttribute(lambda o: [current_scope().session.host_for(o.schema)])
        metadata = factory.Dict({})

        @classmethod
        def _build(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
            raise TypeError("TenantFactory only creates tenants (use TenantFactory())")

        @classmethod
        def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Tenant:
            scope = current_scope()
            tenant = scope.session.create_tenant(
                scope.tenancy,
                schema=kwargs["schema"],
                name=kwargs["name"],
                domains=kwargs["domains"],
                metadata=kwargs["metadata"],
            )
            scope.track(tenant)
            return tenant

    class DomainFactory(factory.Factory):  # type: ignore[misc,name-defined]
        """A domain of ``tenant`` (default: a new tenant), ``primary=False`` by default."""

        class Meta:
            model = Domain

        tenant = factory.SubFactory(TenantFactory)
        host = factory.Sequence(lambda n: f"domain-{n}.{current_scope().session.settings.domain}")
        primary = False

        @classmethod
        def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Domain:
            scope = current_scope()
            domain: Domain = scope.tenancy.add_domain(
                kwargs["tenant"], kwargs["host"], primary=kwargs["primary"]
            )
            return domain

    class TenantRowFactory(factory.Factory):  # type: ignore[misc,name-defined]
        """Base for rows of a tenant table; set ``Meta.model`` to the table name."""

        class Meta:
            abstract = True

        @classmethod
        def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            scope = current_scope()
            tenant = kwargs.pop("_tenant", None) or current_tenant()
            if tenant is None:
                raise RuntimeError(
                    f"{cls.__name__} needs a current tenant: use it inside "
                    "tenantkit.tenant_context(tenant) / tenancy.connection(tenant), or pass "
                    "_tenant=tenant"
                )
            if not isinstance(model_class, str):
                raise TypeError(f"{cls.__name__}.Meta.model must be a table name (a str)")
            table = sql.Identifier(*model_class.split("."))
            if kwargs:
                query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
                    table,
                    sql.SQL(", ").join(sql.Identifier(k) for k in kwargs),
                    sql.SQL(", ").join(sql.Placeholder() * len(kwargs)),
                )
            else:
                query = sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING *").format(table)
            with scope.tenancy.connection(tenant) as conn, conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(query, list(kwargs.values())).fetchone()
            return dict(row or {})

        @classmethod
        def _build(cls, model_class: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            kwargs.pop("_tenant", None)
            return dict(kwargs)

    _BUILT.update(
        TenantFactory=TenantFactory, DomainFactory=DomainFactory, TenantRowFactory=TenantRowFactory
    )
    return _BUILT


def _build_django() -> dict[str, Any]:
    if _BUILT_DJANGO:
        return _BUILT_DJANGO
    factory = require("factory")
    import uuid

    from django.apps import apps

    from ._django import current_django_scope
    from ._django_backend import detect_backend

    if not apps.ready:
        raise RuntimeError(
            "DjangoTenantFactory needs Django set up (pytest-django does it when "
            "DJANGO_SETTINGS_MODULE is configured); import it from test modules or conftest.py"
        )
    tenant_model = detect_backend().tenant_model()

    class DjangoTenantFactory(factory.Factory):  # type: ignore[misc,name-defined]
        """A Django tenant made by the running test (undone after it), see the module doc."""

        class Meta:
            model = tenant_model

        schema_name = factory.LazyFunction(lambda: f"t{uuid.uuid4().hex[:16]}")
        domains = None

        @classmethod
        def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                concrete = model_class._meta.concrete_model
            except AttributeError:  # not a Django model
                concrete = None
            if concrete is not tenant_model._meta.concrete_model:
                raise TypeError(
                    f"{cls.__name__}.Meta.model is {model_class!r}, but the project's "
                    f"TENANT_MODEL is {tenant_model!r}: only tenants of that model can be made"
                )
            scope = current_django_scope()
            domains = kwargs.pop("domains", None)
            schema = kwargs.pop("schema_name")
            return scope.create(schema, domains, **kwargs)

        @classmethod
        def _build(cls, model_class: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop("domains", None)
            return model_class(**kwargs)

    _BUILT_DJANGO.update(DjangoTenantFactory=DjangoTenantFactory)
    return _BUILT_DJANGO


def __getattr__(name: str) -> Any:
    if name == "DjangoTenantFactory":
        return _build_django()[name]
    if name in __all__:
        return _build()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
