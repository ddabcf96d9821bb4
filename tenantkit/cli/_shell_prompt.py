"""The interactive front end of ``tenantkit shell`` (prompt_toolkit).

History is kept per statement (a statement typed over several lines comes back whole) in
``$XDG_STATE_HOME/tenantkit/shell_history``. Completion offers backslash commands, tenant
names and hosts after ``\\use``, ``\\diff`` and ``\\drift``, and the current tenant's tables
after ``FROM``, ``JOIN``, ``\\d`` and the like; its names are read again after ``\\use`` and DDL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from ._shell_commands import COMMANDS
from ._shell_session import CompletionNames, ShellSession

__all__ = ["ShellCompleter", "history_path", "run_interactive"]

#: Keywords after which a table name comes.
_TABLE_CONTEXT = frozenset(
    {"from", "join", "into", "update", "table", "truncate", "describe", "analyze", "vacuum"}
)
KEYWORDS = (
    "select", "from", "where", "and", "or", "not", "null", "is", "in", "like", "ilike",
    "between", "exists", "insert", "into", "values", "update", "set", "delete", "returning",
    "join", "left", "right", "inner", "outer", "full", "cross", "on", "using", "group", "by",
    "having", "order", "asc", "desc", "limit", "offset", "distinct", "union", "all",
    "intersect", "except", "with", "as", "case", "when", "then", "else", "end", "create",
    "table", "index", "view", "alter", "add", "column", "drop", "rename", "to", "truncate",
    "begin", "commit", "rollback", "savepoint", "explain", "analyze", "vacuum", "show",
    "count", "sum", "avg", "min", "max", "coalesce", "now", "default", "primary", "key",
    "references", "unique", "check", "constraint", "if", "cascade", "copy", "stdout",
)  # fmt: skip


def history_path() -> Path:
    """``$XDG_STATE_HOME/tenantkit/shell_history`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tenantkit" / "shell_history"


class _StatementHistory(History):
    """Wraps a history so entries are whole statements, added by the shell (the prompt's own
    per-line additions are ignored)."""

    def __init__(self, inner: History) -> None:
        super().__init__()
        self._inner = inner

    def load_history_strings(self) -> Iterable[str]:
        return self._inner.load_history_strings()

    def store_string(self, string: str) -> None:
        self._inner.store_string(string)

    def append_string(self, string: str) -> None:
        """Ignored: the prompt calls this for every line."""

    def add(self, entry: str) -> None:
        """Keep ``entry`` (a whole statement or command) in memory and on disk."""
        History.append_string(self, entry)


def _open_history() -> _StatementHistory:
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        inner: History = FileHistory(str(path))
    except OSError:  # a read-only home: keep history for this session only
        inner = InMemoryHistory()
    return _StatementHistory(inner)


def _matches(word: str, candidates: Iterable[str], *, keywords: bool = False) -> Iterator[str]:
    low = word.lower()
    seen: set[str] = set()
    for candidate in candidates:
        if candidate in seen or not candidate.lower().startswith(low):
            continue
        seen.add(candidate)
        yield candidate.upper() if keywords and word[:1].isupper() else candidate


class ShellCompleter(Completer):
    """Completion for the shell; ``names`` gives the current :class:`CompletionNames`
    (cached by the session, read again after ``\\use`` or DDL)."""

    def __init__(self, names: Callable[[], CompletionNames]) -> None:
        self._names = names

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        """Completions for the word before the cursor."""
        before = document.text_before_cursor
        word = re.search(r'[\w\\."$]*$', before)
        current = word.group() if word else ""
        start = -len(current)
        stripped = before.lstrip()
        if stripped.startswith("\\") and " " not in stripped:
            commands = [n for c in COMMANDS for n in c.names]
            for name in _matches(current, commands):
                yield Completion(name, start)
            return
        if stripped.startswith("\\"):
            command = next((c for c in COMMANDS if stripped.split()[0] in c.names), None)
            if command is None or not command.completes:
                return
            names = self._names()
            pool = (
                [*names.tenants, *(names.hosts if command.names[0] == "\\use" else ())]
                if command.completes == "tenant"
                else names.tables
            )
            for name in _matches(current, pool):
                yield Completion(name, start)
            return
        previous = re.findall(r"[A-Za-z_]+", before[: len(before) - len(current)])
        names = self._names()
        if previous and previous[-1].lower() in _TABLE_CONTEXT:
            pool = list(names.tables)
            keywords = False
        elif current:
            pool = [*KEYWORDS, *names.tables, *names.columns]
            keywords = True
        else:
            return  # nothing typed and no table expected: offer nothing rather than everything
        for name in _matches(current, pool, keywords=keywords):
            yield Completion(name, start)


def run_interactive(session: ShellSession, *, banner: str) -> None:
    """Read and run input at a prompt until ``\\q`` or Ctrl-D."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.lexers import PygmentsLexer
    from pygments.lexers.sql import PostgresLexer

    history = _open_history()

    def continuation(width: int, line_number: int, wrap_count: int) -> Any:
        return f"{session.schema}-> ".rjust(width)

    prompt: PromptSession[str] = PromptSession(
        history=history,
        lexer=PygmentsLexer(PostgresLexer),
        completer=ShellCompleter(session.completion_names),
        complete_while_typing=False,
        prompt_continuation=continuation,
    )
    session.say(banner)
    lines: list[str] = []
    while True:
        try:
            line = prompt.prompt(lambda: session.prompt)
        except KeyboardInterrupt:
            session.clear()  # like psql: Ctrl-C drops what was typed, Ctrl-D quits
            lines.clear()
            continue
        except EOFError:
            break
        lines.append(line)
        try:
            going_on = session.feed(line)
        except KeyboardInterrupt:
            session.err.print("cancelled", style="yellow")
            going_on = True
        if not session.pending:
            entry = "\n".join(lines).strip()
            lines.clear()
            if entry:
                history.add(entry)
        if not going_on:
            break
