"""Exit codes of the ``tenantkit`` command and the translation of errors into one-line messages.

Every command runs inside :func:`translated_errors` (the group does it), so a user error prints
``error: <what was wrong and what to do>`` on standard error and exits with a documented code,
never a traceback. Errors we do not know (a bug) keep their traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import IO, Any

import click
import psycopg

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

__all__ = ["CliError", "ExitCode", "sql_error_text", "translated_errors"]


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


def _connection_message(exc: psycopg.OperationalError) -> str:
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


def _cli_message(exc: TenantkitError) -> str:
    if isinstance(exc, RegistryNotInstalled):
        return "the tenant registry is not installed in this database: run `tenantkit init`"
    message = str(exc).replace(
        "use tenantkit.names.schema_name_from() to derive one",
        "`tenantkit create --name 'Display Name'` derives a valid one from a display name",
    )
    for kind, hint in _HINTS:
        if isinstance(exc, kind):
            return f"{message.split(';')[0]}; {hint}"
    return message


def translate(exc: BaseException) -> CliError | None:
    """The user-facing error for ``exc``, or None when it is not a user error (a bug)."""
    if isinstance(exc, TenantkitError):
        for kind, code in _CODES:
            if isinstance(exc, kind):
                return CliError(_cli_message(exc), code)
        return CliError(_cli_message(exc))
    if isinstance(exc, psycopg.OperationalError) and (
        "connection" in str(exc) or getattr(exc, "sqlstate", None) in (None, "08001", "08006")
    ):
        return CliError(_connection_message(exc), ExitCode.UNAVAILABLE)
    if isinstance(exc, psycopg.Error):
        return CliError(sql_error_text(exc))
    return None


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn tenantkit, psycopg and interrupt errors into :class:`CliError` exits."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except KeyboardInterrupt:
        raise CliError("interrupted", ExitCode.INTERRUPTED) from None
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc
