"""The current tenant and the ``search_path`` that follows it.

* The current tenant lives in a :class:`~contextvars.ContextVar`: each thread and each asyncio
  task sees its own, and every context manager here restores the previous value in ``finally``.
* A tenant's path is ``"<tenant>", <shared>, <extras...>, pg_temp``: ``pg_temp`` last, so a
  temporary table can never shadow a tenant's table.
* :func:`use_tenant` / :func:`ause_tenant` bind a connection to a tenant. On a
  :class:`TenantConnection` (what ``Tenancy`` pools hand out) this costs no round trip: the path
  travels with the next ``BEGIN`` (see :mod:`tenantkit.core._connection`), and temporary objects
  made before the switch are discarded in that same message. On a plain psycopg connection the path
  is applied at once with ``set_config()`` and restored on exit.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import AsyncContextDecorator, ContextDecorator, contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import pq, sql

from ._connection import AsyncTenantConnection, TenantConnection, _TenantState
from .models import Tenant, TenantLike
from .names import validate_schema_name

__all__ = [
    "AsyncTenantConnection",
    "TenantConnection",
    "ause_tenant",
    "current_tenant",
    "path_sql",
    "reset_current_tenant",
    "search_path_for",
    "set_current_tenant",
    "tenant_context",
    "use_tenant",
]

_current: contextvars.ContextVar[TenantLike | None] = contextvars.ContextVar(
    "tenantkit_current_tenant", default=None
)
_IDLE = pq.TransactionStatus.IDLE
_INERROR = pq.TransactionStatus.INERROR
_GET_SET = sql.SQL(
    "SELECT pg_catalog.current_setting('search_path'), pg_catalog.set_config('search_path', %s, %s)"
)
_SET = sql.SQL("SELECT pg_catalog.set_config('search_path', %s, %s)")


def _checked(tenant: TenantLike | None) -> TenantLike | None:
    """Validate a schema name given as a string (``Tenant`` objects come from the registry)."""
    if tenant is None or isinstance(tenant, Tenant):
        return tenant
    validate_schema_name(tenant)
    return tenant


def current_tenant() -> TenantLike | None:
    """The tenant current in this thread / asyncio task, or ``None``."""
    return _current.get()


def set_current_tenant(tenant: TenantLike | None) -> contextvars.Token[TenantLike | None]:
    """Make ``tenant`` current; pass the returned token to :func:`reset_current_tenant`.

    Middleware uses this pair around a request; prefer :func:`tenant_context` elsewhere.
    """
    return _current.set(_checked(tenant))


def reset_current_tenant(token: contextvars.Token[TenantLike | None]) -> None:
    """Restore the current tenant that was in effect before :func:`set_current_tenant`."""
    _current.reset(token)


@contextmanager
def tenant_context(tenant: TenantLike | None) -> Iterator[TenantLike | None]:
    """Make ``tenant`` current for the block (the ContextVar only; no connection is touched)."""
    token = set_current_tenant(tenant)
    try:
        yield tenant
    finally:
        _current.reset(token)


def search_path_for(
    tenant: TenantLike | None, *, shared_schema: str = "public", extra_schemas: Sequence[str] = ()
) -> list[str]:
    """The schemas of a tenant's path, ``pg_temp`` last (``None``: the shared path)."""
    schemas: list[str] = []
    if tenant is not None:
        schema = tenant.schema if isinstance(tenant, Tenant) else validate_schema_name(tenant)
        schemas.append(schema)
    for schema in (shared_schema, *extra_schemas):
        if schema not in schemas:
            schemas.append(schema)
    schemas.append("pg_temp")
    return schemas


@lru_cache(maxsize=8192)
def _path_sql(schemas: tuple[str, ...]) -> bytes:
    parts = [sql.SQL("pg_temp") if s == "pg_temp" else sql.Identifier(s) for s in schemas]
    return sql.SQL(", ").join(parts).as_bytes(None)


def path_sql(schemas: Sequence[str]) -> bytes:
    """The quoted, comma separated value for ``SET search_path TO ...`` (cached)."""
    return _path_sql(tuple(schemas))


def _bind_path(conn: _TenantState, tenant: TenantLike | None) -> bytes:
    base = conn._tk_base
    if tenant is None:
        return conn._tk_neutral or path_sql(search_path_for(None, shared_schema=base[0]))
    return path_sql(search_path_for(tenant, shared_schema=base[0], extra_schemas=base[1:]))


#: A statement for a plain psycopg connection: the query and its parameters.
_Statement = tuple[sql.SQL, tuple[str, bool]]
_B = TypeVar("_B", bound="_Binding")


class _Binding:
    """The logic of :class:`use_tenant` and :class:`ause_tenant`, with no I/O.

    The decisions live here once; the two context managers only run the statement it asks
    for (a plain psycopg connection) with or without ``await``. A tenancy connection needs
    no statement at all: the path rides on its next ``BEGIN``.
    """

    def __init__(
        self,
        conn: Any,
        tenant: TenantLike | None,
        *,
        shared_schema: str = "public",
        extra_schemas: Sequence[str] = (),
    ) -> None:
        self.conn = conn
        self.tenant = _checked(tenant)
        self.shared_schema = shared_schema
        self.extra_schemas = tuple(extra_schemas)
        self._token: contextvars.Token[TenantLike | None] | None = None
        self._prev_want: bytes | None = None
        self._prev_path: str | None = None
        self._is_local = False

    def _recreate_cm(self: _B) -> _B:
        # A decorator re-enters the same object on each call: give each call its own state.
        return type(self)(
            self.conn,
            self.tenant,
            shared_schema=self.shared_schema,
            extra_schemas=self.extra_schemas,
        )

    def _enter(self) -> _Statement | None:
        """Make the tenant current and bind a tenancy connection; the statement that a plain
        connection still needs (it reads the previous path and sets the new one), if any."""
        self._token = _current.set(self.tenant)
        try:
            conn = self.conn
            if isinstance(conn, _TenantState):
                # No round trip: the path rides on the next BEGIN, or, in the middle of a
                # transaction, is applied with SET LOCAL just before the next query.
                self._prev_want = conn._tk_want
                conn._tk_bind(_bind_path(conn, self.tenant))
                return None
            self._is_local = conn.pgconn.transaction_status != _IDLE
            path = path_sql(
                search_path_for(
                    self.tenant, shared_schema=self.shared_schema, extra_schemas=self.extra_schemas
                )
            ).decode()
        except BaseException:
            self._reset()
            raise
        return _GET_SET, (path, self._is_local)

    def _entered(self, row: tuple[Any, ...] | None) -> None:
        """Keep the previous path read by the statement of :meth:`_enter`."""
        self._prev_path = row[0] if row else None

    def _exit(self) -> _Statement | None:
        """Restore a tenancy connection's binding; the statement that restores a plain
        connection's path, if it needs one and can still run it."""
        conn = self.conn
        if isinstance(conn, _TenantState):
            conn._tk_bind(self._prev_want)
        elif (
            self._prev_path is not None
            and not conn.closed
            and conn.pgconn.transaction_status != _INERROR
        ):
            return _SET, (self._prev_path, self._is_local)
        return None

    def _reset(self) -> None:
        """Restore the tenant that was current before :meth:`_enter`."""
        if self._token is not None:
            _current.reset(self._token)


class use_tenant(_Binding, ContextDecorator):
    """Bind ``conn`` to ``tenant`` for a block (also sets :func:`current_tenant`).

    Nestable, usable as a decorator (``@use_tenant(conn, "acme")``); restores the previous
    tenant and path in ``finally``. ``shared_schema`` / ``extra_schemas`` only matter for
    plain psycopg connections; tenancy connections know their tenancy's settings.
    """

    def __enter__(self) -> psycopg.Connection[Any]:
        statement = self._enter()
        if statement is not None:
            try:
                self._entered(self.conn.execute(*statement).fetchone())
            except BaseException:
                self._reset()
                raise
        return self.conn  # type: ignore[no-any-return]

    def __exit__(self, *exc_info: object) -> None:
        try:
            if (statement := self._exit()) is not None:
                self.conn.execute(*statement)
        finally:
            self._reset()


class ause_tenant(_Binding, AsyncContextDecorator):
    """Async twin of :class:`use_tenant`: ``async with ause_tenant(aconn, tenant): ...``."""

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        statement = self._enter()
        if statement is not None:
            try:
                cursor = await self.conn.execute(*statement)
                self._entered(await cursor.fetchone())
            except BaseException:
                self._reset()
                raise
        return self.conn  # type: ignore[no-any-return]

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if (statement := self._exit()) is not None:
                await self.conn.execute(*statement)
        finally:
            self._reset()
