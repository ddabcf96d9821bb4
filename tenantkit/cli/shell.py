"""``tenantkit shell``: an interactive SQL prompt that sees the database as a tenant does.

Statements run on a connection from :meth:`Tenancy.connection` for the current tenant, so the
tenant's schema comes first on the ``search_path``, then the shared schema, exactly as in an
application. Backslash commands switch tenant (``\\use``, ``\\public``) and inspect schemas
(``\\dt``, ``\\d``, ``\\sizes``, ``\\diff``, ``\\drift``, ``\\plan``, ``\\who``). On a terminal it
uses prompt_toolkit (history, completion, SQL highlighting); ``-c`` and standard input make it
scriptable. The pieces: ``_shell_sql`` (where statements end), ``_shell_session`` (state and
commands), ``_shell_render`` (output), ``_shell_prompt`` (the interactive front end).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, cast

import click

from ._context import make_console, open_tenancy
from ._errors import CliError, ExitCode
from ._options import migrations_option, shared_schema_option
from ._shell_session import ShellSession

if TYPE_CHECKING:
    from ._shell_render import OutputFormat

__all__ = ["shell"]

#: How the shell's connections appear in pg_stat_activity (unless the DSN or PGAPPNAME names
#: one), with the process id so \\who can leave this shell's own connections out.
APPLICATION_NAME = "tenantkit shell {pid}"


@click.command(
    short_help="Open a tenant-aware SQL shell (interactive, or scripted with -c / stdin)."
)
@click.argument("tenant_arg", metavar="[TENANT]", required=False)
@click.option(
    "--tenant",
    "-t",
    "tenant_opt",
    metavar="NAME",
    help="Start as this tenant (schema name or host) [default: the shared schema].",
)
@click.option(
    "-c",
    "--command",
    "commands",
    multiple=True,
    metavar="TEXT",
    help="Run this SQL or backslash command, then exit (repeatable, run in order).",
)
@click.option(
    "--stop-on-error",
    is_flag=True,
    help="In -c and piped input, stop at the first failing statement or command.",
)
@click.option(
    "--csv",
    "output",
    flag_value="csv",
    help="Print query results as CSV (header and rows, no row count), for other programs.",
)
@click.option(
    "-A",
    "--no-align",
    "output",
    flag_value="unaligned",
    help="Print query results unaligned, one line per row, fields separated by '|' (as psql -A).",
)
@click.option(
    "-F",
    "--field-separator",
    "separator",
    default="|",
    show_default=True,
    metavar="TEXT",
    help="The field separator of unaligned output (-A).",
)
@migrations_option(required=False, purpose=", for \\plan and \\drift")
@shared_schema_option
@click.pass_context
def shell(
    ctx: click.Context,
    tenant_arg: str | None,
    tenant_opt: str | None,
    commands: tuple[str, ...],
    stop_on_error: bool,
    output: str | None,
    separator: str,
    migrations_dir: str | None,
    shared_schema: str,
) -> None:
    """Open a SQL prompt working as TENANT (schema name or host; default: the shared schema).

    Type SQL ending with ';' or backslash commands (\\? lists them). With -c, or with
    standard input that is not a terminal, runs the commands and exits, for scripts:

    \b
      tenantkit shell --tenant acme -c '\\dt' -c 'select count(*) from notes'
      echo 'table notes;' | tenantkit shell acme
      tenantkit shell acme --csv -c 'select * from notes' > notes.csv

    Exits 0, or 1 when a statement or command failed in a script.
    """
    if tenant_arg and tenant_opt and tenant_arg != tenant_opt:
        raise CliError(
            f"two tenants given ({tenant_arg} and --tenant {tenant_opt}); give one",
            ExitCode.USAGE,
        )
    tenant = tenant_opt or tenant_arg
    interactive = not commands and sys.stdin.isatty() and sys.stdout.isatty()
    # libpq reads PGAPPNAME when the DSN names no application: \who then shows shells clearly.
    own_application = None
    if "PGAPPNAME" not in os.environ:
        own_application = os.environ["PGAPPNAME"] = APPLICATION_NAME.format(pid=os.getpid())
    # The shell reports a lost connection itself; the pool's warning about discarding it
    # would only repeat that with an object repr.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    out = make_console()
    err = make_console(stderr=True)
    with open_tenancy(ctx, migrations_dir=migrations_dir, shared_schema=shared_schema) as tenancy:
        session = ShellSession(
            tenancy,
            out,
            err,
            migrations_dir=migrations_dir,
            interactive=interactive,
            stop_on_error=stop_on_error,
            own_application=own_application,
            output=cast("OutputFormat", output or "table"),
            separator=separator,
        )
        # An unknown tenant raises TenantNotFound here: one line and exit status 3.
        session.use(tenant, hint="`tenantkit list` shows the tenants")
        try:
            if interactive:
                from ._shell_prompt import run_interactive

                where = f"tenant {session.tenant}" if session.tenant else "the shared schema"
                run_interactive(
                    session,
                    banner=f"tenantkit shell, working in {where}: \\? for help, \\q to quit",
                )
                return
            _run_script(session, commands)
        finally:
            session.close()
    if session.failures:
        ctx.exit(int(ExitCode.FAILED))


def _run_script(session: ShellSession, commands: tuple[str, ...]) -> None:
    """Run each ``-c`` text (a statement may lack its ';'), else standard input to its end."""
    if commands:
        for command in commands:
            if not session.feed(command) or not session.finish():
                return
        return
    for line in sys.stdin:
        if not session.feed(line.rstrip("\n")):
            return
    session.finish()
