"""The ``tenantkit`` command.

Lives in the ``cli`` extra (click): the core package never imports this module, so
``import tenantkit`` works without click installed.

Adding a command is one line at the bottom of this module::

    main.add_command(migrate)

Commands read the global ``--dsn`` (or ``PGTENANTS_DSN``) with :func:`dsn_option_value` or
:func:`require_dsn`, from ``ctx.obj["dsn"]``.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from types import FrameType

import click

from .._version import __version__
from ..errors import ServerError

__all__ = ["dsn_option_value", "main", "require_dsn", "server"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="tenantkit")
@click.option(
    "--dsn",
    envvar="PGTENANTS_DSN",
    default=None,
    metavar="CONNINFO",
    help="PostgreSQL conninfo or URL of the database to work on [env: PGTENANTS_DSN].",
)
@click.pass_context
def main(ctx: click.Context, dsn: str | None) -> None:
    """tenantkit: schema-per-tenant multi-tenancy for PostgreSQL."""
    ctx.ensure_object(dict)
    ctx.obj["dsn"] = dsn


def dsn_option_value(ctx: click.Context) -> str | None:
    """The global ``--dsn`` / ``PGTENANTS_DSN`` value, or None when neither was given."""
    obj = ctx.find_root().obj
    value = obj.get("dsn") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value else None


def require_dsn(ctx: click.Context) -> str:
    """The global ``--dsn`` value; a usage error telling how to give one when it is missing."""
    dsn = dsn_option_value(ctx)
    if dsn is None:
        raise click.UsageError(
            "no database given: pass --dsn 'host=... dbname=...' or set PGTENANTS_DSN "
            "(`tenantkit server` starts a local one and prints the export line)."
        )
    return dsn


def _parse_settings(pairs: tuple[str, ...]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        settings[key.strip()] = value.strip()
    return settings


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (systemd, docker stop, kill) ends the command like Ctrl-C does: cleanly.
    raise KeyboardInterrupt


@main.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="TCP port [free one].")
@click.option(
    "--bin-dir",
    type=click.Path(file_okay=False, path_type=str),
    envvar="PGTENANTS_PG_BIN",
    default=None,
    help="Directory holding initdb and postgres [env: PGTENANTS_PG_BIN; else discovered].",
)
@click.option(
    "--user",
    default=None,
    envvar="PGTENANTS_PG_USER",
    help="Account to run PostgreSQL as when started as root [postgres, else nobody].",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Server setting, repeatable (e.g. --set max_connections=500).",
)
@click.option("--keep-data", is_flag=True, help="Keep the data directory after stopping.")
@click.option("--no-cache", is_flag=True, help="Run initdb instead of copying a cached cluster.")
def server(
    port: int | None,
    bin_dir: str | None,
    user: str | None,
    settings: tuple[str, ...],
    keep_data: bool,
    no_cache: bool,
) -> None:
    """Run a throw-away PostgreSQL for local development until Ctrl-C.

    Prints its DSN, URL and an `export PGTENANTS_DSN=...` line; everything is removed when it
    stops (unless --keep-data).
    """
    from ..server import EmbeddedServer

    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    embedded = EmbeddedServer(
        bin_dir=bin_dir,
        user=user,
        settings=_parse_settings(settings),
        cache=not no_cache,
        port=port,
        keep=keep_data,
    )
    try:
        try:
            embedded.start()
        except ServerError as exc:  # PostgresNotFound included: its message says what to do
            raise click.ClickException(str(exc)) from exc
        as_user = f" (running as {embedded.account})" if embedded.account else ""
        click.echo(
            f"PostgreSQL {embedded.version} ready in {embedded.startup_seconds or 0:.2f} s{as_user}"
        )
        click.echo(f"Data: {embedded.data_dir}")
        click.echo(f"Log: {embedded.log_path}")
        click.echo(f"DSN: {embedded.conninfo}")
        click.echo(f"URL: {embedded.url}")
        click.echo(f"export PGTENANTS_DSN={shlex.quote(embedded.conninfo)}")
        click.echo("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while embedded.running:
            time.sleep(0.2)
        try:
            log = embedded.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            log = ""
        raise click.ClickException(f"PostgreSQL stopped unexpectedly. Its log:\n{log}")
    except KeyboardInterrupt:
        click.echo("Stopping PostgreSQL...", err=True)
    finally:
        embedded.stop()
        signal.signal(signal.SIGTERM, previous)
    kept = f"; data kept in {embedded.data_dir}" if keep_data else ""
    click.echo(f"Stopped{kept}.", err=True)


from .migrate import drift, migrate  # noqa: E402 (they import require_dsn from this module)

main.add_command(migrate)
main.add_command(drift)

from .demo import demo  # noqa: E402

main.add_command(demo)

from .shell import shell  # noqa: E402
from .tenants import tenants  # noqa: E402

main.add_command(shell)
main.add_command(tenants)
