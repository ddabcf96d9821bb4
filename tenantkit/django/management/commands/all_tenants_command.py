"""``manage.py all_tenants_command <command> [options]``: run a command in every tenant."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ...utils import get_public_schema_name, get_tenant_model, tenant_context
from . import command_class

__all__ = ["Command"]


class Command(BaseCommand):
    """Wrapper around Django commands for use with all tenants."""

    help = "Wrapper around django commands for use with all tenants"

    def add_arguments(self, parser: Any) -> None:
        """``--no-public`` and the command with its arguments."""
        super().add_arguments(parser)
        parser.add_argument("--no-public", nargs="?", const=True, default=False)
        parser.add_argument("command_name", nargs="+")

    def get_tenants(self, no_public: bool) -> Any:
        """The tenants to run in."""
        tenants = get_tenant_model()._default_manager.all()
        if no_public:
            tenants = tenants.exclude(schema_name=get_public_schema_name())
        return tenants

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the command in each tenant's schema, in turn."""
        name, *command_args = options["command_name"]
        command_class(name)
        for tenant in self.get_tenants(bool(options["no_public"])):
            self.stdout.write(f"Applying command to: {tenant.schema_name}")
            with tenant_context(tenant):
                call_command(name, *command_args)

    def run_from_argv(self, argv: list[str]) -> None:
        """The wrapped command parses its own options (``--no-public`` is ours)."""
        argv = list(argv)
        no_public = "--no-public" in argv
        argv = [a for a in argv if a != "--no-public"]
        if len(argv) < 3:
            self.stderr.write("CommandError: give the command to run")
            sys.exit(1)
        try:
            wrapped = command_class(argv[2])
        except CommandError as exc:
            self.stderr.write(f"CommandError: {exc}")
            sys.exit(1)
        for tenant in self.get_tenants(no_public):
            self.stdout.write(f"Applying command to: {tenant.schema_name}")
            with tenant_context(tenant):
                wrapped.run_from_argv([argv[0], *argv[2:]])
