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
from types import TracebackType
from typing import Any

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


class _Binding:
    """State shared by the sync and async context managers."""

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

    def _plain_path(self) -> str:
        return path_sql(
            search_path_for(
                self.tenant, shared_schema=self.shared_schema, extra_schemas=self.extra_schemas
            )
        ).decode()

    def _enter_tenant_conn(self, conn: _TenantState) -> None:
        # No round trip: the path rides on the next BEGIN, or, in the middle of a
        # transaction, is applied with SET LOCAL just before the next query.
        self._prev_want = conn._tk_want
        conn._tk_bind(_bind_path(conn, self.tenant))

    def _exit_tenant_conn(self, conn: _TenantState) -> None:
        conn._tk_bind(self._prev_want)


class use_tenant(_Binding, ContextDecorator):
    """Bind ``conn`` to ``tenant`` for a block (also sets :func:`current_tenant`).

    Nestable, usable as a decorator (``@use_tenant(conn, "acme")``); restores the previous
    tenant and path in ``finally``. ``shared_schema`` / ``extra_schemas`` only matter for
    plain psycopg connections; tenancy connections know their tenancy's settings.
    """

    def _recreate_cm(self) -> use_tenant:
        # A decorator re-enters the same object on each call: give each call its own state.
        return use_tenant(
            self.conn,
            self.tenant,
            shared_schema=self.shared_schema,
            extra_schemas=self.extra_schemas,
        )

    def __enter__(self) -> psycopg.Connection[Any]:
        self._token = _current.set(self.tenant)
        try:
            conn = self.conn
            if isinstance(conn, _TenantState):
                self._enter_tenant_conn(conn)
            else:
                self._is_local = conn.pgconn.transaction_status != _IDLE
                row = conn.execute(_GET_SET, (self._plain_path(), self._is_local)).fetchone()
                self._prev_path = row[0] if row else None
        except BaseException:
            _current.reset(self._token)
            raise
        return self.conn  # type: ignore[no-any-return]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            conn = self.conn
            if isinstance(conn, _TenantState):
                self._exit_tenant_conn(conn)
            elif (
                self._prev_path is not None
                and not conn.closed
                and conn.pgconn.transaction_status != _INERROR
            ):
                conn.execute(_SET, (self._prev_path, self._is_local))
        finally:
            if self._token is not None:
                _current.reset(self._token)


class ause_tenant(_Binding, AsyncContextDecorator):
    """Async twin of :class:`use_tenant`: ``async with ause_tenant(aconn, tenant): ...``."""

    def _recreate_cm(self) -> ause_tenant:
        return ause_tenant(
            self.conn,
            self.tenant,
            shared_schema=self.shared_schema,
            extra_schemas=self.extra_schemas,
        )

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        self._token = _current.set(self.tenant)
        try:
            conn = self.conn
            if isinstance(conn, _TenantState):
                self._enter_tenant_conn(conn)
            else:
                self._is_local = conn.pgconn.transaction_status != _IDLE
                cur = await conn.execute(_GET_SET, (self._plain_path(), self._is_local))
                row = await cur.fetchone()
                self._prev_path = row[0] if row else None
        except BaseException:
            _current.reset(self._token)
            raise
        return self.conn  # type: ignore[no-any-return]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            conn = self.conn
            if isinstance(conn, _TenantState):
                self._exit_tenant_conn(conn)
            elif (
                self._prev_path is not None
                and not conn.closed
                and conn.pgconn.transaction_status != _INERROR
            ):
                await conn.execute(_SET, (self._prev_path, self._is_local))
        finally:
            if self._token is not None:
                _current.reset(self._token)
