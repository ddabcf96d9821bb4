"""``manage.py create_tenant --schema_name=... --name=... --domain-domain=...``: create a
tenant (row, schema at the migration head, primary domain) in one transaction."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from ...utils import get_tenant_database_alias, get_tenant_domain_model, get_tenant_model

__all__ = ["Command", "model_fields"]


def model_fields(model: Any, skip: tuple[str, ...] = ()) -> list[Any]:
    """The concrete, editable, non-automatic fields of ``model`` (an option each)."""
    return [
        f
        for f in model._meta.fields
        if f.editable and not f.auto_created and not f.primary_key and f.name not in skip
    ]


class Command(BaseCommand):
    """Create a tenant and its primary domain."""

    help = "Create a tenant"

    def add_arguments(self, parser: Any) -> None:
        """An option per tenant field, ``--domain-<field>`` per domain field, ``-s``."""
        for field in model_fields(get_tenant_model()):
            flags = [f"--{field.attname}"]
            if field.name == "schema_name":
                flags = ["-s", "--schema_name", "--schema"]
            parser.add_argument(*flags, dest=field.attname, help=str(field.verbose_name))
        for field in model_fields(get_tenant_domain_model(), skip=("tenant",)):
            parser.add_argument(
                f"--domain-{field.attname}",
                dest=f"domain_{field.attname}",
                help=str(field.verbose_name),
            )
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")

    def _values(
        self, model: Any, prefix: str, skip: tuple[str, ...], options: Any
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field in model_fields(model, skip):
            value = options.get(prefix + field.attname)
            if value is None and options.get("interactive", True):
                value = input(f"{prefix}{field.attname}: ") or None
            if value is None:
                if not field.has_default() and not field.blank:
                    raise CommandError(f"--{prefix.replace('_', '-')}{field.attname} is required")
                continue
            values[field.attname] = field.to_python(value)
        return values

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate, then create row, schema and domain together."""
        tenant_values = self._values(get_tenant_model(), "", (), options)
        domain_values = self._values(get_tenant_domain_model(), "domain_", ("tenant",), options)
        tenant = get_tenant_model()(**tenant_values)
        try:
            tenant.full_clean(validate_unique=False)
            with transaction.atomic(using=get_tenant_database_alias()):
                tenant.save(verbosity=int(options.get("verbosity", 1)))
                if domain_values.get("domain"):
                    domain = get_tenant_domain_model()(tenant=tenant, **domain_values)
                    try:
                        domain.full_clean(exclude=["tenant"])
                        domain.save()
                    except (ValidationError, IntegrityError) as exc:
                        # django-tenants' wording; the tenant is rolled back with it.
                        reason = (
                            "; ".join(exc.messages) if isinstance(exc, ValidationError) else exc
                        )
                        raise CommandError(f"Could not create domain: {reason}") from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except IntegrityError as exc:
            raise CommandError(f"cannot create the tenant: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Tenant {tenant.schema_name!r} created"))
