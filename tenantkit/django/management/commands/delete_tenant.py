"""``manage.py delete_tenant -s <schema> [--noinput]``: delete a tenant and drop its schema."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ...utils import get_public_schema_name, get_tenant_database_alias
from . import InteractiveTenantOption

__all__ = ["Command"]


class Command(InteractiveTenantOption, BaseCommand):
    """Delete a tenant's row and its schema, in one transaction."""

    help = "Deletes a tenant and drops its schema"

    def add_arguments(self, parser: Any) -> None:
        """``-s`` and ``--noinput``."""
        super().add_arguments(parser)
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")

    def handle(self, *args: Any, **options: Any) -> None:
        """Confirm (unless ``--noinput``), then delete."""
        tenant = self.get_tenant_from_options_or_interactive(**options)
        if tenant.schema_name == get_public_schema_name():
            raise CommandError("the public tenant cannot be deleted")
        if options.get("interactive", True):
            self.stderr.write(
                f"Warning: this drops the schema {tenant.schema_name!r} and all its data; "
                "there is no undo."
            )
            answer = input(f"Are you sure you want to delete {tenant.schema_name!r} [yes/no]? ")
            # Only a clear answer counts (django-tenants asks again until it gets one).
            while answer.strip().lower() not in ("yes", "no"):
                answer = input("Please answer yes or no: ")
            if answer.strip().lower() == "no":
                self.stderr.write("Canceled")
                return
        with transaction.atomic(using=get_tenant_database_alias()):
            tenant.delete(force_drop=True)
        self.stdout.write(self.style.SUCCESS(f"Deleted {tenant.schema_name!r}"))
