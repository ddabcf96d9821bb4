"""Exit codes of the ``tenantkit`` command and the translation of errors into one-line messages.

Every command runs inside :func:`translated_errors` (the group does it), so a user error prints
``error: <what was wrong and what to do>`` on standard error and exits with a documented code,
never a traceback. Errors we do not know (a bug) keep their traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import IO, Any

import click

from ..errors import (
    DomainExists,
    DomainNotFound,
    InvalidHostname,
    InvalidSchemaName,
    NoTenantSelected,
    RegistryNotInstalled,
    SchemaExists,
    SchemaNotEmpty,
    SchemaNotFound,
    ServerError,
    TenantExists,
    TenantkitError,
    TenantNotFound,
)

__all__ = [
    "CliError",
    "CliUsageError",
    "ExitCode",
    "sql_error_text",
    "translated_errors",
    "usage_error",
]


class ExitCode(IntEnum):
    """What a ``tenantkit`` exit status means (documented in docs/cli.md)."""

    OK = 0
    #: The command ran and found a problem: a migration or a tenant's SQL failed, drift found.
    FAILED = 1
    #: Bad usage: unknown option, missing argument, invalid schema name or host.
    USAGE = 2
    #: Something named does not exist: tenant, host, schema, or the registry itself.
    NOT_FOUND = 3
    #: Something to be created exists already, or a schema to drop still holds tables.
    CONFLICT = 4
    #: No database to work on: server unreachable, login refused, no PostgreSQL binaries.
    UNAVAILABLE = 5
    #: Interrupted with Ctrl-C or SIGTERM.
    INTERRUPTED = 130


class CliError(click.ClickException):
    """A one-line user error with an exit code (printed as ``error: message``)."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(one_line(message))
        # click declares exit_code a ClassVar; an instance attribute shadows it at runtime.
        setattr(self, "exit_code", int(code))  # noqa: B010

    def show(self, file: IO[Any] | None = None) -> None:
        click.secho(f"error: {self.format_message()}", file=file, err=file is None, fg="red")


class CliUsageError(click.UsageError):
    """A usage error shown as click shows one (the usage line and where to find help), ending
    in one ``error: message`` line like every other error of the command."""

    def show(self, file: IO[Any] | None = None) -> None:
        color = self.ctx.color if self.ctx is not None else None
        if self.ctx is not None:
            help_names = self.ctx.command.get_help_option_names(self.ctx)
            hint = (
                f"Try '{self.ctx.command_path} {max(help_names, key=len)}' for help.\n"
                if help_names
                else ""
            )
            click.echo(f"{self.ctx.get_usage()}\n{hint}", file=file, err=file is None, color=color)
        click.secho(
            f"error: {self.format_message()}", file=file, err=file is None, fg="red", color=color
        )


def usage_error(exc: click.UsageError) -> CliUsageError:
    """``exc`` (click's own, or a command's) as a :class:`CliUsageError`."""
    if isinstance(exc, CliUsageError):
        return exc
    error = CliUsageError(exc.format_message(), exc.ctx)
    setattr(error, "exit_code", exc.exit_code)  # noqa: B010 (a ClassVar in click's stubs)
    return error


def one_line(message: str) -> str:
    """Fold a multi-line message (psycopg's, or a list of places) into one line."""
    parts = [p.strip() for p in str(message).strip().splitlines() if p.strip()]
    if not parts:
        return "unknown error"
    out = parts[0]
    for part in parts[1:]:
        if out.endswith(":"):
            out += " " + part.lstrip("-* ")
        elif out.endswith((".", "?", "!")) or part[:1].isupper():
            out += (" " if out.endswith((".", "?", "!")) else ". ") + part
        else:
            out += "; " + part.lstrip("-* ")
    return out


_CODES: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (InvalidSchemaName, ExitCode.USAGE),
    (InvalidHostname, ExitCode.USAGE),
    (TenantNotFound, ExitCode.NOT_FOUND),
    (DomainNotFound, ExitCode.NOT_FOUND),
    (SchemaNotFound, ExitCode.NOT_FOUND),
    (RegistryNotInstalled, ExitCode.NOT_FOUND),
    (NoTenantSelected, ExitCode.USAGE),
    (TenantExists, ExitCode.CONFLICT),
    (DomainExists, ExitCode.CONFLICT),
    (SchemaExists, ExitCode.CONFLICT),
    (SchemaNotEmpty, ExitCode.CONFLICT),
    (ServerError, ExitCode.UNAVAILABLE),
)


def sql_error_text(exc: BaseException) -> str:
    """One line for a failed statement: the server's message, detail and hint, and its
    SQLSTATE (``relation "nope" does not exist (SQLSTATE 42P01)``)."""
    import psycopg

    diag = exc.diag if isinstance(exc, psycopg.Error) else None
    primary = diag.message_primary if diag is not None else None
    if diag is None or not primary:
        return one_line(str(exc)) if str(exc).strip() else type(exc).__name__
    parts = [primary]
    if diag.message_detail:
        parts.append(diag.message_detail)
    if diag.message_hint:
        parts.append(f"hint: {diag.message_hint}")
    text = one_line("; ".join(p.strip().rstrip(".") for p in parts))
    return f"{text} (SQLSTATE {diag.sqlstate})" if diag.sqlstate else text


def _connection_message(exc: BaseException) -> str:
    text = one_line(str(exc)).removeprefix("connection failed: ").rstrip(". ")
    end = "" if text.endswith(("?", "!")) else "."
    return (
        f"cannot connect to PostgreSQL: {text}{end} Check --dsn, PGTENANTS_DSN or DATABASE_URL, "
        "or use --embedded for a throw-away server"
    )


#: What to do next, in CLI words (the library's messages name the Python API).
_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (TenantNotFound, "`tenantkit list` shows the tenants"),
    (DomainNotFound, "`tenantkit domains list` shows the hosts"),
)


#: Library messages name the Python call to make; the command names its own subcommand.
_HOST_TAKEN = re.compile(r"host '([^']+)' is already registered; remove_domain\(\) it first")


def _cli_message(exc: TenantkitError, *, embedded: bool = False) -> str:
    if isinstance(exc, RegistryNotInstalled):
        if embedded:
            # `tenantkit init` would install it on a server removed when the command ends.
            return (
                "the embedded server is empty and thrown away when the command ends, so there "
                "are no tenants to work on: start one that lasts with `tenantkit server` and "
                "pass its DSN, or `tenantkit demo --keep` for one with example tenants"
            )
        return "the tenant registry is not installed in this database: run `tenantkit init`"
    message = str(exc).replace(
        "use tenantkit.core.names.schema_name_from() to derive one",
        "`tenantkit create --name 'Display Name'` derives a valid one from a display name",
    )
    message = _HOST_TAKEN.sub(
        lambda m: (
            f"host '{m[1]}' is already registered: remove it first with "
            f"`tenantkit domains remove {m[1]}`, or pick another host"
        ),
        message,
    )
    for kind, hint in _HINTS:
        if isinstance(exc, kind):
            return f"{message.split(';')[0]}; {hint}"
    return message


def translate(exc: BaseException, *, embedded: bool = False) -> CliError | None:
    """The user-facing error for ``exc``, or None when it is not a user error (a bug).

    ``embedded``: the command works on a throw-away ``--embedded`` server (advice differs).
    """
    import psycopg

    if isinstance(exc, TenantkitError):
        for kind, code in _CODES:
            if isinstance(exc, kind):
                return CliError(_cli_message(exc, embedded=embedded), code)
        return CliError(_cli_message(exc, embedded=embedded))
    if isinstance(exc, psycopg.OperationalError) and (
        "connection" in str(exc) or getattr(exc, "sqlstate", None) in (None, "08001", "08006")
    ):
        return CliError(_connection_message(exc), ExitCode.UNAVAILABLE)
    if isinstance(exc, psycopg.Error):
        return CliError(sql_error_text(exc))
    return None


@contextmanager
def translated_errors(*, embedded: bool = False) -> Iterator[None]:
    """Turn tenantkit, psycopg, click and interrupt errors into :class:`CliError` exits, all
    printed as ``error: ...`` (click's own print ``Error:``)."""
    try:
        yield
    except (CliError, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except click.UsageError as exc:
        raise usage_error(exc) from None
    except click.ClickException as exc:
        plain = CliError(exc.format_message())
        setattr(plain, "exit_code", exc.exit_code)  # noqa: B010
        raise plain from None
    except KeyboardInterrupt:
        raise CliError("interrupted", ExitCode.INTERRUPTED) from None
    except Exception as exc:
        error = translate(exc, embedded=embedded)
        if error is None:
            raise
        raise error from exc
