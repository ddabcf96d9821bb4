"""The ``tenantkit`` command.

Lives in the ``cli`` extra (click, rich, prompt_toolkit): the core package never imports this
module, so ``import tenantkit`` works without them.

Every command runs inside :func:`~tenantkit.cli._errors.translated_errors`, so tenantkit,
psycopg and click usage errors end as one ``error: ...`` line and an exit code from
:class:`~tenantkit.cli._errors.ExitCode`, never a traceback. Commands get the database with
:func:`require_dsn` and a tenancy with :func:`~tenantkit.cli._context.open_tenancy`.

Commands are imported when they run, not when the program starts (``_COMMANDS`` names the
module of each): ``tenantkit --version`` and ``tenantkit create`` load only what they use.
"""

from __future__ import annotations

import importlib
import signal
import threading
from types import FrameType
from typing import Any

import click

from .._version import __version__
from ._context import dsn_option_value, require_dsn
from ._errors import CliError, ExitCode, translated_errors, usage_error

__all__ = ["CliError", "ExitCode", "dsn_option_value", "main", "require_dsn"]

#: Command name -> ``module:attribute`` under tenantkit.cli, in the order ``--help`` lists them
#: (by topic, not alphabetically).
_COMMANDS: dict[str, str] = {
    "init": "tenants:init",
    "create": "tenants:create",
    "list": "tenants:list_tenants",
    "show": "tenants:show",
    "rename": "tenants:rename",
    "drop": "tenants:drop",
    "domains": "tenants:domains",
    "clone": "tenants:clone",
    "migrate": "migrate:migrate",
    "plan": "migrate:plan",
    "drift": "migrate:drift",
    "run": "run:run",
    "server": "server:server",
    "shell": "shell:shell",
    "demo": "demo:demo",
}


class _Group(click.Group):
    """The top-level group: commands imported on first use, and every user error (ours,
    the library's, psycopg's and click's own usage errors) printed as one ``error:`` line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*_COMMANDS, *(name for name in self.commands if name not in _COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _COMMANDS:
            module, _, attribute = _COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return command

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # an unknown global option: click's own message
            raise usage_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        # The group's own options are parsed by now (its callback runs inside super().invoke).
        with translated_errors(embedded=bool(ctx.params.get("embedded"))):
            return super().invoke(ctx)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="tenantkit")
@click.option(
    "--dsn",
    envvar=["PGTENANTS_DSN", "DATABASE_URL"],
    default=None,
    metavar="CONNINFO",
    help="PostgreSQL conninfo or URL of the database to work on "
    "[env: PGTENANTS_DSN, else DATABASE_URL].",
)
@click.option(
    "--embedded",
    is_flag=True,
    help="Work on a throw-away embedded PostgreSQL, removed when the command ends.",
)
@click.pass_context
def main(ctx: click.Context, dsn: str | None, embedded: bool) -> None:
    """tenantkit: schema-per-tenant multi-tenancy for PostgreSQL.

    Exit codes: 0 ok, 1 failed (a migration, a tenant's SQL, drift found), 2 usage or invalid
    name, 3 not found, 4 already exists, 5 database unavailable, 130 interrupted.
    """
    ctx.ensure_object(dict)
    _terminate_like_interrupt(ctx)
    if (
        embedded
        and dsn
        and ctx.get_parameter_source("dsn") is click.core.ParameterSource.COMMANDLINE
    ):
        raise click.UsageError("--dsn and --embedded exclude each other; give one")
    # --embedded wins over a DSN from the environment: it was asked for on this command line.
    ctx.obj["dsn"] = None if embedded else dsn
    ctx.obj["embedded"] = embedded


def _terminate_like_interrupt(ctx: click.Context) -> None:
    """Make SIGTERM (``kill``, ``docker stop``, systemd) end a command the way Ctrl-C does:
    the running query is cancelled, transactions roll back, and the exit status is 130."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (e.g. an embedding app)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))
