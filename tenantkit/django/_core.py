"""The private parts of tenantkit's core that the Django backend relies on, in one place.

The backend configures and binds :class:`tenantkit.TenantConnection` objects itself (Django
creates its connections, not a ``Tenancy``), so it needs the connection's bookkeeping that
``Tenancy`` uses internally. Everything private is reached here and nowhere else in
``tenantkit.django``, through the module that defines the public class (the core is being
reorganised; the public class always knows where it lives).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from psycopg import pq

import tenantkit

__all__ = [
    "TenantConnection",
    "TenantCursor",
    "bind",
    "configure",
    "connection_module",
    "discarded",
    "is_tenant_connection",
    "learn_session",
    "note_statement",
    "path_holds",
    "rearm",
    "rebind",
    "unbind_for_statement",
]

TenantConnection = tenantkit.TenantConnection


def connection_module() -> ModuleType:
    """The module defining :class:`tenantkit.TenantConnection`."""
    return sys.modules[TenantConnection.__module__]


_mod = connection_module()
#: The cursor class tenantkit's connections use (lets the connection check transaction starts).
TenantCursor: type[Any] = _mod.TenantCursor
_TenantState: type[Any] = _mod._TenantState


def is_tenant_connection(conn: object) -> bool:
    """Whether ``conn`` is one of tenantkit's tenant connections."""
    return isinstance(conn, _TenantState)


def configure(
    conn: Any, neutral: bytes, base: tuple[str, ...], *, pgbouncer: bool, session_path: bool
) -> None:
    """Configure a tenant connection as ``Tenancy`` does for its pool's connections.

    ``session_path``: remember the session's path and send it only when it changes (the
    backend sees every statement of its connections; see ``tenantkit.core._connection``).
    """
    conn._tk_configure(
        neutral, base, strict=False, pgbouncer=pgbouncer, prepare=None, session_path=session_path
    )


def path_holds(conn: Any) -> bool:
    """Whether the connection's session path is known to be the one it wants, with nothing
    to discard: its next autocommit statement needs nothing in front of it."""
    session = conn._tk_session
    return (
        session is not None
        and not conn._tk_discard
        and session == (conn._tk_want or conn._tk_neutral)
    )


def learn_session(conn: Any, path: bytes) -> None:
    """Record that ``path`` was set for the session by a statement that succeeded (sent in
    front of a statement in one implicit transaction), unless that statement may change it
    too (as :func:`note_statement` or the cursor hook found)."""
    if conn._tk_cache and not conn._tk_tainted:
        conn._tk_session = path


def bind(conn: Any, path: bytes | None) -> None:
    """Bind ``conn`` to ``path`` for its next statements (a change of hands or tenant)."""
    conn._tk_bind(path)


def discarded(conn: Any) -> None:
    """Record that a statement which discarded temporary objects (in autocommit) succeeded.

    ``TenantConnection`` clears its discard flag itself except in pipeline mode, where it
    cannot see the outcome; the backend sees it and tells it here.
    """
    conn._tk_discard = False


def note_statement(conn: Any, query: Any) -> None:
    """What the connection's cursor hook does with a statement's text in ``session_path``
    mode (see :func:`learn_session`), for a statement that runs with a prefix of ours."""
    if conn._tk_cache:
        _mod.note_statement(conn, query)


def unbind_for_statement(conn: Any) -> tuple[Any, ...]:
    """Let an autocommit statement that carries its own ``SET LOCAL search_path`` run.

    ``TenantConnection`` sends a session ``SET search_path`` before each autocommit statement
    (a round trip; in pgbouncer mode it refuses autocommit). A statement sent as one
    simple-query message ``SET LOCAL search_path TO ...; <statement>`` (one implicit
    transaction) needs neither: until :func:`rebind` the connection looks unbound, so its
    hook sends nothing (the pooler check still runs). Returns what ``rebind`` restores.
    """
    saved = (conn._tk_want, conn._tk_neutral, conn._tk_pgbouncer, conn._tk_strict, conn._tk_cache)
    conn._tk_want = conn._tk_neutral = None
    conn._tk_pgbouncer = conn._tk_strict = False
    # The prefix sets the path: unknown until the message succeeds (learn_session), and
    # the hook need not read our own prefix (note_statement read the statement already).
    conn._tk_cache = False
    conn._tk_session = None
    return saved


def rebind(conn: Any, saved: tuple[Any, ...]) -> None:
    """Undo :func:`unbind_for_statement`."""
    (conn._tk_want, conn._tk_neutral, conn._tk_pgbouncer, conn._tk_strict, conn._tk_cache) = saved


def rearm(conn: Any) -> None:
    """Send the path again before the next statement of the current transaction.

    After ``ROLLBACK TO SAVEPOINT``: a ``SET LOCAL`` sent after that savepoint (a tenant
    switch in the middle of the transaction) was undone with it, while the connection still
    believes its path is set. Outside a transaction there is nothing to do (the next one
    carries its path with ``BEGIN``).
    """
    if conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
        conn._tk_local = conn._tk_want or conn._tk_neutral
