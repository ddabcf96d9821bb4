"""SQL text handling for ``tenantkit shell`` (pure): where statements end, what they start with.

A statement ends at a ``;`` outside quotes, comments, dollar quoting and parentheses, as in
psql, so a function body or a rule spanning lines reaches the server whole.
"""

from __future__ import annotations

import re

__all__ = ["StatementBuffer", "first_words", "is_blank", "split_statements", "strip_comments"]

_DOLLAR = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][\w\x80-\U0010ffff]*)?\$")
_IDENT_CHAR = re.compile(r"[\w$\x80-\U0010ffff]")


def _scan(text: str) -> tuple[list[int], bool]:
    """Offsets of the statement-ending semicolons, and whether the text ends inside a quote,
    comment or dollar quote."""
    ends: list[int] = []
    i, n, depth = 0, len(text), 0
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            if j < 0:
                return ends, False  # a line comment ends with the line: nothing open
            i = j + 1
            continue
        if ch == "/" and text.startswith("/*", i):
            nest, i = 1, i + 2
            while i < n and nest:
                if text.startswith("/*", i):
                    nest, i = nest + 1, i + 2
                elif text.startswith("*/", i):
                    nest, i = nest - 1, i + 2
                else:
                    i += 1
            if nest:
                return ends, True
            continue
        if ch == "'":
            escapes = (
                i > 0 and text[i - 1] in "eE" and (i < 2 or not _IDENT_CHAR.match(text[i - 2]))
            )
            i += 1
            while i < n:
                if escapes and text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                        continue
                    break
                i += 1
            if i >= n:
                return ends, True
            i += 1
            continue
        if ch == '"':
            j = text.find('"', i + 1)
            while j >= 0 and text.startswith('""', j):
                j = text.find('"', j + 2)
            if j < 0:
                return ends, True
            i = j + 1
            continue
        if ch == "$" and not (i > 0 and _IDENT_CHAR.match(text[i - 1])):
            m = _DOLLAR.match(text, i)
            if m is not None:
                j = text.find(m.group(), m.end())
                if j < 0:
                    return ends, True
                i = j + len(m.group())
                continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch == ";" and depth == 0:
            ends.append(i)
        i += 1
    return ends, False


def strip_comments(text: str) -> str:
    """``text`` without its leading whitespace and comments."""
    out: list[str] = []
    rest = text
    while True:
        rest = rest.lstrip()
        if rest.startswith("--"):
            nl = rest.find("\n")
            rest = "" if nl < 0 else rest[nl + 1 :]
        elif rest.startswith("/*"):
            end = rest.find("*/")
            rest = "" if end < 0 else rest[end + 2 :]
        else:
            out.append(rest)
            return "".join(out)


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing but whitespace, comments and semicolons."""
    return not strip_comments(text).strip(" \t\r\n;")


def split_statements(text: str) -> tuple[list[str], str]:
    """Complete statements of ``text`` (with their ``;``) and the unfinished rest."""
    ends, _ = _scan(text)
    statements: list[str] = []
    start = 0
    for end in ends:
        piece = text[start : end + 1]
        start = end + 1
        if not is_blank(piece):
            statements.append(piece.strip())
    return statements, text[start:]


def first_words(statement: str, count: int = 2) -> list[str]:
    """The first ``count`` words of ``statement`` in lower case, comments skipped."""
    return [w.lower() for w in re.findall(r"[A-Za-z_]+", strip_comments(statement))[:count]]


class StatementBuffer:
    """Collects input lines and hands out each statement once its ``;`` arrives."""

    def __init__(self) -> None:
        self._text = ""

    @property
    def pending(self) -> bool:
        """True while an unfinished statement waits for more lines."""
        return bool(self._text) and (not is_blank(self._text) or _scan(self._text)[1])

    def feed(self, line: str) -> list[str]:
        """Add one line; the statements it completed."""
        self._text = f"{self._text}\n{line}" if self._text else line
        statements, self._text = split_statements(self._text)
        if is_blank(self._text) and not _scan(self._text)[1]:
            self._text = ""
        return statements

    def flush(self) -> str | None:
        """The unfinished statement, if any (end of input), and empty the buffer."""
        text, self._text = self._text, ""
        return None if is_blank(text) else text.strip()

    def clear(self) -> None:
        """Forget the unfinished statement (Ctrl-C at the prompt)."""
        self._text = ""
