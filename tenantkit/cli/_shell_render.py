"""Rendering for ``tenantkit shell``: result tables, sizes, durations, error lines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._errors import sql_error_text

__all__ = ["ResultSet", "error_line", "format_bytes", "format_duration", "table"]

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

    def render(self, console: Console, *, max_rows: int | None = None) -> None:
        """Print the rows as a table and their count, or the command status."""
        if self.columns is None:
            console.print(Text(self.status))
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
