"""``TenantMixin`` and ``DomainMixin``: django-tenants' abstract models, on tenantkit.

Same fields, flags and methods. What differs: the schema name is validated in ``save()``
(django-tenants only validates it in ``full_clean()``) before any SQL exists, and every name is
quoted; a new tenant's row, schema and migrations commit together or not at all (one
transaction); ``with tenant:`` restores the previous tenant per thread/task (django-tenants
keeps one list on the class, shared by all threads).
"""

from __future__ import annotations

import contextvars
from typing import Any

from django.conf import settings
from django.contrib.sites.shortcuts import get_current_site
from django.core.exceptions import ValidationError
from django.db import connections, models, transaction
from django.urls import reverse
from psycopg import sql

from tenantkit.core.names import is_valid_schema_name

from . import _state
from ._names import check_schema_name
from .signals import post_schema_sync, schema_needs_to_be_sync
from .utils import (
    _execute,
    get_creation_fakes_migrations,
    get_public_schema_name,
    get_tenant_base_schema,
    get_tenant_database_alias,
    get_tenant_domain_model,
    has_multi_type_tenants,
    schema_exists,
)

__all__ = ["DomainMixin", "TenantMixin"]

#: ``with tenant:`` blocks of this thread/task, innermost last (tokens to restore).
_entered: contextvars.ContextVar[tuple[contextvars.Token[Any], ...]] = contextvars.ContextVar(
    "tenantkit_django_entered", default=()
)


def _validate_schema_name(value: str) -> None:
    check_schema_name(value)


class TenantMixin(models.Model):
    """Base class of the tenant model (``TENANT_MODEL``): one row per schema.

    ``auto_create_schema`` (default True): saving a new tenant creates and migrates its
    schema. ``auto_drop_schema`` (default False): deleting the row drops the schema.
    """

    auto_drop_schema = False
    auto_create_schema = True
    #: ``"DATA"`` or ``"NODATA"``: what cloning from ``TENANT_BASE_SCHEMA`` copies.
    clone_mode = "DATA"

    schema_name = models.CharField(
        max_length=63, unique=True, db_index=True, validators=[_validate_schema_name]
    )

    #: The host the current request reached this tenant by (set by the middleware).
    domain_url: str | None = None
    #: The subfolder the current request reached this tenant by (subfolder routing).
    domain_subfolder: str | None = None

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return str(self.schema_name)

    # -- making the tenant current ------------------------------------------------------

    def __enter__(self) -> TenantMixin:
        """``with tenant:`` makes this tenant current for the block."""
        token = _state.set_current(self)
        _entered.set((*_entered.get(), token))
        return self

    def __exit__(self, *exc: object) -> None:
        stack = _entered.get()
        _entered.set(stack[:-1])
        _state.reset_current(stack[-1])

    def activate(self) -> None:
        """Make this tenant current in this thread/task (until another is set)."""
        connections[get_tenant_database_alias()].set_tenant(self)

    @classmethod
    def deactivate(cls) -> None:
        """Make the public schema current again."""
        connections[get_tenant_database_alias()].set_schema_to_public()

    # -- saving and deleting ------------------------------------------------------------

    def _check_schema_name_is_unique(self) -> None:
        # Schema names differing only in case are one tenant for django-tenants (#846).
        if type(self)._default_manager.filter(schema_name__iexact=self.schema_name).exists():
            raise ValidationError(
                f"A tenant with the schema name {self.schema_name!r} already exists. Schema "
                "names are compared ignoring case."
            )

    def save(self, verbosity: int = 1, *args: Any, **kwargs: Any) -> None:
        """Save the row; a new tenant gets its schema, created and migrated, atomically."""
        current = _state.current()[0].schema_name
        public = get_public_schema_name()
        is_new = self._state.adding
        if is_new and current != public:
            raise Exception(
                f"Can't create tenant outside the public schema. Current schema is {current}."
            )
        if not is_new and current not in (self.schema_name, public):
            raise Exception(
                "Can't update tenant outside it's own schema or the public schema. Current "
                f"schema is {current}."
            )
        check_schema_name(self.schema_name)
        database = kwargs.get("using") or get_tenant_database_alias()
        if is_new:
            self._check_schema_name_is_unique()
            if self.auto_create_schema:
                # Row, schema and migrations in one transaction: a failure leaves nothing.
                with transaction.atomic(using=database):
                    super().save(*args, **kwargs)
                    self.create_schema(check_if_exists=True, verbosity=verbosity)
                post_schema_sync.send(sender=TenantMixin, tenant=self.serializable_fields())
            else:
                super().save(*args, **kwargs)
                schema_needs_to_be_sync.send(sender=TenantMixin, tenant=self.serializable_fields())
            return
        super().save(*args, **kwargs)
        if self.auto_create_schema and not schema_exists(self.schema_name):
            with transaction.atomic(using=database):
                self.create_schema(check_if_exists=True, verbosity=verbosity)
            post_schema_sync.send(sender=TenantMixin, tenant=self.serializable_fields())

    def serializable_fields(self) -> Any:
        """What the schema signals send as ``tenant`` (override if the model cannot pickle)."""
        return self

    def create_schema(
        self, check_if_exists: bool = False, sync_schema: bool = True, verbosity: int = 1
    ) -> bool:
        """Create this tenant's schema and migrate it; False if it existed (with the check)."""
        check_schema_name(self.schema_name)
        if check_if_exists and schema_exists(self.schema_name):
            return False
        from ._migrate import migrate_schema

        base = self.get_base_schema() if get_creation_fakes_migrations() else None
        if base and schema_exists(base):
            from tenantkit import clone_schema

            connection = connections[get_tenant_database_alias()]
            connection.ensure_connection()
            clone_schema(
                connection.connection, base, self.schema_name, data=self.clone_mode == "DATA"
            )
            if sync_schema:
                migrate_schema(self.schema_name, verbosity=verbosity, fake=True, tenant=self)
        elif (
            sync_schema and not has_multi_type_tenants() and is_valid_schema_name(self.schema_name)
        ):
            # tenantkit's fast path: a warm spare, the template, or the migrations replayed
            # (Django's executor where a migration needs it), django_migrations included.
            from ._provision import provision_schema
            from .signals import schema_migrated, schema_pre_migration

            schema_pre_migration.send(sender=migrate_schema, schema_name=self.schema_name)
            provision_schema(
                self.schema_name, verbosity=verbosity, database=get_tenant_database_alias()
            )
            schema_migrated.send(sender=migrate_schema, schema_name=self.schema_name)
        else:
            # Django's executor: multi-type tenants migrate the apps of their own type, and
            # names only django-tenants' rule accepts (capitals, '%', ...) stay off the
            # provisioner's SQL, which is built for tenantkit's strict names.
            _execute(
                get_tenant_database_alias(),
                sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema_name)),
            )
            if sync_schema:
                migrate_schema(self.schema_name, verbosity=verbosity, tenant=self)
        return True

    def _drop_schema(self, force_drop: bool = False) -> None:
        current = _state.current()[0].schema_name
        if current not in (self.schema_name, get_public_schema_name()):
            raise Exception(
                "Can't delete tenant outside it's own schema or the public schema. Current "
                f"schema is {current}."
            )
        if (self.auto_drop_schema or force_drop) and schema_exists(self.schema_name):
            if self.schema_name == get_public_schema_name():
                raise ValidationError("the public schema is never dropped with a tenant")
            check_schema_name(self.schema_name)
            self.pre_drop()
            _execute(
                get_tenant_database_alias(),
                sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema_name)),
            )

    def pre_drop(self) -> None:
        """Called just before the schema is dropped (override to back it up)."""

    def delete(self, force_drop: bool = False, *args: Any, **kwargs: Any) -> Any:
        """Delete the row; drop the schema too with ``auto_drop_schema`` or ``force_drop``."""
        self._drop_schema(force_drop)
        return super().delete(*args, **kwargs)

    # -- domains and URLs ---------------------------------------------------------------

    def get_primary_domain(self) -> Any:
        """The tenant's primary domain, or None."""
        try:
            return self.domains.get(is_primary=True)
        except get_tenant_domain_model().DoesNotExist:
            return None

    def reverse(self, request: Any, view_name: str) -> str:
        """The URL of ``view_name`` on this tenant's subdomain of the current site."""
        scheme = "https://" if request.is_secure() else "http://"
        domain = get_current_site(request).domain
        return f"{scheme}{self.schema_name}.{domain}{reverse(view_name)}"

    def get_tenant_type(self) -> Any:
        """The tenant's type (``MULTI_TYPE_DATABASE_FIELD``; multi-type tenants only)."""
        return getattr(self, settings.MULTI_TYPE_DATABASE_FIELD)

    def get_base_schema(self) -> str | None:
        """The schema this tenant is cloned from (its type's with multi-type tenants)."""
        if self.schema_name == get_public_schema_name():
            return None
        tenant_type = self.get_tenant_type() if has_multi_type_tenants() else None
        return get_tenant_base_schema(tenant_type)


class DomainMixin(models.Model):
    """Base class of the domain model (``TENANT_DOMAIN_MODEL``): hosts routed to tenants."""

    domain = models.CharField(max_length=253, unique=True, db_index=True)
    tenant = models.ForeignKey(
        settings.TENANT_MODEL, db_index=True, related_name="domains", on_delete=models.CASCADE
    )
    #: One primary domain per tenant: saving a primary domain demotes the others.
    is_primary = models.BooleanField(default=True, db_index=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return str(self.domain)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; the first domain of a tenant is primary, a new primary demotes the others."""
        with transaction.atomic(using=kwargs.get("using") or get_tenant_database_alias()):
            others = (
                type(self)
                ._default_manager.filter(tenant=self.tenant, is_primary=True)
                .exclude(pk=self.pk)
            )
            self.is_primary = self.is_primary or not others.exists()
            if self.is_primary:
                others.update(is_primary=False)
            super().save(*args, **kwargs)
