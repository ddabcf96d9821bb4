"""``manage.py all_tenants_command <command> [options]``: run a command in every tenant."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError

from ...utils import get_public_schema_name, get_tenant_model, tenant_context

__all__ = ["Command"]


class Command(BaseCommand):
    """Wrapper around Django commands for use with all tenants."""

    help = "Wrapper around django commands for use with all tenants"

    def add_arguments(self, parser: Any) -> None:
        """``--no-public`` and the command with its arguments."""
        super().add_arguments(parser)
        parser.add_argument(
            "--no-public", nargs="?", const=True, default=False, help="Leave out the public schema"
        )
        parser.add_argument("command_name", nargs="+", help="The command to run, and its arguments")

    def get_tenants(self, no_public: bool) -> Any:
        """The tenants to run in."""
        tenants = get_tenant_model()._default_manager.all()
        if no_public:
            tenants = tenants.exclude(schema_name=get_public_schema_name())
        return tenants

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the command in each tenant's schema, in turn (the ``call_command()`` path)."""
        name, *command_args = options["command_name"]
        if name not in get_commands():
            raise CommandError(f"Unknown command: {name!r}")
        for tenant in self.get_tenants(bool(options["no_public"])):
            self.stdout.write(f"Applying command to: {tenant.schema_name}")
            with tenant_context(tenant):
                call_command(name, *command_args)

    def run_from_argv(self, argv: list[str]) -> None:
        """The command line: the wrapped command parses its own options (``--no-public``,
        wherever it is, is ours). No command name, or ``--help``: this command's parser
        answers (usage error, help)."""
        rest = [a for a in argv if a != "--no-public"]
        no_public = len(rest) != len(argv)
        if len(rest) <= 2 or rest[2] in ("-h", "--help"):
            super().run_from_argv(list(argv))
            return
        name = rest[2]
        try:
            found = get_commands().get(name)
            if found is None:
                raise CommandError(f"Unknown command: {name!r}")
            # get_commands() holds an instance for a command loaded already.
            wrapped = found if isinstance(found, BaseCommand) else load_command_class(found, name)
        except CommandError as exc:
            self.stderr.write(f"CommandError: {exc}")
            sys.exit(1)
        for tenant in self.get_tenants(no_public):
            self.stdout.write(f"Applying command to: {tenant.schema_name}")
            with tenant_context(tenant):
                wrapped.run_from_argv([rest[0], name, *rest[3:]])
