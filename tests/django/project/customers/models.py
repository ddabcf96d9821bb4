"""The project's tenant and domain models (django-tenants style)."""

from __future__ import annotations

from django.db import models

from tenantkit.django.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    """A customer: one schema each."""

    name = models.CharField(max_length=100, default="")
    auto_drop_schema = True


class Domain(DomainMixin):
    """A host routed to a customer."""
