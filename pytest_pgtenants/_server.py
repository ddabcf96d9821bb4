"""The PostgreSQL server of a test run: a given DSN, embedded in-process, or shared by workers.

Under pytest-xdist every worker needs the same server (so the template database is built once
and cloned by all), but no worker can own it: the first worker to finish would stop it under
the others. So the first worker that asks starts a small helper process
(``python -m pytest_pgtenants._serverd``) under a file lock in a directory named after xdist's
``testrunuid``; the others find its state file and connect. The helper runs in its own session
(a Ctrl-C in the terminal does not reach it mid-teardown) and stops the server when the xdist
controller tells it to at the end of the run, or as soon as the controller process is gone
(killed, crashed), so no server outlives a run unless ``--pgtenants-keep`` asked for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

__all__ = ["ServerHandle", "connect_server", "run_dir_for", "stop_shared_server"]

_STATE = "server.json"
_LOCK = "server.lock"
_LOG = "server.log"
_START_TIMEOUT = 120.0


@dataclass
class ServerHandle:
    """What the fixtures need to know about the server under test."""

    conninfo: str
    version_num: int
    embedded: bool
    data_dir: str | None = None
    stop: Callable[[], None] = field(default=lambda: None, repr=False)

    def conninfo_for(self, dbname: str) -> str:
        """The conninfo of database ``dbname`` on this server (same host, port, user...)."""
        # Imported here: loading the plugin must not import tenantkit.server.
        from tenantkit.server import with_dbname

        return with_dbname(self.conninfo, dbname)


def _server_version(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        return int(conn.info.server_version)


def from_dsn(dsn: str) -> ServerHandle:
    """A handle on a server we did not start (and so never stop)."""
    return ServerHandle(conninfo=dsn, version_num=_server_version(dsn), embedded=False)


def start_embedded(*, keep: bool) -> ServerHandle:
    """Start an embedded server owned by this process; ``keep`` leaves it running at the end.

    A kept server is detached at once rather than at the end of the run: tenantkit's exit and
    signal handlers stop every live server they manage, and under pytest-xdist the helper
    owning the server is ended with SIGTERM, which used to stop the server it had been asked
    to keep (issue 16). Detached, nothing of ours stops it: ``tenantkit server stop DIR`` does.
    """
    from tenantkit.server import EmbeddedServer

    server = EmbeddedServer().start()
    conninfo, version_num, data_dir = server.conninfo, int(server.version_num), server.data_dir
    if keep:
        server.detach()
        return ServerHandle(
            conninfo=conninfo, version_num=version_num, embedded=True, data_dir=str(data_dir)
        )
    return ServerHandle(
        conninfo=conninfo,
        version_num=version_num,
        embedded=True,
        data_dir=str(data_dir),
        stop=server.stop,
    )


def run_dir_for(testrunuid: str) -> Path:
    """The directory xdist workers of one run share (lock, state and log of the helper)."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"pgtenants-{testrunuid}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(run_dir: Path) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads((run_dir / _STATE).read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return state


def connect_server(run_dir: Path, watch_pid: int, *, keep: bool) -> ServerHandle:
    """Return the run's shared embedded server, starting its helper process if nobody has yet."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(run_dir / _LOCK):
        state = _read_state(run_dir)
        if state is None:
            state = _spawn_helper(run_dir, watch_pid, keep=keep)
    return ServerHandle(
        conninfo=str(state["conninfo"]),
        version_num=int(str(state["version_num"])),
        embedded=True,
        data_dir=str(state.get("data_dir") or "") or None,
    )


def _spawn_helper(run_dir: Path, watch_pid: int, *, keep: bool) -> dict[str, object]:
    state_path = run_dir / _STATE
    with contextlib.suppress(FileNotFoundError):
        state_path.unlink()
    command = [sys.executable, "-m", "pytest_pgtenants._serverd", str(run_dir), str(watch_pid)]
    if keep:
        command.append("--keep")
    with (run_dir / _LOG).open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        state = _read_state(run_dir)
        if state is not None:
            return state
        if process.poll() is not None:
            break
        time.sleep(0.02)
    from tenantkit.errors import ServerError

    with contextlib.suppress(ProcessLookupError):
        process.kill()
    log_text = (run_dir / _LOG).read_text(errors="replace")[-4000:]
    raise ServerError(f"the shared embedded PostgreSQL server did not start; its log:\n{log_text}")


def stop_shared_server(run_dir: Path, *, timeout: float = 30.0) -> None:
    """Stop the helper of ``run_dir`` (if one was started) and remove the directory.

    With ``--pgtenants-keep`` the helper's server was detached when it started, so ending
    the helper leaves it running; the run directory (lock, state, helper log) is removed in
    every case, it holds nothing the kept server needs.
    """
    import shutil

    state = _read_state(run_dir)
    if state is not None:
        pid = int(str(state["pid"]))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.02)
    shutil.rmtree(run_dir, ignore_errors=True)
