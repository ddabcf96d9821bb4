"""The registry listener: one daemon thread LISTENing for registry changes.

:class:`RegistryListener` holds one dedicated connection that LISTENs on ``tenantkit_registry``
(the registry's triggers NOTIFY it with the tenant id or host of every changed row), turns
bursts of notifications into :class:`~tenantkit.web.sources.Change` values, and checks that
notifications really arrive (a transaction pooler such as pgbouncer swallows them). Re-exported
by :mod:`tenantkit.web.sources`, whose :class:`~tenantkit.web.sources.RegistryDomainSource`
starts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg import sql

from ..core.storage import DOMAINS_TABLE, NOTIFY_CHANNEL, TENANTS_TABLE
from ._routing_table import Change

__all__ = ["APPLICATION_NAME", "REGISTRY_CHANNEL", "RegistryListener"]

logger = logging.getLogger("tenantkit.web.routing")

#: The channel the registry triggers NOTIFY on every tenants/domains change.
REGISTRY_CHANNEL = NOTIFY_CHANNEL
#: ``application_name`` of the connections a registry source opens (LISTEN and loads).
APPLICATION_NAME = "tenantkit-router"
#: Payload prefix of the notification a listener sends itself to test a pooled connection.
PROBE_PREFIX = "tenantkit_probe:"
#: A burst naming more entries than this reloads the whole table instead (one query either
#: way, but a full load is cheaper than patching most of the table).
MAX_CHANGED_ENTRIES = 1000

_POOLER_HELP = (
    "the registry LISTEN connection goes through a transaction pooler (pgbouncer?), which "
    "never delivers notifications; pass listen_conninfo= with a direct address of PostgreSQL "
    "(TenantResolver.from_tenancy(tenancy, listen_conninfo='host=db-direct ...'))"
)


def _parse(payloads: Iterable[str]) -> Change | None:
    """The entries a batch of registry notifications names; ``None``: reload everything.

    The registry's row triggers send ``tenantkit_tenants:<id>`` and ``tenantkit_domains:<host>``;
    anything else (a registry installed by an older tenantkit sends the bare table name, a
    TRUNCATE sends it too, a hand-made ``NOTIFY`` sends what it likes) means "anything may
    have changed". Probes are not changes.
    """
    ids: set[int] = set()
    hosts: set[str] = set()
    for payload in payloads:
        if payload.startswith(PROBE_PREFIX):
            continue
        kind, sep, key = payload.partition(":")
        if sep and kind == TENANTS_TABLE and key.isdigit():
            ids.add(int(key))
        elif sep and kind == DOMAINS_TABLE and key:
            hosts.add(key)
        else:
            return None
    return Change(frozenset(ids), frozenset(hosts))


class RegistryListener:
    """A daemon thread LISTENing on ``channel`` and reporting registry changes.

    ``callback()`` is called when anything may have changed (each time the LISTEN is
    (re)established, since notifications sent while it was down are lost, and for
    notifications that do not say what changed); ``on_changes(change)``, when given, is
    called with the entries a burst of notifications names.

    ``live`` is true only while notifications really arrive. Behind a connection pooler (the
    backend PID the server reports differs from the one the connection announced) the
    listener sends itself a probe notification from a second connection: a session pooler
    delivers it and the listener goes live; a transaction pooler never delivers notifications,
    so the listener gives up, logs a warning naming ``listen_conninfo`` (or, with
    ``require_listen``, sets :attr:`error`), and the resolver falls back to polling.

    On a lost connection it reconnects with a capped exponential backoff. :meth:`close` wakes
    the thread at once (a socket pair, not a polling interval) and closes its connection.
    """

    def __init__(
        self,
        conninfo: str,
        callback: Callable[[], None],
        *,
        channel: str = REGISTRY_CHANNEL,
        on_changes: Callable[[Change], None] | None = None,
        require_listen: bool = False,
        poll_interval: float = 30.0,
        coalesce: float = 0.005,
        max_backoff: float = 5.0,
        probe_timeout: float = 2.0,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.require_listen = require_listen
        self._callback = callback
        self._on_changes = on_changes
        # Only a safety net: close() wakes the thread through the socket pair.
        self._poll = poll_interval
        self._coalesce = coalesce
        self._max_backoff = max_backoff
        self._probe_timeout = probe_timeout
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._live = False
        self._attempted = False  # the first connection attempt has an outcome
        self._finished = False  # the thread has ended (closed, or gave up behind a pooler)
        self._pooled = False
        self._error: str | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name=f"tenantkit-listen-{channel}", daemon=True
        )
        _listeners.add(self)
        self._thread.start()

    @property
    def live(self) -> bool:
        """True while every change is being reported."""
        return self._live

    @property
    def pooled(self) -> bool:
        """True when the listener gave up because a transaction pooler eats notifications."""
        return self._pooled

    @property
    def error(self) -> str | None:
        """Why routing must refuse to run (``require_listen`` behind a pooler), else ``None``."""
        return self._error

    def wait_live(self, timeout: float | None = None) -> bool:
        """Block until the LISTEN works (or ``timeout``, or it gave up); return :attr:`live`."""
        with self._cond:
            self._cond.wait_for(lambda: self._live or self._finished, timeout)
        return self._live

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Block until the first connection attempt has an outcome; return :attr:`live`.

        Returns early when the server cannot be reached (the thread keeps retrying).
        """
        with self._cond:
            self._cond.wait_for(lambda: self._live or self._finished or self._attempted, timeout)
        return self._live

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and close its connection; returns as soon as it has ended.

        Idempotent. Waits at most ``timeout`` (a thread still connecting to an unreachable
        server ends on its own once the attempt fails).
        """
        self._stop.set()
        with contextlib.suppress(OSError):  # already closed by the thread
            self._wake_w.send(b"\0")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the thread --------------------------------------------------------------------

    def _set(self, **state: Any) -> None:
        with self._cond:
            for name, value in state.items():
                setattr(self, name, value)
            self._cond.notify_all()

    def _connect(self) -> psycopg.Connection[Any]:
        # No server-side prepared statements: they break behind a transaction pooler.
        return psycopg.connect(
            self.conninfo,
            autocommit=True,
            application_name=APPLICATION_NAME,
            prepare_threshold=None,
        )

    def _run(self) -> None:
        backoff = 0.05
        try:
            while not self._stop.is_set():
                try:
                    with self._connect() as conn:
                        if self._stop.is_set():
                            return
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                        if not self._notifications_arrive(conn):
                            if not self._stop.is_set():
                                self._give_up(conn)
                            return
                        backoff = 0.05
                        # Changes made before the LISTEN took effect were not notified.
                        # Report them before going live, so that a caller seeing ``live``
                        # knows the table it loads next is complete.
                        self._callback()
                        self._set(_live=True, _attempted=True)
                        self._listen(conn)
                except psycopg.Error as exc:
                    if self._live or backoff >= self._max_backoff:
                        logger.warning("registry listener lost its connection: %s", exc)
                except Exception:  # the thread must survive a failing callback
                    logger.exception("registry listener callback failed")
                finally:
                    self._set(_live=False, _attempted=True)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self._max_backoff)
        finally:
            self._set(_live=False, _finished=True)
            self._wake_r.close()
            self._wake_w.close()

    def _receive(self, conn: psycopg.Connection[Any], timeout: float) -> list[str] | None:
        """Payloads of the next batch of notifications within ``timeout`` (``[]``: none came);
        ``None`` once :meth:`close` was called."""
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            # timeout=0 drains what psycopg or the socket already hold, without waiting.
            got = [n.payload for n in conn.notifies(timeout=0)]
            if got:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            select.select([conn.fileno(), self._wake_r.fileno()], [], [], remaining)
        return None

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while True:
            payloads = self._receive(conn, self._poll)
            if payloads is None:
                return
            if not payloads:
                continue
            # Creating many tenants sends a burst: report it once.
            payloads.extend(n.payload for n in conn.notifies(timeout=self._coalesce))
            self._report(payloads)

    def _report(self, payloads: list[str]) -> None:
        change = _parse(payloads)
        if change is not None and not (change.tenant_ids or change.hosts):
            return  # only probes
        if (
            change is None
            or self._on_changes is None
            or len(change.tenant_ids) + len(change.hosts) > MAX_CHANGED_ENTRIES
        ):
            self._callback()
        else:
            self._on_changes(change)

    def _notifications_arrive(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether notifications sent to ``channel`` reach this connection."""
        row = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
        if row is not None and row[0] == conn.pgconn.backend_pid:
            return True  # a direct connection to the server
        # A pooler answers the startup with its own key. Session pooling keeps one server
        # connection per client, and notifications work; transaction pooling hands the server
        # connection that ran LISTEN to other clients. Only a real notification tells.
        payload = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        with self._connect() as other:
            other.execute("SELECT pg_catalog.pg_notify(%s, %s)", (self.channel, payload))
        deadline = time.monotonic() + self._probe_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            payloads = self._receive(conn, remaining)
            if payloads is None:
                return False
            if payload in payloads:
                return True
        return False

    def _give_up(self, conn: psycopg.Connection[Any]) -> None:
        # Best effort: the server connection that ran LISTEN is back in the pooler's pool.
        with contextlib.suppress(psycopg.Error):
            conn.execute("UNLISTEN *")
        if self.require_listen:
            error = f"{_POOLER_HELP}; require_listen=True forbids falling back to polling"
            logger.error("tenantkit routing: %s", error)
            self._set(_pooled=True, _error=error)
        else:
            logger.warning(
                "tenantkit routing: %s. Falling back to polling the registry (every "
                "fallback_ttl seconds, and on unknown hosts at most once per negative_ttl)",
                _POOLER_HELP,
            )
            self._set(_pooled=True)

    def _after_fork(self) -> None:
        # The thread did not survive the fork: release the child's copies of the sockets.
        self._wake_r.close()
        self._wake_w.close()


_listeners: weakref.WeakSet[RegistryListener] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for listener in list(_listeners):
        listener._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
