"""A throw-away PostgreSQL server for tests and local development.

:class:`EmbeddedServer` is built on testing.postgresql's ``Database`` class (the base of its
``Postgresql``), and fixes what stops it from being used as shipped:

* ``testing.postgresql.Postgresql`` imports pg8000 and probes the server with it; we subclass
  its pg8000-free base and use psycopg 3 instead;
* its ``dsn()`` returns a ``database`` key, which psycopg 3 rejects; we expose a psycopg-3
  conninfo (``dbname=``) and URL;
* initdb and postgres refuse to run as root; when the current process is root we run them as an
  unprivileged account in directories owned by that account, outside any private temp tree;
* every start ran initdb (about a second); we cache the initialised cluster and copy it.

It also picks its port safely when several processes start servers at once, turns durability
off, and removes its process and directory on normal exit, on exceptions, on SIGTERM/SIGINT,
and (through a tiny watchdog process that watches the owner's process id) even when the owner
dies abruptly, whatever children it forked, and even in the middle of ``start()``.

When ``PGTENANTS_DSN`` is set, :meth:`EmbeddedServer.from_env` and
:func:`server_conninfo_from_env` hand out that server instead of starting one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..errors import ServerError
from ._binaries import bundled_bin_dir, find_pg_bin, is_pg_bin_dir
from ._cluster import (
    SUPERUSER,
    cached_cluster,
    chown,
    clear_cache,
    cluster_class,
    default_cache_root,
    run_account,
    tmp_root,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "EmbeddedServer",
    "ExternalServer",
    "bundled_bin_dir",
    "clear_cache",
    "conninfo_to_url",
    "find_pg_bin",
    "is_pg_bin_dir",
    "server_conninfo_from_env",
    "temporary_database",
    "with_dbname",
]

#: Server settings applied to every embedded server (``settings=`` overrides them). Durability
#: is off because the data is thrown away; max_connections is high because test suites run
#: pools in several processes against one server.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_connections": "300",
    "listen_addresses": "127.0.0.1",
    "logging_collector": "off",
    "jit": "off",
}

_ENV_DSN = "PGTENANTS_DSN"

# The watchdog: a tiny separate process (see _watchdog.py) that cleans up after an owner that
# died abruptly. Run by file path with -I -S so it starts fast and imports nothing of ours.
# It is started before anything else of the server exists, so it is armed before the
# postmaster is spawned.
_WATCHDOG = Path(__file__).with_name("_watchdog.py")


def conninfo_to_url(conninfo: str) -> str:
    """Return the ``postgresql://`` URL equivalent to a libpq conninfo string."""
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    user = params.pop("user", "")
    password = params.pop("password", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = params.pop("dbname", "")
    auth = ""
    if user:
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    netloc = ""
    if host and not host.startswith("/") and "," not in host:
        netloc = f"[{host}]" if ":" in host else host
    elif host:
        params["host"] = host  # unix socket directories and host lists go in the query
    if port and netloc:
        netloc += f":{port}"
    elif port:
        params["port"] = port
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{netloc}/{quote(dbname, safe='')}{query}"


def with_dbname(conninfo: str, dbname: str, **extra: str) -> str:
    """``conninfo`` (or URL) pointing at database ``dbname`` instead; ``extra`` sets more keys."""
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    params.update(dbname=dbname, **extra)
    return make_conninfo(**params)


@contextlib.contextmanager
def temporary_database(server_conninfo: str, *, prefix: str = "tenantkit_tmp") -> Iterator[str]:
    """Create a uniquely named database on a server, yield its conninfo, then drop it.

    The drop uses ``WITH (FORCE)``, so connections left open (a pool, a listener) cannot keep
    the database alive; it happens on an exception too. ``prefix`` must be a valid name start.
    """
    dbname = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(dbname)
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield with_dbname(server_conninfo, dbname)
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def _short_version(full: str) -> str:
    """``"15.18 (Debian 15.18-0+deb12u1)"`` -> ``"15.18"``."""
    return full.split()[0] if full else full


class ExternalServer:
    """A PostgreSQL server you run yourself, given by a conninfo (e.g. ``PGTENANTS_DSN``).

    Offers the same attributes as :class:`EmbeddedServer` so callers need not care which one
    they got; ``start()``/``stop()`` do nothing because the server is not ours to manage.
    """

    def __init__(self, conninfo: str) -> None:
        conninfo_to_dict(conninfo)  # fail early on a malformed DSN
        self.conninfo = conninfo
        self._version: tuple[str, int] | None = None

    data_dir: Path | None = None

    @property
    def url(self) -> str:
        """The ``postgresql://`` URL of :attr:`conninfo`."""
        return conninfo_to_url(self.conninfo)

    def conninfo_for(self, dbname: str) -> str:
        """The conninfo of database ``dbname`` on this server."""
        return with_dbname(self.conninfo, dbname)

    def _query_version(self) -> tuple[str, int]:
        if self._version is None:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                full = conn.info.parameter_status("server_version") or ""
                self._version = (_short_version(full), conn.info.server_version)
        return self._version

    @property
    def version(self) -> str:
        """The server version, e.g. ``"15.18"`` (asks the server once)."""
        return self._query_version()[0]

    @property
    def version_num(self) -> int:
        """The server version as a number, e.g. ``150018`` (asks the server once)."""
        return self._query_version()[1]

    def start(self) -> ExternalServer:
        """Nothing to start: return ``self``."""
        return self

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""

    def __enter__(self) -> ExternalServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        return f"ExternalServer({self.url!r})"


# --- cleanup on exit and on signals --------------------------------------------------------

_LIVE: set[EmbeddedServer] = set()
_LIVE_LOCK = threading.RLock()
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_ATEXIT_REGISTERED = False
_HANDLED_SIGNALS = tuple(
    s
    for s in (
        getattr(signal, "SIGTERM", None),
        getattr(signal, "SIGINT", None),
        getattr(signal, "SIGHUP", None),
    )
    if s is not None
)


def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        if server._owner_pid == os.getpid():
            with contextlib.suppress(Exception):
                server.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if signum == signal.SIGINT and previous is signal.default_int_handler:
        # Python turns Ctrl-C into KeyboardInterrupt: `with` blocks, fixture teardown and
        # atexit stop the server while unwinding. Stopping it here would pull it from under
        # code that still needs it during that unwinding.
        raise KeyboardInterrupt
    _stop_all()
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # Chain to the default action (terminate) so the exit status still says "killed by
        # SIGTERM" to whoever waits for us.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_cleanup_hooks() -> None:
    global _ATEXIT_REGISTERED
    if not _ATEXIT_REGISTERED:
        atexit.register(_stop_all)
        _ATEXIT_REGISTERED = True
    if threading.current_thread() is not threading.main_thread():
        return  # signal.signal only works in the main thread; try again on a later start
    for signum in _HANDLED_SIGNALS:
        current = signal.getsignal(signum)
        if current is _on_signal or current == signal.SIG_IGN or current is None:
            continue  # already ours, or deliberately ignored (nohup) or not set from Python
        _PREVIOUS_HANDLERS[signum] = current
        signal.signal(signum, _on_signal)


# --- the public class -----------------------------------------------------------------------


class EmbeddedServer:
    """A throw-away PostgreSQL server: ``with EmbeddedServer() as server: server.conninfo``.

    Arguments:
        bin_dir: directory holding ``initdb`` and ``postgres``; default: discovered by
            :func:`find_pg_bin` (``PGTENANTS_PG_BIN``, ``PATH``, ``pg_config``, OS layouts,
            then the PostgreSQL 16 bundled by the ``pgserver`` package).
        user: the account to run PostgreSQL as when the current process is root (default
            ``PGTENANTS_PG_USER``, else ``postgres``, else ``nobody``); ignored otherwise.
        settings: server settings layered over :data:`DEFAULT_SETTINGS`
            (``{"max_connections": 500}``); passed on the command line, so they never split
            the cluster cache.
        cache: copy a cached initialised cluster instead of running initdb each time.
        port: TCP port on 127.0.0.1; default: a free one, re-picked if another process takes
            it first.
        keep: keep the data directory after :meth:`stop` (the server still stops).
        cache_dir: where cached clusters live (default ``PGTENANTS_CACHE_DIR``, else
            ``~/.cache/tenantkit/clusters``, or ``/var/tmp/tenantkit-cache`` as root).
        boot_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        user: str | None = None,
        settings: Mapping[str, object] | None = None,
        cache: bool = True,
        port: int | None = None,
        keep: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        boot_timeout: float = 60.0,
    ) -> None:
        self._bin_dir_option = bin_dir
        self._user_option = user
        self._settings = dict(DEFAULT_SETTINGS)
        for key, value in (settings or {}).items():
            if key in ("port", "unix_socket_directories"):
                raise ValueError(f"{key} is managed by EmbeddedServer; use port= instead")
            self._settings[key] = _setting_value(value)
        self._cache = cache
        self._port_option = port
        self.keep = keep
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._boot_timeout = boot_timeout
        self._lock = threading.RLock()
        self._cluster: Any = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._base_dir: Path | None = None
        self._base_dir_owned = True
        self._owner_pid = os.getpid()
        self._version: tuple[str, int] | None = None
        self.bin_dir: Path | None = None
        self.account: str | None = None
        self.port: int | None = None
        self.startup_seconds: float | None = None

    # -- PGTENANTS_DSN -------------------------------------------------------------------

    @classmethod
    def from_env(cls, **kwargs: Any) -> EmbeddedServer | ExternalServer:
        """The server named by ``PGTENANTS_DSN`` when it is set, else a new ``EmbeddedServer``.

        Use it as a context manager: ``with EmbeddedServer.from_env() as server: ...``; both
        kinds offer ``conninfo``, ``url``, ``conninfo_for()``, ``version`` and ``version_num``.
        """
        dsn = os.environ.get(_ENV_DSN)
        if dsn:
            return ExternalServer(dsn)
        return cls(**kwargs)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._cluster is not None and bool(self._cluster.is_alive())

    def start(self) -> EmbeddedServer:
        """Start the server (idempotent) and return ``self``; raises ``ServerError``."""
        with self._lock:
            if self.running:
                return self
            if self._owner_pid != os.getpid():
                raise ServerError("an EmbeddedServer cannot be restarted in a forked process")
            began = time.perf_counter()
            try:
                self._start()
            except BaseException:
                self.stop()
                raise
            self.startup_seconds = time.perf_counter() - began
            return self

    def _start(self) -> None:
        self.port = None
        self._version = None
        self._base_dir_owned = True
        bin_dir = find_pg_bin(self._bin_dir_option)
        account = run_account(self._user_option)
        self.bin_dir = bin_dir
        self.account = account[0] if account else None
        with _LIVE_LOCK:
            _LIVE.add(self)
        _install_cleanup_hooks()
        base = Path(tempfile.mkdtemp(prefix="tenantkit-", dir=tmp_root()))
        self._base_dir = base
        chown(base, account)
        self._start_watchdog(base)
        source = None
        if self._cache:
            cache_root = self._cache_dir or default_cache_root()
            source = cached_cluster(cache_root, bin_dir, account)
        cluster = cluster_class()(
            base_dir=str(base),
            bin_dir=bin_dir,
            account=account,
            port=self._port_option,
            copy_data_from=source,
            server_settings=self._settings,
            boot_timeout=self._boot_timeout,
            notify=self._tell_watchdog,
        )
        # testing.postgresql removes base_dir only when it made it; it is ours to remove.
        cluster._use_tmpdir = not self.keep
        self._cluster = cluster
        cluster.setup()
        cluster.start()
        self.port = int(cluster.settings["port"])
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            full = conn.info.parameter_status("server_version") or ""
            self._version = (_short_version(full), conn.info.server_version)

    def _start_watchdog(self, base: Path) -> None:
        # It watches our process id, not only the end of the pipe: children we fork
        # (multiprocessing, os.fork) inherit the pipe's write end and would keep it open.
        keep = "1" if self.keep else "0"
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_WATCHDOG), str(base), keep, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _tell_watchdog(self, message: str) -> None:
        watchdog = self._watchdog
        if watchdog is None or watchdog.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            watchdog.stdin.write(f"{message}\n".encode())
            watchdog.stdin.flush()

    def stop(self) -> None:
        """Stop the server and remove its directory (unless ``keep``); safe to call twice."""
        with self._lock:
            if self._owner_pid != os.getpid():
                return  # a forked child must not stop its parent's server
            cluster, self._cluster = self._cluster, None
            try:
                if cluster is not None:
                    cluster.terminate(signal.SIGINT if self.keep else signal.SIGQUIT)
                    cluster.cleanup()
            finally:
                if self._base_dir is not None and self._base_dir_owned and not self.keep:
                    shutil.rmtree(self._base_dir, ignore_errors=True)
                self._stop_watchdog()
                with _LIVE_LOCK:
                    _LIVE.discard(self)

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if watchdog.stdin is not None:
                watchdog.stdin.write(b"done\n")
                watchdog.stdin.close()
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def detach(self) -> None:
        """Stop managing the server and leave it running, with its directory, after we exit.

        For keep-it-running workflows (the pytest plugin's ``--pgtenants-keep``): no handler,
        watchdog or ``stop()`` touches it any more; stop it and remove :attr:`base_dir` later
        with ``tenantkit server stop <base_dir>`` (which, unlike ``pg_ctl``, works as root).
        """
        with self._lock:
            if self._owner_pid != os.getpid():
                return  # a forked child has nothing to detach
            cluster, self._cluster = self._cluster, None
            if cluster is not None:
                cluster._use_tmpdir = False
                cluster.child_process = None  # testing.postgresql's __del__ would stop it
            self._stop_watchdog()
            with _LIVE_LOCK:
                _LIVE.discard(self)
            self._base_dir_owned = False

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    # -- connection details ---------------------------------------------------------------

    def _versions(self) -> tuple[str, int]:
        if self._version is None:
            raise ServerError("the embedded server has not been started; call start() first")
        return self._version

    def _require_running(self) -> None:
        if self.port is None:
            raise ServerError("the embedded server has not been started; call start() first")

    @property
    def host(self) -> str:
        """The TCP host the server listens on (always loopback)."""
        return "127.0.0.1"

    @property
    def conninfo(self) -> str:
        """psycopg 3 conninfo of the ``postgres`` database as the ``postgres`` superuser."""
        return self.conninfo_for("postgres")

    def conninfo_for(self, dbname: str) -> str:
        """The conninfo of database ``dbname`` on this server."""
        self._require_running()
        return make_conninfo(host=self.host, port=str(self.port), user=SUPERUSER, dbname=dbname)

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/postgres``."""
        self._require_running()
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/postgres"

    @property
    def version(self) -> str:
        """The server version, e.g. ``"15.18"``."""
        return self._versions()[0]

    @property
    def version_num(self) -> int:
        """The server version as a number, e.g. ``150018`` (``server_version_num``)."""
        return self._versions()[1]

    @property
    def base_dir(self) -> Path:
        """The throw-away directory holding ``data/``, ``sock/`` and ``postgres.log``."""
        if self._base_dir is None:
            raise ServerError("the embedded server has not been started")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory of the server's unix socket (use it as ``host=`` for socket access)."""
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.base_dir / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while running."""
        cluster = self._cluster
        return None if cluster is None else cluster.server_pid

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.running else "stopped"
        return f"<EmbeddedServer {state}>"


def _setting_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@contextlib.contextmanager
def server_conninfo_from_env(**kwargs: Any) -> Iterator[str]:
    """Yield the conninfo of ``PGTENANTS_DSN`` when set, else of a new embedded server.

    Keyword arguments go to :class:`EmbeddedServer`. The embedded server is stopped and
    removed when the block ends.
    """
    with EmbeddedServer.from_env(**kwargs) as server:
        yield server.conninfo
