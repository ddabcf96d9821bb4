"""``manage.py create_tenant_superuser -s <schema>``: ``createsuperuser`` in a tenant."""

from __future__ import annotations

from django.contrib.auth.management.commands import createsuperuser

from . import TenantWrappedCommand

__all__ = ["Command"]


class Command(TenantWrappedCommand):
    """``createsuperuser`` with the chosen tenant current."""

    COMMAND = createsuperuser.Command
