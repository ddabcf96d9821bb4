"""The one module that touches psycopg's private names, and the check that they still fit.

:mod:`tenantkit.core._connection` overrides a handful of psycopg internals so that a tenant's
``search_path`` rides on the transaction start (no extra round trip). Those internals are not
public API: a psycopg release may rename or reshape them, and a hook that silently stops being
called would run a tenant's queries on whatever path the connection had, i.e. possibly another
tenant's. So tenantkit *fails closed*:

* at import, :func:`check` verifies that every private name used here exists with the shape we
  rely on, and raises :class:`~tenantkit.errors.PsycopgUnsupported` naming the supported
  psycopg range when one does not;
* at run time, :mod:`tenantkit.core._connection` raises when a transaction starts without its hook
  having run (see ``_TenantState._tk_check_began``).

Nothing else in tenantkit imports ``psycopg._*`` or reads a private psycopg attribute; add a
name here, with its check, before using it elsewhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import generators
from psycopg._cursor_base import BaseCursor
from psycopg._preparing import PrepareManager
from psycopg._queries import PostgresQuery

from ..errors import PsycopgUnsupported

__all__ = [
    "SUPPORTED",
    "PostgresQuery",
    "PrepareManager",
    "check",
    "execute_gen",
]

#: The psycopg releases whose internals this module was checked against (CI runs the switch
#: and leak tests on the newest release the pin allows).
SUPPORTED = ">=3.2,<3.4"

#: ``generators.execute(pgconn)``: send-and-collect used for the BEGIN + SET message.
execute_gen = generators.execute

# name -> parameter names (after self) that our overrides pass or accept.
_METHODS: dict[tuple[type[Any], str], tuple[str, ...]] = {
    (psycopg.BaseConnection, "_exec_command"): ("command", "result_format"),
    (psycopg.BaseConnection, "_start_query"): (),
    (psycopg.BaseConnection, "_get_tx_start_command"): (),
    (psycopg.BaseConnection, "_check_connection_ok"): (),
    (psycopg.BaseConnection, "_commit_gen"): (),
    (BaseCursor, "_start_query"): ("query",),
    (PrepareManager, "key"): ("query",),
}

# Attributes set on every connection by psycopg's BaseConnection.__init__ that we read.
CONNECTION_ATTRIBUTES = ("_autocommit", "_begin_statement", "_pipeline", "_prepared")
# PostgresQuery fields used as the prepared-statement key.
_QUERY_SLOTS = ("query", "types")


def _fail(what: str) -> PsycopgUnsupported:
    return PsycopgUnsupported(
        f"psycopg {psycopg.__version__} is not supported by this tenantkit: {what}. "
        f"tenantkit hooks psycopg's transaction start to apply the tenant's search_path and "
        f"refuses to run without it; install psycopg{SUPPORTED}"
    )


def _params(func: Callable[..., Any]) -> tuple[str, ...]:
    names = [
        p.name
        for p in inspect.signature(func).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return tuple(names[1:] if names and names[0] in ("self", "cls") else names)


def check() -> None:
    """Verify psycopg's private names used by tenantkit; raise ``PsycopgUnsupported`` if not.

    Runs once at import of :mod:`tenantkit.core._connection` (microseconds: signature reads only).
    """
    for (owner, name), expected in _METHODS.items():
        func = getattr(owner, name, None)
        if func is None or not callable(func):
            raise _fail(f"{owner.__qualname__}.{name} is gone")
        got = _params(func)
        if got[: len(expected)] != expected:
            raise _fail(f"{owner.__qualname__}.{name}{got} no longer takes {expected}")
    slots = getattr(PostgresQuery, "__slots__", ())
    if isinstance(slots, str):
        slots = slots.split()
    if slots and not all(s in slots for s in _QUERY_SLOTS):
        raise _fail("PostgresQuery no longer has query/types")
    if not callable(execute_gen):
        raise _fail("psycopg.generators.execute is gone")


def check_instance(conn: object) -> None:
    """Verify a new connection carries the private attributes the hooks read."""
    missing = [a for a in CONNECTION_ATTRIBUTES if not hasattr(conn, a)]
    if missing:
        raise _fail(f"connections no longer have {', '.join(missing)}")


check()
