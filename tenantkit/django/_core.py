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


def configure(conn: Any, neutral: bytes, base: tuple[str, ...], *, pgbouncer: bool) -> None:
    """Configure a tenant connection as ``Tenancy`` does for its pool's connections."""
    conn._tk_configure(neutral, base, strict=False, pgbouncer=pgbouncer, prepare=None)


def bind(conn: Any, path: bytes | None) -> None:
    """Bind ``conn`` to ``path`` for its next statements (a change of hands or tenant)."""
    conn._tk_bind(path)


def discarded(conn: Any) -> None:
    """Record that a statement which discarded temporary objects (in autocommit) succeeded.

    ``TenantConnection`` clears its discard flag itself except in pipeline mode, where it
    cannot see the outcome; the backend sees it and tells it here.
    """
    conn._tk_discard = False


def unbind_for_statement(conn: Any) -> tuple[Any, ...]:
    """Let an autocommit statement that carries its own ``SET LOCAL search_path`` run.

    ``TenantConnection`` sends a session ``SET search_path`` before each autocommit statement
    (a round trip; in pgbouncer mode it refuses autocommit). A statement sent as one
    simple-query message ``SET LOCAL search_path TO ...; <statement>`` (one implicit
    transaction) needs neither: until :func:`rebind` the connection looks unbound, so its
    hook sends nothing (the pooler check still runs). Returns what ``rebind`` restores.
    """
    saved = (conn._tk_want, conn._tk_neutral, conn._tk_pgbouncer, conn._tk_strict)
    conn._tk_want = conn._tk_neutral = None
    conn._tk_pgbouncer = conn._tk_strict = False
    return saved


def rebind(conn: Any, saved: tuple[Any, ...]) -> None:
    """Undo :func:`unbind_for_statement`."""
    conn._tk_want, conn._tk_neutral, conn._tk_pgbouncer, conn._tk_strict = saved


def rearm(conn: Any) -> None:
    """Send the path again before the next statement of the current transaction.

    After ``ROLLBACK TO SAVEPOINT``: a ``SET LOCAL`` sent after that savepoint (a tenant
    switch in the middle of the transaction) was undone with it, while the connection still
    believes its path is set. Outside a transaction there is nothing to do (the next one
    carries its path with ``BEGIN``).
    """
    if conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
        conn._tk_local = conn._tk_want or conn._tk_neutral
