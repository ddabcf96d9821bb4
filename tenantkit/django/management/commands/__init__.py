"""Shared parts of the management commands, with django-tenants' class names.

``BaseTenantCommand`` runs another command in every tenant schema (``COMMAND_NAME``),
``InteractiveTenantOption`` picks a tenant from ``-s/--schema`` or a prompt,
``TenantWrappedCommand`` runs ``COMMAND`` in one tenant, ``SyncCommon`` holds the options of
``migrate_schemas``.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError

from ...utils import get_public_schema_name, get_tenant_model, tenant_context

__all__ = ["BaseTenantCommand", "InteractiveTenantOption", "SyncCommon", "TenantWrappedCommand"]


def tenant_by_schema(schema_name: str) -> Any:
    """The tenant whose schema is ``schema_name``; ``CommandError`` when there is none."""
    model = get_tenant_model()
    try:
        return model._default_manager.get(schema_name=schema_name)
    except model.DoesNotExist:
        raise CommandError(f"Invalid tenant schema, {schema_name!r}: no such tenant") from None


def command_class(name: str) -> BaseCommand:
    """The command object of ``name``; ``CommandError`` for an unknown one."""
    try:
        app = get_commands()[name]
    except KeyError:
        raise CommandError(f"Unknown command: {name!r}") from None
    if isinstance(app, BaseCommand):
        return app
    return load_command_class(app, name)


class BaseTenantCommand(BaseCommand):
    """Run the command named by the class attribute ``COMMAND_NAME`` in every tenant schema
    (``-s`` for one, ``-p/--skip-public`` to leave the public tenant out)."""

    COMMAND_NAME: str = ""
    #: A fixed schema to run in (subclasses), overridden by ``-s``.
    schema_name: str | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        wrapped = command_class(obj.COMMAND_NAME)
        obj.help = (
            f"Calls {obj.COMMAND_NAME} for all registered schemata. You can use regular "
            f"{obj.COMMAND_NAME} options. Original help for {obj.COMMAND_NAME}: "
            f"{getattr(wrapped, 'help', 'none')}"
        )
        return obj

    def add_arguments(self, parser: Any) -> None:
        """``-s/--schema`` and ``-p/--skip-public``."""
        super().add_arguments(parser)
        parser.add_argument("-s", "--schema", dest="schema_name")
        parser.add_argument("-p", "--skip-public", dest="skip_public", action="store_true")

    def execute_command(self, tenant: Any, command_name: str, *args: Any, **options: Any) -> None:
        """Run ``command_name`` with ``tenant`` current."""
        if int(options.get("verbosity", 1)) >= 1:
            self.stdout.write(
                self.style.NOTICE("=== Switching to schema '")
                + self.style.SQL_TABLE(tenant.schema_name)
                + self.style.NOTICE(f"' then calling {command_name}:")
            )
        with tenant_context(tenant):
            call_command(command_name, *args, **options)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the command in one schema or in every tenant's."""
        schema = options.pop("schema_name", None) or self.schema_name
        skip_public = options.pop("skip_public", False)
        if schema:
            self.execute_command(tenant_by_schema(schema), self.COMMAND_NAME, *args, **options)
            return
        for tenant in get_tenant_model()._default_manager.all():
            if skip_public and tenant.schema_name == get_public_schema_name():
                continue
            self.execute_command(tenant, self.COMMAND_NAME, *args, **options)


class InteractiveTenantOption:
    """``-s/--schema``, or ask for the schema (``?`` lists the tenants)."""

    stdout: Any
    style: Any

    def add_arguments(self, parser: Any) -> None:
        """``-s/--schema/--schema_name``."""
        parser.add_argument(
            "-s", "--schema", "--schema_name", dest="schema_name", help="specify tenant schema"
        )

    def get_tenant_from_options_or_interactive(self, **options: Any) -> Any:
        """The tenant named by ``schema_name``, or one picked at the prompt."""
        tenants = list(get_tenant_model()._default_manager.all())
        if not tenants:
            raise CommandError("There are no tenants in the system.")
        schema = options.get("schema_name")
        while not schema:
            schema = input("Enter Tenant Schema ('?' to list schemas): ")
            if schema == "?":
                for i, t in enumerate(tenants):
                    self.stdout.write(f"{i}) {t.schema_name} - {t.get_primary_domain()}")
                schema = None
        if schema.isdigit() and int(schema) < len(tenants):
            return tenants[int(schema)]
        for t in tenants:
            if t.schema_name == schema:
                return t
        raise CommandError(f"Invalid tenant schema, {schema!r}")


class TenantWrappedCommand(InteractiveTenantOption, BaseCommand):
    """Run the command class ``COMMAND`` in one tenant's schema."""

    COMMAND: Any = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__new__(cls)
        obj.command_instance = obj.COMMAND()
        return obj

    def add_arguments(self, parser: Any) -> None:
        """The wrapped command's arguments and ``-s``."""
        super().add_arguments(parser)
        self.command_instance.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the wrapped command with the tenant current."""
        tenant = self.get_tenant_from_options_or_interactive(**options)
        with tenant_context(tenant):
            self.command_instance.execute(*args, **options)


class SyncCommon(BaseCommand):
    """Options of ``migrate_schemas``: ``--tenant``, ``--shared``, ``-s``, ``--executor``."""

    def add_arguments(self, parser: Any) -> None:
        """django-tenants' options."""
        parser.add_argument(
            "--tenant", action="store_true", help="Migrate the tenant schemas only."
        )
        parser.add_argument("--shared", action="store_true", help="Migrate the public schema only.")
        parser.add_argument("-s", "--schema", dest="schema_name", help="Migrate one schema.")
        parser.add_argument(
            "--executor",
            # django-tenants reads the EXECUTOR environment variable when --executor is not
            # given (its CI selects the executor that way): so do we.
            default=_executor_from_env(),
            choices=list(_EXECUTOR_NAMES),
            help="standard (one schema at a time), multiprocessing "
            "(TENANT_MULTIPROCESSING_MAX_PROCESSES processes) or threads; default: "
            "$EXECUTOR, else standard",
        )


_EXECUTOR_NAMES = ("standard", "multiprocessing", "threads")


def _executor_from_env() -> str | None:
    """``$EXECUTOR`` when set; an unknown value is an error rather than a silent default."""
    name = os.environ.get("EXECUTOR") or None
    if name is not None and name not in _EXECUTOR_NAMES:
        raise CommandError(
            f"EXECUTOR={name!r} is not an executor: use one of {', '.join(_EXECUTOR_NAMES)}"
        )
    return name
