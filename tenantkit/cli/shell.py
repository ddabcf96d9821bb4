"""``tenantkit shell``: an interactive SQL prompt that sees the database as a tenant does.

Statements run on a connection bound to the current tenant (its schema first on the
``search_path``, then the shared schema), one transaction per statement. Backslash commands
switch tenant and inspect schemas. On a terminal it uses prompt_toolkit (history, completion,
SQL highlighting); otherwise it reads statements from standard input, so it can be scripted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from ..errors import TenantkitError
from . import require_dsn
from ._options import migrations_option, shared_schema_option

__all__ = ["ShellSession", "shell"]

_HELP = """\
Statements end with ';' and run in the current tenant's schema (then the shared schema).
  \\c [TENANT]     switch to TENANT (schema name or host); no argument: the shared schema
  \\tenants        list tenants and their domains
  \\dt             tables of the current schema, with estimated rows and sizes
  \\d TABLE        columns of TABLE
  \\plan           pending migrations (needs --migrations)
  \\?              this help
  \\q              quit (also Ctrl-D)"""


@dataclass
class ShellSession:
    """The shell's state and command handling, independent of the terminal front end.

    ``feed(line)`` takes one input line; complete statements and backslash commands run at
    once and print to ``console``. Returns False when the session should end.
    """

    tenancy: Any
    console: Console
    migrations_dir: str | None = None
    tenant: str | None = None
    _buffer: list[str] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        """``acme=> `` (``acme-> `` while a statement continues over several lines)."""
        name = self.tenant or self.tenancy.shared_schema
        return f"{name}{'->' if self._buffer else '=>'} "

    def use(self, target: str | None) -> None:
        """Make ``target`` (schema name or host) the current tenant; None: the shared schema."""
        if not target:
            self.tenant = None
            return
        try:
            found = self.tenancy.get_tenant(target)
        except TenantkitError:
            found = self.tenancy.get_tenant(host=target)
        self.tenant = None if found.is_public else found.schema

    def feed(self, line: str) -> bool:
        """Handle one line of input."""
        stripped = line.strip()
        if not self._buffer and stripped.startswith("\\"):
            return self._command(stripped)
        if stripped:
            self._buffer.append(line)
        if stripped.endswith(";"):
            statement = "\n".join(self._buffer)
            self._buffer.clear()
            self.run(statement)
        return True

    def finish(self) -> None:
        """Run a last statement given without a closing ';' (end of piped input)."""
        if self._buffer:
            statement = "\n".join(self._buffer)
            self._buffer.clear()
            self.run(statement)

    def run(self, statement: str) -> None:
        """Run one statement as the current tenant and print its result."""
        try:
            with self._connection() as conn:
                cur = conn.execute(statement.encode())
                while True:
                    # Several statements on one line give several results: show each.
                    if cur.description is None:
                        self.console.print(cur.statusmessage or "OK")
                    else:
                        self._print_rows([c.name for c in cur.description], cur.fetchall())
                    if not cur.nextset():
                        break
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            detail = f" ({diag.sqlstate})" if diag is not None and diag.sqlstate else ""
            self.console.print(f"[red]ERROR{detail}:[/] {str(exc).strip()}")

    def _connection(self) -> Any:
        if self.tenant is None:
            return self.tenancy.admin_connection()
        return self.tenancy.connection(self.tenant)

    def _print_rows(self, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> None:
        table = Table(*columns, show_lines=False, highlight=False)
        count = 0
        for row in rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
            count += 1
        self.console.print(table)
        self.console.print(f"({count} row{'s' if count != 1 else ''})")

    def _command(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        arg = arg.strip()
        handlers: dict[str, Callable[[str], None]] = {
            "\\c": self._cmd_connect,
            "\\tenants": self._cmd_tenants,
            "\\dt": self._cmd_tables,
            "\\d": self._cmd_describe,
            "\\plan": self._cmd_plan,
            "\\?": lambda _: self.console.print(_HELP, markup=False),
        }
        if name in ("\\q", "\\quit"):
            return False
        handler = handlers.get(name)
        if handler is None:
            self.console.print(f"[red]unknown command {name}[/]; \\? lists the commands")
            return True
        try:
            handler(arg)
        except (TenantkitError, psycopg.Error) as exc:
            self.console.print(f"[red]ERROR:[/] {exc}")
        return True

    def _cmd_connect(self, arg: str) -> None:
        self.use(arg or None)
        self.console.print(f"now working as {self.tenant or self.tenancy.shared_schema}")

    def _cmd_tenants(self, arg: str) -> None:
        domains: dict[int, list[str]] = {}
        for d in self.tenancy.domains():
            domains.setdefault(d.tenant_id, []).append(d.host + (" *" if d.is_primary else ""))
        table = Table("schema", "name", "state", "domains (* primary)", "created")
        for t in self.tenancy.tenants():
            table.add_row(
                t.schema,
                t.name,
                str(getattr(t.state, "value", t.state)),
                ", ".join(sorted(domains.get(t.id, []))),
                t.created_at.strftime("%Y-%m-%d %H:%M"),
            )
        self.console.print(table)

    def _schema(self) -> str:
        return self.tenant or str(self.tenancy.shared_schema)

    def _cmd_tables(self, arg: str) -> None:
        query = (
            "select c.relname, case c.relkind when 'r' then 'table' when 'p' then "
            "'partitioned table' when 'v' then 'view' when 'm' then 'materialized view' "
            "else c.relkind::text end, greatest(c.reltuples, 0)::bigint, "
            "pg_size_pretty(pg_total_relation_size(c.oid)) from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s "
            "and c.relkind in ('r', 'p', 'v', 'm') order by 1"
        )
        with self.tenancy.admin_connection() as conn:
            rows = conn.execute(query, (self._schema(),)).fetchall()
        self._print_rows(["table", "kind", "rows (est.)", "size"], rows)

    def _cmd_describe(self, arg: str) -> None:
        if not arg:
            self.console.print("usage: \\d TABLE")
            return
        query = (
            "select a.attname, format_type(a.atttypid, a.atttypmod), "
            "case when a.attnotnull then 'not null' else '' end, "
            "pg_get_expr(d.adbin, d.adrelid) from pg_attribute a "
            "join pg_class c on c.oid = a.attrelid "
            "join pg_namespace n on n.oid = c.relnamespace "
            "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
            "where n.nspname = %s and c.relname = %s and a.attnum > 0 "
            "and not a.attisdropped order by a.attnum"
        )
        with self.tenancy.admin_connection() as conn:
            rows = conn.execute(query, (self._schema(), arg)).fetchall()
        if not rows:
            self.console.print(f"no table {arg!r} in schema {self._schema()!r}")
            return
        self._print_rows(["column", "type", "nullable", "default"], rows)

    def _cmd_plan(self, arg: str) -> None:
        if self.migrations_dir is None:
            self.console.print("start the shell with --migrations DIR to plan migrations")
            return
        plan = self.tenancy.plan()
        if plan.is_empty:
            self.console.print(f"nothing pending in {len(plan.entries)} schemas")
            return
        table = Table("schema", "kind", "pending")
        for entry in plan.pending:
            table.add_row(entry.schema, entry.kind, ", ".join(entry.pending))
        self.console.print(table)


def _words(tenancy: Any) -> list[str]:
    """Completion words: SQL keywords, backslash commands, tenants and shared tables."""
    words = ["\\c", "\\tenants", "\\dt", "\\d", "\\plan", "\\q", "\\?"]
    words += [
        *("select", "from", "where", "insert", "into", "values", "update", "set", "delete"),
        *("returning", "join", "on", "group", "by", "order", "limit", "create", "table"),
        *("alter", "drop", "index", "begin", "commit", "rollback"),
    ]
    try:
        words += [t.schema for t in tenancy.tenants()]
        with tenancy.admin_connection() as conn:
            words += [
                r[0]
                for r in conn.execute(
                    sql.SQL("select tablename from pg_tables where schemaname = %s"),
                    (tenancy.shared_schema,),
                )
            ]
    except (TenantkitError, psycopg.Error):
        pass  # completion is a convenience: a registry that isn't installed must not stop us
    return words


def _interactive(session: ShellSession) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.lexers import PygmentsLexer
    from pygments.lexers.sql import PostgresLexer

    history = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    history = history / "tenantkit" / "shell_history"
    history.parent.mkdir(parents=True, exist_ok=True)
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(history)),
        lexer=PygmentsLexer(PostgresLexer),
        completer=WordCompleter(_words(session.tenancy), ignore_case=True),
    )
    session.console.print("tenantkit shell: \\? for help, \\q to quit")
    while True:
        try:
            line = prompt.prompt(session.prompt)
        except KeyboardInterrupt:
            continue  # like psql: Ctrl-C drops the line, Ctrl-D quits
        except EOFError:
            break
        if not session.feed(line):
            break


def _lines(stream: Any) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\n")


@click.command()
@click.argument("tenant", required=False)
@migrations_option(required=False, purpose=", for \\plan")
@shared_schema_option
@click.option("-c", "--command", "commands", multiple=True, help="Run this and exit (repeatable).")
@click.pass_context
def shell(
    ctx: click.Context,
    tenant: str | None,
    migrations_dir: str | None,
    shared_schema: str,
    commands: tuple[str, ...],
) -> None:
    """Open a SQL prompt working as TENANT (schema name or host; default: the shared schema).

    Reads statements from standard input when it is not a terminal, so
    `echo 'table notes;' | tenantkit shell acme` works in scripts.
    """
    from ..tenancy import Tenancy

    console = Console(highlight=False, soft_wrap=True)
    with Tenancy(
        require_dsn(ctx),
        shared_schema=shared_schema,
        migrations=migrations_dir,
        min_size=1,
        max_size=2,
    ) as tenancy:
        session = ShellSession(tenancy, console, migrations_dir=migrations_dir)
        try:
            session.use(tenant)
        except TenantkitError as exc:
            raise click.ClickException(str(exc)) from exc
        if commands:
            for command in commands:
                is_meta = command.lstrip().startswith("\\")
                session.feed(
                    command if is_meta or command.rstrip().endswith(";") else command + ";"
                )
                session.finish()
            return
        if sys.stdin.isatty() and sys.stdout.isatty():
            _interactive(session)
            return
        for line in _lines(sys.stdin):
            if not session.feed(line):
                break
        session.finish()
