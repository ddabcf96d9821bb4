"""The state of ``tenantkit shell`` and its statements, independent of the terminal front end.

:class:`ShellSession` takes input (:meth:`ShellSession.feed`), runs statements on a connection
from :meth:`Tenancy.connection` (so the tenant's ``search_path`` is set exactly as the library
sets it for an application) and hands backslash commands to ``_shell_commands``. The
prompt_toolkit front end is in ``_shell_prompt``; standard input and ``-c`` feed the same object.

Statements run one transaction each (committed at once) on a connection the shell keeps while
it stays in one tenant, so session settings and temporary tables last until ``\\use``.
``BEGIN`` opens an explicit transaction that lasts until ``COMMIT`` or ``ROLLBACK``, as in psql.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from rich.console import Console, RenderableType
from rich.text import Text

from ..core.models import Tenant
from ..errors import (
    RegistryNotInstalled,
    TenantkitError,
)
from ..introspection import describe as tk_inspect
from ._context import find_tenant
from ._shell_commands import CommandError, find_command
from ._shell_render import OutputFormat, ResultSet, error_line, error_position
from ._shell_sql import StatementBuffer, first_words, strip_comments

if TYPE_CHECKING:
    from ..core.tenancy import Tenancy

__all__ = ["CompletionNames", "ShellSession"]

_IDLE = pq.TransactionStatus.IDLE
_INERROR = pq.TransactionStatus.INERROR

_TX_BEGIN = re.compile(r"(begin|start\s+transaction)\b", re.IGNORECASE)
_TX_COMMIT = re.compile(r"(commit|end)(\s+(work|transaction))?\s*;?", re.IGNORECASE)
_TX_ROLLBACK = re.compile(r"(rollback|abort)(\s+(work|transaction))?\s*;?", re.IGNORECASE)
# Statements PostgreSQL refuses inside a transaction block: run without BEGIN, as psql does.
_NO_TRANSACTION = re.compile(
    r"(vacuum\b|(create|drop)\s+(database|tablespace)\b|alter\s+system\b"
    r"|create\s+(unique\s+)?index\s+concurrently\b|drop\s+index\s+concurrently\b"
    r"|reindex\b.*\bconcurrently\b|reindex\s+(database|system)\b"
    r"|(commit|rollback)\s+prepared\b)",
    re.IGNORECASE | re.DOTALL,
)
_COPY_STDOUT = re.compile(r"\bto\s+stdout\b", re.IGNORECASE)
_COPY_STDIN = re.compile(r"\bfrom\s+stdin\b", re.IGNORECASE)
_SEARCH_PATH = re.compile(r"\bsearch_path\b", re.IGNORECASE)
_DDL = frozenset({"create", "alter", "drop", "comment", "import"})
#: Rows shown for one result at the interactive prompt (all rows in scripts).
INTERACTIVE_MAX_ROWS = 1000


@dataclass(frozen=True)
class CompletionNames:
    """Names the completer offers: tenants (schemas and hosts), tables and columns visible to
    the current tenant."""

    tenants: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()


class ShellSession:
    """The shell's state and command handling.

    ``feed(text)`` takes input lines; complete statements and backslash commands run at once
    and print to ``out`` (results) and ``err`` (error lines). It returns False when the
    session should end (``\\q``, or the first error with ``stop_on_error``). ``failures``
    counts the statements and commands that failed.
    """

    def __init__(
        self,
        tenancy: Tenancy,
        out: Console,
        err: Console,
        *,
        migrations_dir: str | None = None,
        interactive: bool = False,
        stop_on_error: bool = False,
        own_application: str | None = None,
        output: OutputFormat = "table",
        separator: str = "|",
    ) -> None:
        self.tenancy = tenancy
        #: How results print (``-A`` / ``--csv``), and the field separator of unaligned rows.
        self.output: OutputFormat = output
        self.separator = separator
        self.out = out
        self.err = err
        self.migrations_dir = migrations_dir
        self.interactive = interactive
        self.stop_on_error = stop_on_error
        #: application_name of this shell's connections (left out of \\who), if it set one.
        self.own_application = own_application
        self.tenant: str | None = None
        self.timing = False
        self.failures = 0
        self._buffer = StatementBuffer()
        self._held: tuple[ExitStack, psycopg.Connection[Any]] | None = None
        self._explicit = False
        self._names: CompletionNames | None = None
        self._quiet_sqlstates: frozenset[str] = frozenset()
        #: Backends of this shell's own connections, left out of \\who.
        self.own_pids: set[int] = set()

    # -- prompt ---------------------------------------------------------------------------
    @property
    def schema(self) -> str:
        """The schema statements see first: the tenant's, or the shared schema."""
        return self.tenant or self.tenancy.shared_schema

    @property
    def pending(self) -> bool:
        """True while a statement is being typed over several lines."""
        return self._buffer.pending

    @property
    def in_transaction(self) -> bool:
        """True inside an explicit transaction (``BEGIN`` typed, no ``COMMIT`` yet)."""
        return self._explicit

    @property
    def prompt(self) -> str:
        """``acme=> ``; ``acme-> `` on continuation lines; ``=*>`` inside a transaction and
        ``=!>`` inside a failed one, as psql shows them."""
        if self.pending:
            mark = "-"
        elif self._explicit and self._held is not None:
            failed = self._held[1].info.transaction_status == _INERROR
            mark = "=!" if failed else "=*"
        else:
            mark = "="
        return f"{self.schema}{mark}> "

    # -- tenants --------------------------------------------------------------------------
    def lookup(self, name: str, *, hint: str = "\\tenants lists them") -> Tenant:
        """The tenant whose schema or host is ``name`` (the shared schema: the public
        tenant); ``TenantNotFound`` saying so otherwise."""
        return find_tenant(self.tenancy, name, hint=hint)

    def use(self, target: str | None, *, hint: str = "\\tenants lists them") -> None:
        """Work as ``target`` (schema name or host); None or the shared schema: no tenant."""
        if self._explicit:
            raise CommandError("a transaction is open: COMMIT or ROLLBACK it before switching")
        if not target or target.strip().lower() == self.tenancy.shared_schema:
            tenant = None
        else:
            found = self.lookup(target, hint=hint)
            tenant = None if found.is_public else found.schema
        if tenant != self.tenant or self._held is None:
            self._release()
            self.tenant = tenant
            self._names = None

    def close(self) -> None:
        """Roll back an open transaction and give the connection back."""
        if self._explicit and self._held is not None:
            self.err.print("open transaction rolled back", style="yellow")
        self._release()

    # -- input ----------------------------------------------------------------------------
    def feed(self, text: str) -> bool:
        """Handle input (one or several lines); False when the session should end."""
        for line in text.split("\n"):
            if not self._buffer.pending and line.lstrip().startswith("\\"):
                if not self._command(line.strip()):
                    return False
                continue
            for statement in self._buffer.feed(line):
                if not self.run(statement):
                    return False
        return True

    def finish(self) -> bool:
        """Run a last statement given without its ``;`` (end of piped input or of ``-c``)."""
        statement = self._buffer.flush()
        return True if statement is None else self.run(statement)

    def clear(self) -> None:
        """Drop the statement being typed (Ctrl-C at the prompt)."""
        self._buffer.clear()

    # -- statements -----------------------------------------------------------------------
    def run(self, statement: str) -> bool:
        """Run one statement as the current tenant and print its results; False when the
        session should stop (it failed and ``stop_on_error`` is set)."""
        started = time.perf_counter()
        try:
            self._statement(statement)
        except psycopg.Error as exc:
            self._sql_failed(exc, statement)
            return not self.stop_on_error
        except TenantkitError as exc:
            self._failed(str(exc))
            return not self.stop_on_error
        finally:
            self._quiet_sqlstates = frozenset()
        if self.timing:
            self.say(f"Time: {(time.perf_counter() - started) * 1000:.3f} ms")
        return True

    def _statement(self, statement: str) -> None:
        words = first_words(statement, 2)
        body = strip_comments(statement).strip()
        if _TX_BEGIN.match(body):
            self._begin(statement)
        elif _TX_COMMIT.fullmatch(body) or _TX_ROLLBACK.fullmatch(body):
            self._end_transaction(commit=bool(_TX_COMMIT.fullmatch(body)))
        elif words[:1] == ["copy"] and _COPY_STDIN.search(body):
            raise CommandError(
                "COPY FROM STDIN is not supported in the shell; use psql's \\copy, or "
                "`tenantkit run` with INSERT statements"
            )
        elif words[:1] == ["copy"] and _COPY_STDOUT.search(body):
            self._copy_out(statement)
        elif not self._explicit and _NO_TRANSACTION.match(body):
            self._outside_transaction(statement)
        else:
            self._execute(statement)
        if words[:1] and words[0] in _DDL:
            self._names = None
        if words[:1] == ["set"] and not self._explicit and _SEARCH_PATH.search(body):
            # The next transaction gets the tenant's path back, as in an application.
            self.err.print(
                "note: the shell sets the tenant's search_path on every transaction, so this "
                "lasts for this statement only; \\use switches tenant, BEGIN keeps a SET "
                "LOCAL for a transaction",
                style="yellow",
                markup=False,
            )

    def connection(self) -> psycopg.Connection[Any]:
        """The connection statements run on, bound to the current tenant (opened lazily)."""
        if self._held is None:
            stack = ExitStack()
            source: AbstractContextManager[psycopg.Connection[Any]] = (
                self.tenancy.admin_connection()
                if self.tenant is None
                else self.tenancy.connection(self.tenant)
            )
            conn = stack.enter_context(source)
            self.own_pids.add(conn.info.backend_pid)
            conn.add_notice_handler(self._notice)
            stack.callback(conn.remove_notice_handler, self._notice)
            self._held = (stack, conn)
        return self._held[1]

    def _release(self) -> None:
        held, self._held = self._held, None
        self._explicit = False
        if held is None:
            return
        stack, conn = held
        try:
            if not conn.closed and conn.info.transaction_status != _IDLE:
                conn.rollback()
        except psycopg.Error:
            pass  # a broken connection: the pool drops it
        stack.close()

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        if diag.sqlstate in self._quiet_sqlstates:
            return
        self.err.print(Text(f"{diag.severity}: {diag.message_primary}"), style="yellow")

    def _execute(self, statement: str) -> None:
        conn = self.connection()
        try:
            cursor = conn.execute(statement)
            results = []
            while True:
                results.append(ResultSet(cursor, conn.info.encoding))
                if not cursor.nextset():
                    break
            if not self._explicit:
                conn.commit()
        except BaseException:
            self.after_failure(conn)
            raise
        limit = INTERACTIVE_MAX_ROWS if self.interactive and self.output == "table" else None
        for result in results:
            self._render(result, limit)

    def _render(self, result: ResultSet, max_rows: int | None = None) -> None:
        result.render(self.out, max_rows=max_rows, output=self.output, separator=self.separator)

    def after_failure(self, conn: psycopg.Connection[Any]) -> None:
        """Clean up after a failed statement: roll back unless inside an explicit
        transaction (which the user ends), drop a connection the server closed."""
        if conn.closed:
            if self._explicit:
                self.err.print("the connection was lost, and the open transaction with it")
            self._release()
        elif not self._explicit:
            try:
                conn.rollback()
            except psycopg.Error:
                self._release()

    def _begin(self, statement: str) -> None:
        if self._explicit:
            self._execute(statement)  # the server warns that a transaction is in progress
            return
        conn = self.connection()
        self._explicit = True
        # psycopg sends its own BEGIN (carrying the tenant's path) before the user's, which
        # then only applies its options: hide the server's "already in progress" warning.
        self._quiet_sqlstates = frozenset({"25001"})
        try:
            conn.execute(statement)
        except BaseException:
            self.after_failure(conn)
            raise
        self.say("BEGIN")

    def _end_transaction(self, *, commit: bool) -> None:
        if not self._explicit or self._held is None:
            self.err.print("WARNING: there is no transaction in progress", style="yellow")
            return
        conn = self._held[1]
        failed = conn.info.transaction_status == _INERROR
        self._explicit = False
        try:
            if commit and not failed:
                conn.commit()
            else:
                conn.rollback()
        except BaseException:
            self.after_failure(conn)
            raise
        self.say("COMMIT" if commit and not failed else "ROLLBACK")

    def _outside_transaction(self, statement: str) -> None:
        conn = self.connection()
        try:
            with conn.transaction():
                pass  # an empty transaction: its BEGIN carries the tenant's path
            conn.autocommit = True
            try:
                cursor = conn.execute(statement)
                result = ResultSet(cursor, conn.info.encoding)
            finally:
                conn.autocommit = False
        except BaseException:
            self.after_failure(conn)
            raise
        self._render(result)

    def _copy_out(self, statement: str) -> None:
        conn = self.connection()
        self.out.file.flush()
        stream = sys.stdout.buffer
        try:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for data in copy:
                    stream.write(bytes(data))
            stream.flush()
            if not self._explicit:
                conn.commit()
        except BaseException:
            self.after_failure(conn)
            raise

    def search_path(self) -> str:
        """The ``search_path`` in effect for statements now, as the server reports it."""
        conn = self.connection()
        try:
            row = conn.execute("select pg_catalog.current_setting('search_path')").fetchone()
            if not self._explicit:
                conn.commit()
        except BaseException:
            self.after_failure(conn)
            raise
        return str(row[0]) if row else ""

    def say(self, output: str | RenderableType) -> None:
        """Print to standard output; a string as plain text (never read as rich markup)."""
        self.out.print(Text(output) if isinstance(output, str) else output)

    def _sql_failed(self, exc: psycopg.Error, statement: str | None = None) -> None:
        self.failures += 1
        self.err.print(Text(error_line(exc)), style="red")
        # Where it went wrong, as psql shows it: the line and a caret under the spot.
        for line in error_position(statement, exc) if statement else ():
            self.err.out(line, highlight=False)

    def _failed(self, message: str) -> None:
        self.failures += 1
        self.err.print(Text(f"error: {message}"), style="red")

    # -- inspection -----------------------------------------------------------------------
    @contextmanager
    def inspection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for catalog queries, bound to the current tenant.

        Inside an explicit transaction it is the transaction's own connection: it sees the
        transaction's uncommitted changes and cannot wait on the locks they hold.
        """
        if self._explicit and self._held is not None:
            yield self._held[1]
            return
        source: AbstractContextManager[psycopg.Connection[Any]] = (
            self.tenancy.admin_connection()
            if self.tenant is None
            else self.tenancy.connection(self.tenant)
        )
        with source as conn:
            self.own_pids.add(conn.info.backend_pid)
            yield conn

    def path_schemas(self) -> list[str]:
        """The schemas on the current tenant's path, in order (``pg_temp`` left out)."""
        first = [self.tenant] if self.tenant else []
        rest = [self.tenancy.shared_schema, *self.tenancy.extra_schemas]
        return [*first, *(s for s in rest if s not in first)]

    def tenant_schemas(self) -> list[str]:
        """Schemas of the registered tenants (the shared schema left out)."""
        return [t.schema for t in self.tenancy.tenants()]

    def completion_names(self) -> CompletionNames:
        """Names for completion, read once and again after ``\\use`` or DDL."""
        if self._names is not None:
            return self._names
        tenants: tuple[str, ...] = ()
        hosts: tuple[str, ...] = ()
        try:
            tenants = (
                self.tenancy.shared_schema,
                *(t.schema for t in self.tenancy.tenants()),
            )
            hosts = tuple(d.host for d in self.tenancy.domains())
        except (TenantkitError, psycopg.Error):
            pass  # no registry yet: still complete tables
        tables: tuple[str, ...] = ()
        columns: tuple[str, ...] = ()
        try:
            with self.inspection() as conn:
                tables = tuple(
                    dict.fromkeys(t.name for t in tk_inspect.list_tables(conn, self.path_schemas()))
                )
                rows = conn.execute(
                    "select distinct a.attname from pg_catalog.pg_attribute a "
                    "join pg_catalog.pg_class c on c.oid = a.attrelid "
                    "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
                    "where n.nspname = any(%s) and c.relkind in ('r', 'p', 'v', 'm', 'f') "
                    "and a.attnum > 0 and not a.attisdropped order by 1",
                    (self.path_schemas(),),
                ).fetchall()
                columns = tuple(r[0] for r in rows)
        except psycopg.Error:
            pass  # completion must never break the prompt
        self._names = CompletionNames(tenants, hosts, tables, columns)
        return self._names

    # -- backslash commands ---------------------------------------------------------------
    def _command(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        command = find_command(name)
        if command is None:
            self._failed(f"unknown command {name}; \\? lists the commands")
            return not self.stop_on_error
        if command.run is None:
            return False  # \\q
        try:
            command.run(self, arg.strip())
        except RegistryNotInstalled:
            self._failed(
                "the tenant registry is not installed in this database: run `tenantkit init`"
            )
            return not self.stop_on_error
        except (TenantkitError, ValueError) as exc:
            self._failed(str(exc))
            return not self.stop_on_error
        except psycopg.Error as exc:
            self._sql_failed(exc)
            return not self.stop_on_error
        return True
