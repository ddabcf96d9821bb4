"""The ``tenantkit`` command.

Lives in the ``cli`` extra (click, rich, prompt_toolkit): the core package never imports this
module, so ``import tenantkit`` works without them.

Every command runs inside :func:`~tenantkit.cli._errors.translated_errors`, so tenantkit and
psycopg errors end as one ``error: ...`` line and an exit code from
:class:`~tenantkit.cli._errors.ExitCode`, never a traceback. Commands get the database with
:func:`require_dsn` and a tenancy with :func:`~tenantkit.cli._context.open_tenancy`.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import click

from .._version import __version__
from ._context import dsn_option_value, require_dsn
from ._errors import CliError, ExitCode, translated_errors

__all__ = ["CliError", "ExitCode", "dsn_option_value", "main", "require_dsn"]


class _Group(click.Group):
    """A group whose commands' user errors become one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they are added: by topic, not alphabetically

    def invoke(self, ctx: click.Context) -> Any:
        with translated_errors():
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


from .demo import demo  # noqa: E402 (commands import helpers from the modules above)
from .migrate import drift, migrate, plan  # noqa: E402
from .run import run  # noqa: E402
from .server import server  # noqa: E402
from .shell import shell  # noqa: E402
from .tenants import clone, create, domains, drop, init, list_tenants, rename, show  # noqa: E402

for _command in (
    init,
    create,
    list_tenants,
    show,
    rename,
    drop,
    domains,
    clone,
    migrate,
    plan,
    drift,
    run,
    server,
    shell,
    demo,
):
    main.add_command(_command)
