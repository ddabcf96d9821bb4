"""What a psycopg connection sent, from a libpq trace: round trips and statements.

The one reader of libpq traces for the whole suite: :func:`traced` (a context manager over a
``pgconn``, for sync and async code alike) and :func:`wire` (around one action) give the
frontend messages as ``(kind, text)`` pairs, and :class:`Wire` counts round trips and
statements from them.
"""

from __future__ import annotations

import ctypes
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import pq

# A traced Parse message: the statement's name, then its text, both quoted.
_PARSE = re.compile(r'\s*"[^"]*"\s+"(.*)"\s+\d+')


@dataclass
class Wire:
    """Messages the client sent while an action ran."""

    messages: list[tuple[str, str]]

    @property
    def round_trips(self) -> int:
        """Times the client waited for the server.

        A simple Query is one wait. In pipeline mode psycopg waits once per Flush (the Syncs
        before it are only queued); outside a pipeline each Sync is a wait.
        """
        waits = 0
        syncs = 0
        for kind, _ in self.messages:
            if kind == "Flush":
                waits += 1
                syncs = 0
            elif kind == "Sync":
                syncs += 1
            elif kind == "Query":
                waits += 1 + syncs
                syncs = 0
        return waits + syncs

    @property
    def texts(self) -> list[str]:
        """SQL the client sent (simple queries and parsed statements)."""
        return [text for kind, text in self.messages if kind in ("Query", "Parse")]

    @property
    def app_statements(self) -> list[str]:
        """Statements that are not tenantkit's path handling."""
        out = []
        for text in self.texts:
            for part in text.split("; "):
                head = part.strip().upper()
                if head.startswith(
                    (
                        "BEGIN",
                        "COMMIT",
                        "SET ",
                        "SET\t",
                        "DISCARD",
                        "SELECT PG_CATALOG.PG_BACKEND_PID",
                    )
                ):
                    continue
                if part.strip():
                    out.append(part.strip())
        return out


@contextmanager
def traced(pgconn: pq.abc.PGconn) -> Iterator[list[tuple[str, str]]]:
    """The frontend messages ``pgconn`` sent in the block, as ``(kind, text)`` (filled on
    exit): the SQL of ``Query`` and ``Parse``, an empty text for the others."""
    messages: list[tuple[str, str]] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield messages
        finally:
            pgconn.untrace()
            ctypes.CDLL(None).fflush(None)  # libpq traces through a buffered FILE*
        trace.seek(0)
        for line in trace:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0] != "F":
                continue
            kind = parts[2]
            text = ""
            if kind == "Query" and len(parts) > 3:
                text = parts[3].strip()[1:-1]
            elif kind == "Parse" and len(parts) > 3:
                match = _PARSE.match(parts[3])
                text = match.group(1) if match else parts[3]
            messages.append((kind, text))


def wire(raw: Any, action: Callable[[], Any]) -> Wire:
    """Run ``action`` and return what ``raw`` (a psycopg connection) sent meanwhile."""
    with traced(raw.pgconn) as messages:
        action()
    return Wire(messages)
