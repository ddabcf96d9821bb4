"""Private machinery of :mod:`tenantkit.server`: accounts, directories, the cluster cache,
and the testing.postgresql subclass that runs postgres.

Split from ``server.py`` so that module holds the public surface (``EmbeddedServer``, signal
and exit handling) and this one the file-system and process details.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ServerError

__all__ = [
    "SHM_MIN_FREE",
    "SUPERUSER",
    "Account",
    "PortInUse",
    "account_kwargs",
    "cache_key",
    "cached_cluster",
    "child_env",
    "chown",
    "clear_cache",
    "cluster_class",
    "copy_cluster",
    "default_cache_root",
    "free_port",
    "initdb_args",
    "initdb_major",
    "is_root",
    "populate_cache",
    "run_account",
    "run_initdb",
    "tmp_root",
]

#: The superuser created by initdb; the conninfo always connects as this role.
SUPERUSER = "postgres"

_ENV_USER = "PGTENANTS_PG_USER"
_ENV_CACHE = "PGTENANTS_CACHE_DIR"
_ENV_TMP = "PGTENANTS_TMPDIR"
_CACHE_LAYOUT = "1"  # bump when the cached cluster's layout or initdb options change
_PORT_ATTEMPTS = 20
_PORT_IN_USE_MARKERS = ("could not bind", "Address already in use", "could not create any TCP/IP")

Account = tuple[str, int, int]
"""``(name, uid, gid)`` of the account PostgreSQL runs as."""


# --- accounts and directories --------------------------------------------------------------


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_account(user: str | None) -> Account | None:
    """The ``(name, uid, gid)`` to run initdb/postgres as, or None to run as ourselves.

    initdb and postgres refuse to run as root, so as root we switch to ``user``, else
    ``PGTENANTS_PG_USER``, else the ``postgres`` account, else ``nobody``.
    """
    if not is_root():
        return None
    import pwd

    wanted = user or os.environ.get(_ENV_USER) or None
    names = [wanted] if wanted else ["postgres", "nobody"]
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise ServerError(
                f"cannot run PostgreSQL as {name!r}: it is a root account and initdb/postgres "
                "refuse to run as root. Pass user= (or set PGTENANTS_PG_USER) to an "
                "unprivileged account."
            )
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    raise ServerError(
        f"running as root, but no unprivileged account to run PostgreSQL as (tried "
        f"{', '.join(repr(n) for n in names)}). Create one (`useradd --system postgres`), "
        "pass user=, or set PGTENANTS_PG_USER."
    )


def chown(path: Path, account: Account | None) -> None:
    if account is not None:
        os.chown(path, account[1], account[2])


#: Free space /dev/shm must have before throw-away clusters go there.
SHM_MIN_FREE = 1 << 30


def _usable_shm() -> Path | None:
    shm = Path("/dev/shm")
    if not sys.platform.startswith("linux") or not shm.is_dir():
        return None
    try:
        stat = os.statvfs(shm)
    except OSError:
        return None
    writable = os.access(shm, os.W_OK | os.X_OK) and shm.stat().st_mode & 0o1777 == 0o1777
    return shm if writable and stat.f_bavail * stat.f_frsize >= SHM_MIN_FREE else None


def tmp_root() -> Path:
    """Where throw-away clusters go: ``PGTENANTS_TMPDIR``, else a roomy /dev/shm, else /tmp."""
    explicit = os.environ.get(_ENV_TMP)
    if explicit:
        return Path(explicit)
    shm = _usable_shm()
    if shm is not None:
        # A RAM file system: copying the cached cluster takes ~30 ms there instead of ~250 ms
        # on a virtual disk, and a throw-away cluster never needs to survive a reboot. Only
        # used with plenty of room (containers often give /dev/shm only 64 MB).
        return shm
    if is_root() and Path("/tmp").is_dir():
        # TMPDIR may point into a private tree (pytest's, a sandbox's) that the unprivileged
        # account cannot traverse; /tmp is world-traversable by definition.
        return Path("/tmp")
    return Path(tempfile.gettempdir())


def default_cache_root() -> Path:
    explicit = os.environ.get(_ENV_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    if is_root():
        # Not under /root: the unprivileged account runs initdb in a staging directory inside
        # the cache and must be able to reach it.
        return Path("/var/tmp/tenantkit-cache")
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "tenantkit" / "clusters"


def child_env() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGOPTIONS...) must not leak into the
    # throw-away cluster, and a locale the system lacks must not break initdb.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@cache
def initdb_major(bin_dir: Path) -> int:
    out = subprocess.run(
        [str(bin_dir / "initdb"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    for token in out.split():
        head = token.split(".")[0]
        if head.isdigit():
            return int(head)
    return 0


def initdb_args(bin_dir: Path) -> list[str]:
    args = ["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
    if initdb_major(bin_dir) >= 11:
        # 1 MB WAL segments instead of 16 MB: the cached cluster is much smaller to copy.
        args.append("--wal-segsize=1")
    return args


def run_initdb(bin_dir: Path, data_dir: Path, account: Account | None, cwd: Path) -> None:
    command = [str(bin_dir / "initdb"), "-D", str(data_dir), *initdb_args(bin_dir)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=cwd,
        **account_kwargs(account),
    )
    if result.returncode != 0:
        raise ServerError(
            f"initdb failed (exit {result.returncode}): {' '.join(command)}\n"
            f"{result.stdout}{result.stderr}"
        )


def account_kwargs(account: Account | None) -> dict[str, Any]:
    if account is None:
        return {}
    return {"user": account[1], "group": account[2], "extra_groups": []}


def cache_key(bin_dir: Path, account: Account | None) -> str:
    postgres = Path(os.path.realpath(bin_dir / "postgres"))
    stat = postgres.stat()
    ident = {
        "layout": _CACHE_LAYOUT,
        "postgres": str(postgres),
        "size": stat.st_size,
        "mtime": stat.st_mtime_ns,
        "initdb": initdb_args(bin_dir),
        "owner": account[1] if account else os.getuid() if hasattr(os, "getuid") else 0,
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return f"pg{initdb_major(bin_dir)}-{digest}"


_CACHED: dict[tuple[Path, str], Path] = {}
_CACHE_LOCK = threading.Lock()


def cached_cluster(cache_root: Path, bin_dir: Path, account: Account | None) -> Path | None:
    """Return an initialised cluster to copy, creating it once; None when caching is unsafe."""
    key = cache_key(bin_dir, account)
    entry = cache_root / key
    with _CACHE_LOCK:
        known = _CACHED.get((cache_root, key))
        if known is not None and (known / "PG_VERSION").is_file():
            return known
        try:
            cache_root.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError as exc:
            warnings.warn(f"tenantkit: cluster cache disabled ({exc})", stacklevel=3)
            return None
        if hasattr(os, "geteuid") and cache_root.stat().st_uid != os.geteuid():
            # A directory someone else made (e.g. planted in /var/tmp) is never trusted.
            warnings.warn(
                f"tenantkit: cluster cache disabled: {cache_root} is not owned by us", stacklevel=3
            )
            return None
        if not (entry / "PG_VERSION").is_file():
            populate_cache(cache_root, entry, bin_dir, account)
        _CACHED[(cache_root, key)] = entry
        return entry


def populate_cache(cache_root: Path, entry: Path, bin_dir: Path, account: Account | None) -> None:
    import fcntl

    # The lock makes a concurrent run (another pytest-xdist worker) wait for our initdb
    # instead of running its own; the rename makes the entry appear complete or not at all.
    with open(cache_root / f"{entry.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (entry / "PG_VERSION").is_file():
            return
        # Under the lock no staging directory is in use: any left is from a run killed during
        # its initdb (SIGKILL skips the cleanup below).
        for stale in cache_root.glob(f".{entry.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=cache_root))
        try:
            chown(staging, account)
            run_initdb(bin_dir, staging, account, cwd=cache_root)
            os.rename(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def copy_cluster(source: Path, target: Path) -> None:
    cp = shutil.which("cp")
    if cp is not None:
        # One cp process beats a Python tree walk; -a keeps modes and (as root) ownership;
        # --reflink=auto makes it a copy-on-write clone on file systems that can.
        args = [cp, "-a", "--reflink=auto"] if sys.platform.startswith("linux") else [cp, "-a"]
        result = subprocess.run([*args, str(source), str(target)], capture_output=True, text=True)
        if result.returncode == 0:
            return
        shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)
    stat = source.stat()
    if is_root():
        for root, dirs, files in os.walk(target):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), stat.st_uid, stat.st_gid, follow_symlinks=False)
        os.chown(target, stat.st_uid, stat.st_gid)
    target.chmod(0o700)


def clear_cache(cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Remove every cached initialised cluster (the next start runs initdb again)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    with _CACHE_LOCK:
        _CACHED.clear()
        if root.is_dir():
            for child in root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


# --- the testing.postgresql subclass ------------------------------------------------------


class PortInUse(Exception):
    pass


@cache
def cluster_class() -> type[Any]:
    """Build the testing.postgresql-based class lazily, so the core imports without it."""
    try:
        from testing.common.database import Database
    except ImportError as exc:
        raise ServerError(
            "the embedded server needs testing.postgresql: "
            "pip install 'pytest-pgtenants[server]' (or set PGTENANTS_DSN to use your own server)"
        ) from exc

    class Cluster(Database):  # type: ignore[misc]
        """testing.postgresql's ``Database`` driving our postgres: psycopg probe, no pg8000."""

        DEFAULT_SETTINGS = {"auto_start": 0, "base_dir": None, "port": None, "notify": None}
        child_process: subprocess.Popen[bytes] | None
        _use_tmpdir: bool
        name = "postgres"

        def initialize(self) -> None:
            self.bin_dir: Path = self.settings["bin_dir"]
            self.account: Account | None = self.settings["account"]
            self.fixed_port = self.settings["port"] is not None

        def get_data_directory(self) -> str:
            return os.path.join(self.base_dir, "data")

        @property
        def socket_dir(self) -> str:
            return os.path.join(self.base_dir, "sock")

        def dsn(self, **kwargs: Any) -> dict[str, Any]:
            # psycopg 3 knows ``dbname``, not testing.postgresql's ``database``.
            params: dict[str, Any] = {
                "host": "127.0.0.1",
                "port": self.settings["port"],
                "user": SUPERUSER,
                "dbname": "postgres",
            }
            params.update(kwargs)
            return params

        def setup(self) -> None:
            data = Path(self.get_data_directory())
            source: Path | None = self.settings["copy_data_from"]
            if source is not None:
                copy_cluster(source, data)
            else:
                data.mkdir(mode=0o700)
                chown(data, self.account)
                run_initdb(self.bin_dir, data, self.account, cwd=Path(self.base_dir))
            sock = Path(self.socket_dir)
            sock.mkdir(mode=0o700, exist_ok=True)
            chown(sock, self.account)

        def get_server_commandline(self) -> list[str]:
            command = [
                str(self.bin_dir / "postgres"),
                "-D",
                self.get_data_directory(),
                "-p",
                str(self.settings["port"]),
                "-k",
                self.socket_dir,
            ]
            for key, value in self.settings["server_settings"].items():
                command += ["-c", f"{key}={value}"]
            return command

        def prestart(self) -> None:
            if self.settings["port"] is None:
                self.settings["port"] = free_port()

        def start(self) -> None:
            if self.child_process is not None:
                return
            # Tells the watchdog, before and right after the spawn, that a postmaster may
            # exist: if we die while it boots, the watchdog stops it instead of leaving it
            # running until it notices its directory is gone (up to a minute).
            notify = self.settings["notify"] or (lambda message: None)
            for _attempt in range(_PORT_ATTEMPTS):
                self.prestart()
                log_path = os.path.join(self.base_dir, "postgres.log")
                notify("spawn")
                with open(log_path, "ab") as log:
                    self.child_process = subprocess.Popen(
                        self.get_server_commandline(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=child_env(),
                        cwd=self.base_dir,
                        # Its own session: a Ctrl-C in the terminal reaches us, and we decide
                        # how the server stops, instead of it dying under running teardown.
                        start_new_session=True,
                        **account_kwargs(self.account),
                    )
                notify(f"pid {self.child_process.pid}")
                try:
                    self.wait_booting()
                    return
                except PortInUse:
                    self.child_process = None
                    if self.fixed_port:
                        raise ServerError(
                            f"port {self.settings['port']} is already in use"
                        ) from None
                    self.settings["port"] = None  # another process took it: pick again
                except BaseException:
                    self.terminate()
                    raise
            raise ServerError(f"no free port after {_PORT_ATTEMPTS} attempts")

        def read_bootlog(self) -> str:
            try:
                with open(os.path.join(self.base_dir, "postgres.log"), errors="replace") as f:
                    return str(f.read())
            except OSError:
                return ""

        def wait_booting(self) -> None:
            timeout = float(self.settings["boot_timeout"])
            deadline = time.monotonic() + timeout
            pid_file = Path(self.get_data_directory()) / "postmaster.pid"
            delay = 0.002
            process = self.child_process
            assert process is not None
            while True:
                if process.poll() is not None:
                    log = self.read_bootlog()
                    if any(marker in log for marker in _PORT_IN_USE_MARKERS):
                        with contextlib.suppress(OSError):
                            os.unlink(os.path.join(self.base_dir, "postgres.log"))
                        raise PortInUse
                    raise ServerError(f"postgres exited while starting:\n{log}")
                if self.is_server_available(pid_file):
                    return
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"postgres not ready after {timeout:.0f} s:\n{self.read_bootlog()}"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

        def is_server_available(self, pid_file: Path | None = None) -> bool:
            # postgres (10+) writes "ready" as the 8th line of postmaster.pid once it accepts
            # connections: what pg_ctl waits for, without a connection attempt per poll.
            pid_file = pid_file or Path(self.get_data_directory()) / "postmaster.pid"
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                return False
            return len(lines) >= 8 and lines[7].strip() == "ready"

        def terminate(self, _signal: int | None = None) -> None:
            process = self.child_process
            if process is None or self._owner_pid != os.getpid():
                return
            # SIGQUIT (immediate shutdown) skips the shutdown checkpoint: the data is thrown
            # away anyway. A kept data directory gets a clean fast shutdown (SIGINT).
            sig = _signal if _signal is not None else signal.SIGQUIT
            with contextlib.suppress(OSError):
                process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    process.kill()
                process.wait()
            self.child_process = None

        def cleanup(self) -> None:
            if self.child_process is not None:
                return
            if self._use_tmpdir and os.path.exists(self.base_dir):
                shutil.rmtree(self.base_dir, ignore_errors=True)
                self._use_tmpdir = False

    return Cluster
