"""Rendering for ``tenantkit shell``: result tables, sizes, durations, error lines."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._errors import sql_error_text

__all__ = [
    "OutputFormat",
    "ResultSet",
    "error_line",
    "error_position",
    "format_bytes",
    "format_duration",
    "table",
]

#: How results print: ``table`` (boxes, for people), ``unaligned`` (psql's ``-A``: one line
#: per row, fields joined by a separator) or ``csv`` (psql's ``--csv``).
OutputFormat = Literal["table", "unaligned", "csv"]

#: Type OIDs shown right-aligned (numbers): int2, int4, int8, oid, float4, float8, money,
#: numeric.
_NUMERIC_OIDS = frozenset({20, 21, 23, 26, 700, 701, 790, 1700})
NULL = "<null>"


def format_bytes(size: int) -> str:
    """``123 kB`` style, like PostgreSQL's ``pg_size_pretty`` (powers of 1024)."""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(value) < 10 * 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(delta: timedelta | None) -> str:
    """``4s``, ``3m 12s``, ``2h 5m``, ``3d 4h``: how long, to a useful precision."""
    if delta is None:
        return ""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    right: Sequence[str] = (),
    keep: Sequence[str] = (),
) -> Table:
    """A rich table whose cells are plain text (a value is never read as rich markup).

    ``right`` columns are right-aligned (numbers); ``keep`` columns do not wrap, so on a
    narrow terminal the others wrap first.
    """
    out = Table(highlight=False)
    for column in columns:
        out.add_column(
            Text(column),
            justify="right" if column in right else "left",
            no_wrap=column in keep,
            overflow="fold",
        )
    for row in rows:
        out.add_row(*(v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row))
    return out


class ResultSet:
    """One result of a statement, kept as the server's text so values print as psql prints
    them (``t``, ``{1,2}``, ``1 day``), not as Python reprs."""

    def __init__(self, cursor: psycopg.Cursor[Any], encoding: str) -> None:
        self.status = cursor.statusmessage or ""
        description = cursor.description
        self.columns = [c.name for c in description] if description else None
        self.numeric = [c.type_code in _NUMERIC_OIDS for c in description or ()]
        self.rows: list[list[str | None]] = []
        result = cursor.pgresult
        if self.columns is not None and result is not None:
            for r in range(result.ntuples):
                row: list[str | None] = []
                for c in range(result.nfields):
                    value = result.get_value(r, c)
                    row.append(None if value is None else value.decode(encoding, "replace"))
                self.rows.append(row)

    def render(
        self,
        console: Console,
        *,
        max_rows: int | None = None,
        output: OutputFormat = "table",
        separator: str = "|",
    ) -> None:
        """Print the rows and their count (a table, or unaligned lines), or the command
        status. CSV prints the header and rows only, ready for another program."""
        if self.columns is None:
            console.print(Text(self.status))
            return
        if output == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(self.columns)
            writer.writerows(["" if v is None else v for v in row] for row in self.rows)
            console.out(buffer.getvalue(), end="", highlight=False)
            return
        if output == "unaligned":
            lines = [separator.join(self.columns)]
            lines += [separator.join("" if v is None else v for v in row) for row in self.rows]
            count = len(self.rows)
            lines.append(f"({count} row{'' if count == 1 else 's'})")
            console.out("\n".join(lines), highlight=False)
            return
        shown = self.rows if max_rows is None else self.rows[:max_rows]
        right = [c for c, num in zip(self.columns, self.numeric, strict=True) if num]
        cells = [[Text(NULL, style="dim") if v is None else Text(v) for v in row] for row in shown]
        console.print(table(self.columns, cells, right=right))
        count = len(self.rows)
        extra = f", first {len(shown)} shown" if len(shown) < count else ""
        console.print(Text(f"({count} row{'' if count == 1 else 's'}{extra})"))


def error_line(exc: BaseException) -> str:
    """One line for a failed statement, as the server rates it
    (``ERROR: relation "nope" does not exist (SQLSTATE 42P01)``)."""
    diag = exc.diag if isinstance(exc, psycopg.Error) else None
    severity = (diag.severity if diag is not None and diag.message_primary else None) or "ERROR"
    return f"{severity}: {sql_error_text(exc)}"


def error_position(statement: str, exc: BaseException) -> list[str]:
    """Where in ``statement`` the server found the error, as psql shows it: the line with
    ``LINE n:`` before it and a caret under the spot; empty when the error has no position."""
    diag = exc.diag if isinstance(exc, psycopg.Error) else None
    position = diag.statement_position if diag is not None else None
    if not position or not position.isdigit():
        return []
    offset = int(position) - 1  # the server counts characters, from 1
    if not 0 <= offset <= len(statement):
        return []
    start = statement.rfind("\n", 0, offset) + 1
    end = statement.find("\n", offset)
    line = statement[start : end if end >= 0 else len(statement)].replace("\t", " ")
    column = offset - start
    # A long line is cut around the spot, as psql does, so the caret stays on screen.
    width = 72
    if len(line) > width:
        left = max(0, min(column - width // 2, len(line) - width))
        shown = line[left : left + width]
        column -= left
        if left > 0:
            shown, column = "..." + shown, column + 3
        if left + width < len(line):
            shown += "..."
        line = shown
    prefix = f"LINE {statement.count(chr(10), 0, start) + 1}: "
    return [prefix + line, " " * (len(prefix) + column) + "^"]
