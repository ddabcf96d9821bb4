"""``manage.py tenant_command <command> -s <schema> [options]``: run any command in one
tenant's schema."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from ...utils import tenant_context
from . import InteractiveTenantOption, command_class

__all__ = ["Command"]


class Command(InteractiveTenantOption, BaseCommand):
    """Wrapper around Django commands for use with an individual tenant."""

    help = "Wrapper around django commands for use with an individual tenant"

    def add_arguments(self, parser: Any) -> None:
        """``-s``, the command's name and its options."""
        super().add_arguments(parser)
        parser.add_argument("command_name", nargs=argparse.ONE_OR_MORE)
        parser.add_argument("command_options", nargs=argparse.REMAINDER)

    def run_from_argv(self, argv: list[str]) -> None:
        """``manage.py tenant_command NAME -s SCHEMA ...``: the wrapped command parses the rest."""
        if len(argv) <= 2:
            return
        wrapped = command_class(argv[2])
        argv = list(argv)
        del argv[1]
        schema_parser = argparse.ArgumentParser(add_help=False)
        schema_parser.add_argument("-s", "--schema", dest="schema_name")
        namespace, rest = schema_parser.parse_known_args(argv)
        tenant = self.get_tenant_from_options_or_interactive(schema_name=namespace.schema_name)
        with tenant_context(tenant):
            wrapped.run_from_argv(rest)

    def handle(self, *args: Any, **options: Any) -> None:
        """``call_command("tenant_command", "name", ..., schema_name=...)``."""
        tenant = self.get_tenant_from_options_or_interactive(**options)
        options.pop("schema_name", None)
        name, *sub = options.pop("command_name")
        sub += options.pop("command_options")
        for key in ("verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color"):
            options.pop(key, None)
        options.pop("skip_checks", None)
        with tenant_context(tenant):
            call_command(name, *sub, **options)
