"""A real pgbouncer in front of the test server, for the tests that need a transaction pooler.

:class:`PgBouncer` starts Debian's ``pgbouncer`` binary (``PGTENANTS_PGBOUNCER_BIN``, else
``pgbouncer`` on PATH, else ``/usr/sbin/pgbouncer``) on a free port of 127.0.0.1, in a
throw-away directory under the embedded server's temp root, and removes both on :meth:`stop`.
The package's own service (``/etc/pgbouncer``, port 6432) is never used: every instance has its
own configuration and port, so pytest-xdist workers each run their own.

* Every database name is forwarded (``* = host=... port=...``) to the server under test, so
  ``dsn_for(conninfo)`` turns any conninfo of that server into one through the pooler.
* ``auth_type = any`` with the server's user forced on the server side: the embedded server
  trusts local connections, and a password in the server's conninfo goes to pgbouncer's
  server login, never to a file other tests could read.
* pgbouncer refuses to run as root; as root it runs as the same unprivileged account as the
  embedded PostgreSQL (``tenantkit.server._cluster.run_account``).
* A watchdog process stops pgbouncer and removes the directory when the test process dies
  without calling :meth:`stop` (SIGKILL), like the embedded server's watchdog.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tenantkit.server._cluster import account_kwargs, chown, free_port, run_account, tmp_root

__all__ = ["PgBouncer", "PgBouncerMissing", "find_pgbouncer"]

ENV_BIN = "PGTENANTS_PGBOUNCER_BIN"
ENV_REQUIRE = "PGTENANTS_REQUIRE_PGBOUNCER"
_DEBIAN_PATH = "/usr/sbin/pgbouncer"
_PORT_ATTEMPTS = 20
_BOOT_TIMEOUT = 15.0

# Stops pgbouncer and removes the directory when its owner's end of stdin closes without
# "done" (the owner died abruptly). Standard library only: it runs with -I -S.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
base = sys.argv[1]
pid = 0
for line in sys.stdin:
    line = line.strip()
    if line == "done":
        sys.exit(0)
    if line.startswith("pid "):
        pid = int(line[4:])
def ours(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return base.encode() in f.read()
    except OSError:
        return False
if pid and ours(pid):
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
for _ in range(50):
    shutil.rmtree(base, ignore_errors=True)
    if not os.path.exists(base):
        break
    time.sleep(0.1)
"""


class PgBouncerMissing(RuntimeError):
    """No pgbouncer binary was found."""


def find_pgbouncer() -> str:
    """The pgbouncer binary to run; raises :class:`PgBouncerMissing` with where it looked."""
    explicit = os.environ.get(ENV_BIN)
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise PgBouncerMissing(f"{ENV_BIN}={explicit!r} is not an executable file")
    found = shutil.which("pgbouncer")
    if found:
        return found
    if os.access(_DEBIAN_PATH, os.X_OK):
        return _DEBIAN_PATH
    raise PgBouncerMissing(
        f"pgbouncer not found (looked at ${ENV_BIN}, PATH and {_DEBIAN_PATH}); install it "
        "(`apt-get install pgbouncer`) to run the pgbouncer tests"
    )


def _quote(value: str) -> str:
    # pgbouncer's connect-string values use libpq quoting: single quotes, \' and \\ escaped.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PgBouncer:
    """One pgbouncer process in front of the server of ``server_conninfo``.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``dsn`` is
    ``direct_dsn`` (default: ``server_conninfo``) through the pooler.
    """

    def __init__(
        self,
        server_conninfo: str,
        *,
        direct_dsn: str | None = None,
        pool_mode: str = "transaction",
        pool_size: int = 3,
        max_client_conn: int = 400,
        binary: str | None = None,
    ) -> None:
        if pool_mode not in ("session", "transaction", "statement"):
            raise ValueError(f"unknown pool_mode {pool_mode!r}")
        self.server_conninfo = server_conninfo
        self.direct_dsn = direct_dsn or server_conninfo
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.binary = binary
        self.port: int | None = None
        self.base_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()

    # -- connection strings ------------------------------------------------------------------

    def dsn_for(self, conninfo: str) -> str:
        """``conninfo`` (a database of the server under test) through this pgbouncer."""
        if self.port is None:
            raise RuntimeError("pgbouncer is not running; call start() first")
        params = conninfo_to_dict(conninfo)
        for key in ("host", "hostaddr", "port", "password", "sslmode", "passfile"):
            params.pop(key, None)
        params.update(host="127.0.0.1", port=str(self.port), sslmode="disable")
        return make_conninfo(**{k: str(v) for k, v in params.items()})

    @property
    def dsn(self) -> str:
        """``direct_dsn`` through this pgbouncer."""
        return self.dsn_for(self.direct_dsn)

    @property
    def log_path(self) -> Path:
        """pgbouncer's log (its stderr)."""
        if self.base_dir is None:
            raise RuntimeError("pgbouncer has not been started")
        return self.base_dir / "pgbouncer.log"

    def log(self) -> str:
        """The log so far (for failure messages)."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    # -- lifecycle -------------------------------------------------------------------------

    def _config(self, port: int) -> str:
        server = conninfo_to_dict(self.server_conninfo)
        target = [
            f"host={_quote(str(server.get('host') or '127.0.0.1'))}",
            f"port={_quote(str(server.get('port') or '5432'))}",
            # Forced: the server is logged into as its own user, whatever the client says.
            f"user={_quote(str(server.get('user') or 'postgres'))}",
        ]
        if server.get("password"):
            target.append(f"password={_quote(str(server['password']))}")
        return "\n".join(
            [
                "[databases]",
                "* = " + " ".join(target),
                "",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = any",
                f"pool_mode = {self.pool_mode}",
                f"default_pool_size = {self.pool_size}",
                "min_pool_size = 0",
                "reserve_pool_size = 0",
                f"max_client_conn = {self.max_client_conn}",
                # libpq/psycopg may send these; pgbouncer rejects unknown startup parameters.
                "ignore_startup_parameters = extra_float_digits,options",
                "log_connections = 0",
                "log_disconnections = 0",
                "server_login_retry = 1",
                "",
            ]
        )

    def start(self) -> PgBouncer:
        """Start pgbouncer (idempotent); raises PgBouncerMissing or RuntimeError."""
        if self._process is not None:
            return self
        binary = self.binary or find_pgbouncer()
        account = run_account(None)
        base = Path(tempfile.mkdtemp(prefix="tenantkit-pgbouncer-", dir=tmp_root()))
        self.base_dir = base
        chown(base, account)
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(base)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._launch(binary, base, account)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, binary: str, base: Path, account: tuple[str, int, int] | None) -> None:
        ini = base / "pgbouncer.ini"
        for _attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            ini.write_text(self._config(port))
            ini.chmod(0o644)
            # A fresh log per attempt, so the port diagnosis below reads this attempt only.
            with open(base / "pgbouncer.log", "wb") as log:
                process = subprocess.Popen(
                    [binary, str(ini)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=base,
                    # Its own session: a Ctrl-C reaches pytest, whose teardown stops us.
                    start_new_session=True,
                    **account_kwargs(account),
                )
            self._process = process
            if self._watchdog is not None and self._watchdog.stdin is not None:
                self._watchdog.stdin.write(f"pid {process.pid}\n".encode())
                self._watchdog.stdin.flush()
            if self._wait_up(process, port):
                self.port = port
                self._check()
                return
            self._process = None
            if "Address already in use" not in self.log():
                raise RuntimeError(f"pgbouncer did not start:\n{self.log()}")
        raise RuntimeError(f"pgbouncer found no free port in {_PORT_ATTEMPTS} attempts")

    def _wait_up(self, process: subprocess.Popen[bytes], port: int) -> bool:
        """True once pgbouncer listens on ``port``; False if it exited (port taken)."""
        deadline = time.monotonic() + _BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if f"listening on 127.0.0.1:{port}" in self.log():
                with socket.socket() as sock, contextlib.suppress(OSError):
                    sock.settimeout(1)
                    sock.connect(("127.0.0.1", port))
                    return True
            time.sleep(0.02)
        process.kill()
        process.wait()
        raise RuntimeError(f"pgbouncer did not listen within {_BOOT_TIMEOUT} s:\n{self.log()}")

    def _check(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute("select 1")
        except psycopg.Error as exc:
            raise RuntimeError(
                f"pgbouncer does not serve {self.dsn!r}: {exc}\n{self.log()}"
            ) from exc

    def stop(self) -> None:
        """Stop pgbouncer and remove its directory; safe to call twice."""
        if self._owner_pid != os.getpid():
            return
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            with contextlib.suppress(OSError, ValueError):
                if watchdog.stdin is not None:
                    watchdog.stdin.write(b"done\n")
                    watchdog.stdin.close()
            try:
                watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
        self.port = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self.port else "stopped"
        return f"<PgBouncer {self.pool_mode} pool_size={self.pool_size} {state}>"
