"""``tenantkit server``: a throw-away PostgreSQL for local development.

``tenantkit server [OPTIONS]`` runs one in the foreground until Ctrl-C (or, with ``--detach``,
leaves it running and returns); ``tenantkit server list`` shows the servers on this machine,
those left running (``--detach``, ``tenantkit demo --keep``, ``pytest --pgtenants-keep``) and
those stopped with their data kept (``--keep-data``); ``tenantkit server stop DIR`` stops one
and removes its directory. The stop works as root although the server runs as an
unprivileged account: it signals the postmaster named in ``postmaster.pid`` after checking it
really serves that directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import click

from ..errors import ServerError
from ._errors import CliError, ExitCode

__all__ = ["ServerDirectory", "find_servers", "server", "stop_command", "stop_server"]

#: Throw-away server directories are named ``tenantkit-*`` (see tenantkit.server); nothing
#: else is ever removed by ``tenantkit server stop``.
_DIR_PREFIX = "tenantkit-"
_STOP_TIMEOUT = 30.0


def _parse_settings(pairs: tuple[str, ...]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--set")
        settings[key.strip()] = value.strip()
    return settings


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (systemd, docker stop, kill) ends the command like Ctrl-C does: cleanly.
    raise KeyboardInterrupt


def stop_command(base_dir: str | os.PathLike[str]) -> str:
    """The shell command that stops the server in ``base_dir`` and removes the directory."""
    return f"tenantkit server stop {shlex.quote(str(base_dir))}"


# --- tenantkit server stop ---------------------------------------------------------------


def _server_dirs(given: Path) -> tuple[Path, Path]:
    """``(base_dir, data_dir)`` of a throw-away server given by either directory."""
    path = given.expanduser()
    if not path.exists():
        raise CliError(
            f"{given} does not exist: give the directory printed by `tenantkit server` "
            "(or `tenantkit demo --keep`); it may have been stopped and removed already",
            ExitCode.NOT_FOUND,
        )
    path = path.resolve()
    for base, data in ((path, path / "data"), (path.parent, path)):
        if not base.name.startswith(_DIR_PREFIX) or data.name != "data":
            continue
        # The directories belong to the account PostgreSQL runs as (mode 0700).
        if not os.access(base, os.X_OK) or (
            data.exists() and not os.access(data, os.R_OK | os.X_OK)
        ):
            raise CliError(
                f"permission denied reading {base}: run this as root or as the account that "
                f"owns it (uid {base.stat().st_uid})",
                ExitCode.FAILED,
            )
        if (data / "PG_VERSION").is_file():
            return base, data
    raise CliError(
        f"{given} is not a tenantkit server directory (expected a {_DIR_PREFIX}* directory "
        "holding data/PG_VERSION, as printed by `tenantkit server` or `tenantkit demo --keep`); "
        "nothing was stopped or removed",
        ExitCode.USAGE,
    )


def _postmaster_pid(data_dir: Path) -> int | None:
    """The pid in ``postmaster.pid``, or None when the file is missing or unreadable."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _is_gone(pid: int) -> bool:
    """Has process ``pid`` exited? (A zombie has: it is only waiting to be reaped.)"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        stat = ""
    if stat:
        return stat.rsplit(")", 1)[-1].split()[0] == "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _serves(pid: int, data_dir: Path) -> bool:
    """Is ``pid`` a live postmaster of ``data_dir``, not a recycled process id?

    The postmaster's working directory is its data directory (it changes to it at start),
    which /proc shows; without /proc (macOS) the pid file is trusted.
    """
    if _is_gone(pid):
        return False
    cwd = Path(f"/proc/{pid}/cwd")
    try:
        return Path(os.readlink(cwd)).resolve() == data_dir.resolve()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc: trust postmaster.pid
    except PermissionError:
        return True  # not ours to inspect: the kill below says whether it is ours to stop


def stop_server(directory: str | os.PathLike[str]) -> tuple[Path, int | None]:
    """Stop the throw-away server in ``directory`` (its base or data directory) and remove it.

    Returns ``(base_dir, pid)``; ``pid`` is None when no server was running there. Raises
    :class:`~tenantkit.cli.CliError` for a directory that is not a tenantkit server's, or
    when the process may not be signalled.
    """
    base, data = _server_dirs(Path(directory))
    pid = _postmaster_pid(data)
    if pid is not None and not _serves(pid, data):
        pid = None  # a stale pid file (the server crashed or was killed): nothing to stop
    if pid is not None:
        try:
            # Immediate shutdown, as EmbeddedServer.stop() does: the data is thrown away.
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            pid = None
        except PermissionError as exc:
            raise CliError(
                f"not allowed to stop PostgreSQL (pid {pid}) serving {base}: run this as root "
                "or as the account that started it",
                ExitCode.FAILED,
            ) from exc
    if pid is not None:
        deadline = time.monotonic() + _STOP_TIMEOUT
        while not _is_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _is_gone(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while not _is_gone(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
    for _ in range(50):
        shutil.rmtree(base, ignore_errors=True)
        if not base.exists():
            break
        time.sleep(0.1)  # a backend still exiting may write a file as we delete
    if base.exists():
        raise CliError(f"stopped the server but could not remove {base}", ExitCode.FAILED)
    return base, pid


# --- tenantkit server list ---------------------------------------------------------------


@dataclass(frozen=True)
class ServerDirectory:
    """A throw-away server's directory found on this machine.

    ``pid`` is the live postmaster (None: stopped, its data kept); ``watched_by`` the process
    whose watchdog will stop and remove it when that process ends (None: detached or kept,
    so only ``tenantkit server stop`` ends it).
    """

    base_dir: Path
    pid: int | None
    port: int | None
    host: str | None
    started: datetime | None
    watched_by: int | None
    databases: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """``running (detached)``, ``running (in use by pid N)`` or ``stopped, data kept``."""
        if self.pid is None:
            return "stopped, data kept"
        if self.watched_by is not None:
            return f"running (in use by pid {self.watched_by})"
        return "running (detached)"

    @property
    def conninfo(self) -> str | None:
        """How to connect, while it runs."""
        from ..server._cluster import SUPERUSER

        if self.pid is None or self.port is None:
            return None
        return f"host={self.host or '127.0.0.1'} port={self.port} user={SUPERUSER} dbname=postgres"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "directory": str(self.base_dir),
            "state": self.state,
            "pid": self.pid,
            "port": self.port,
            "dsn": self.conninfo,
            "started": self.started.isoformat() if self.started else None,
            "watched_by": self.watched_by,
            "databases": list(self.databases),
            "stop": stop_command(self.base_dir),
        }


def _search_roots(extra: Iterable[Path] = ()) -> list[Path]:
    """Where tenantkit puts throw-away servers (tenantkit.server: ``PGTENANTS_TMPDIR``, else
    /dev/shm, else the temporary directory), plus ``extra``; each once."""
    roots = [*extra]
    explicit = os.environ.get("PGTENANTS_TMPDIR")
    if explicit:
        roots.append(Path(explicit))
    roots += [Path("/dev/shm"), Path(tempfile.gettempdir()), Path("/tmp")]
    seen: dict[Path, None] = {}
    for root in roots:
        with contextlib.suppress(OSError):
            if root.is_dir():
                seen.setdefault(root.resolve())
    return list(seen)


def _watchdogs() -> dict[Path, int]:
    """Server directory -> the process owning the watchdog that guards it (Linux /proc)."""
    found: dict[Path, int] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # ``python -I -S .../tenantkit/_watchdog.py BASE_DIR KEEP`` (see tenantkit.server).
        script = next((i for i, a in enumerate(args) if a.endswith(b"_watchdog.py")), None)
        if script is None or len(args) <= script + 1:
            continue
        parent = int(stat.rsplit(")", 1)[-1].split()[1])
        base = Path(os.fsdecode(args[script + 1]))
        found[base.resolve() if base.exists() else base] = parent
    return found


def _databases(conninfo: str) -> tuple[str, ...]:
    """The databases of a running server other than ``postgres`` and the templates."""
    import psycopg

    try:
        with psycopg.connect(conninfo, connect_timeout=2, autocommit=True) as conn:
            rows = conn.execute(
                "select datname from pg_database where not datistemplate "
                "and datname <> 'postgres' order by 1"
            ).fetchall()
    except psycopg.Error:
        return ()
    return tuple(r[0] for r in rows)


def find_servers(roots: Iterable[Path] = (), *, databases: bool = True) -> list[ServerDirectory]:
    """Every tenantkit server directory (``tenantkit-*`` holding ``data/PG_VERSION``) in the
    places tenantkit puts them (and ``roots``), oldest first; with ``databases``, each
    running server is asked for its databases."""
    watchdogs = _watchdogs()
    found: list[ServerDirectory] = []
    for root in _search_roots([Path(r) for r in roots]):
        try:
            candidates = sorted(root.glob(f"{_DIR_PREFIX}*"))
        except OSError:
            continue
        for base in candidates:
            data = base / "data"
            try:
                if not (data / "PG_VERSION").is_file():
                    continue
            except OSError:
                continue  # another account's server (mode 0700): not ours to show
            pid = _postmaster_pid(data)
            lines: list[str] = []
            with contextlib.suppress(OSError):
                lines = (data / "postmaster.pid").read_text().splitlines()
            running = pid is not None and _serves(pid, data)
            started = None
            if len(lines) > 2 and lines[2].strip().isdigit():
                started = datetime.fromtimestamp(int(lines[2]), tz=timezone.utc)
            port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
            host = lines[5].split(",")[0].strip() if len(lines) > 5 else None
            entry = ServerDirectory(
                base_dir=base,
                pid=pid if running else None,
                port=port if running else None,
                host=None if host in (None, "", "*") else host,
                started=started if running else None,
                watched_by=watchdogs.get(base.resolve()),
            )
            if databases and entry.conninfo is not None:
                entry = dataclasses.replace(entry, databases=_databases(entry.conninfo))
            found.append(entry)
    found.sort(
        key=lambda x: (x.started is None, x.started or datetime.min.replace(tzinfo=timezone.utc))
    )
    return found


# --- tenantkit server --------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="TCP port [free one].")
@click.option(
    "--bin-dir",
    type=click.Path(file_okay=False, path_type=str),
    envvar="PGTENANTS_PG_BIN",
    default=None,
    help="Directory holding initdb and postgres [env: PGTENANTS_PG_BIN; else discovered].",
)
@click.option(
    "--user",
    default=None,
    envvar="PGTENANTS_PG_USER",
    help="Account to run PostgreSQL as when started as root [postgres, else nobody].",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Server setting, repeatable (e.g. --set max_connections=500).",
)
@click.option("--keep-data", is_flag=True, help="Keep the data directory after stopping.")
@click.option("--no-cache", is_flag=True, help="Run initdb instead of copying a cached cluster.")
@click.option(
    "--detach",
    is_flag=True,
    help="Start it, print how to use and stop it, and return; it runs until "
    "`tenantkit server stop DIR`.",
)
@click.pass_context
def server(
    ctx: click.Context,
    port: int | None,
    bin_dir: str | None,
    user: str | None,
    settings: tuple[str, ...],
    keep_data: bool,
    no_cache: bool,
    detach: bool,
) -> None:
    """Run a throw-away PostgreSQL for local development until Ctrl-C.

    Prints its DSN, URL and an `export PGTENANTS_DSN=...` line; everything is removed when it
    stops (unless --keep-data). `tenantkit server stop DIR` stops one left running (--detach,
    `tenantkit demo --keep`, `pytest --pgtenants-keep`) and removes its directory.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..server.embedded import EmbeddedServer

    parsed = _parse_settings(settings)
    if ctx.get_parameter_source("bin_dir") is click.core.ParameterSource.ENVIRONMENT:
        bin_dir = None  # found again by EmbeddedServer, so errors name PGTENANTS_PG_BIN
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    embedded = EmbeddedServer(
        bin_dir=bin_dir,
        user=user,
        settings=parsed,
        cache=not no_cache,
        port=port,
        keep=keep_data,
    )
    try:
        try:
            embedded.start()
        except ServerError as exc:  # PostgresNotFound included: its message says what to do
            raise CliError(str(exc), ExitCode.UNAVAILABLE) from exc
        as_user = f" (running as {embedded.account})" if embedded.account else ""
        click.echo(
            f"PostgreSQL {embedded.version} ready in {embedded.startup_seconds or 0:.2f} s{as_user}"
        )
        click.echo(f"Data: {embedded.data_dir}")
        click.echo(f"Log: {embedded.log_path}")
        click.echo(f"DSN: {embedded.conninfo}")
        click.echo(f"URL: {embedded.url}")
        click.echo(f"export PGTENANTS_DSN={shlex.quote(embedded.conninfo)}")
        if detach:
            base_dir = embedded.base_dir
            embedded.detach()
            click.echo(f"Stop: {stop_command(base_dir)}")
            return
        click.echo("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while embedded.running:
            time.sleep(0.2)
        # `tenantkit server stop` from another terminal removes the directory right after
        # stopping the postmaster: a requested stop, not a crash.
        deadline = time.monotonic() + 2
        while embedded.base_dir.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not embedded.base_dir.exists():
            click.echo("Stopped by `tenantkit server stop`.", err=True)
            return
        try:
            log = embedded.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            log = ""
        click.echo(log, err=True)
        raise CliError("PostgreSQL stopped unexpectedly; its log is above", ExitCode.UNAVAILABLE)
    except KeyboardInterrupt:
        click.echo("Stopping PostgreSQL...", err=True)
    finally:
        embedded.stop()
        signal.signal(signal.SIGTERM, previous)
    kept = f"; data kept in {embedded.data_dir}" if keep_data else ""
    click.echo(f"Stopped{kept}.", err=True)


@server.command("stop")
@click.argument("directory", type=click.Path(path_type=Path))
def stop(directory: Path) -> None:
    """Stop the throw-away server in DIRECTORY and remove the directory.

    DIRECTORY is the server's directory (tenantkit-...) or its data directory, as printed by
    `tenantkit server`, `tenantkit demo --keep` or `pytest --pgtenants-keep`. Works as root
    although the server runs as an unprivileged account.
    """
    base, pid = stop_server(directory)
    if pid is None:
        click.echo(f"No server was running; removed {base}.")
    else:
        click.echo(f"Stopped PostgreSQL (pid {pid}) and removed {base}.")


@server.command("list")
@click.option(
    "--dir",
    "roots",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Also look in this directory (repeatable) [PGTENANTS_TMPDIR, /dev/shm, the temp dir].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_servers(roots: tuple[Path, ...], as_json: bool) -> None:
    """List the throw-away servers on this machine: running ones (detached by --detach,
    `tenantkit demo --keep` or `pytest --pgtenants-keep`, or in use by a running command or
    test run) and stopped ones whose data was kept, each with how to connect and to stop it.
    """
    found = find_servers(roots)
    if as_json:
        click.echo(json.dumps([x.as_dict() for x in found], indent=2))
        return
    if not found:
        click.echo("No tenantkit servers on this machine.")
        return
    from ._context import make_console, print_rows

    now = datetime.now(timezone.utc)
    rows = []
    for x in found:
        age = ""
        if x.started is not None:
            from ._shell_render import format_duration

            age = format_duration(now - x.started)
        rows.append(
            (
                str(x.base_dir),
                x.state,
                "" if x.pid is None else str(x.pid),
                "" if x.port is None else str(x.port),
                age,
                ", ".join(x.databases),
            )
        )
    print_rows(
        make_console(),
        ["directory", "state", "pid", "port", "up", "databases"],
        rows,
        right=["pid", "port"],
        wrap=["databases"],
    )
    for x in found:
        if x.conninfo is not None and x.watched_by is None:  # left running for you
            click.echo(f"{x.base_dir.name}: export PGTENANTS_DSN={shlex.quote(x.conninfo)}")
    click.echo("Stop one and remove its directory: tenantkit server stop DIRECTORY")
