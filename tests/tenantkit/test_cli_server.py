"""The ``tenantkit`` command: the group, ``--version``, ``--dsn``, ``tenantkit server`` and
``tenantkit server stop``."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import psycopg
import pytest
from _cli_support import tenantkit
from click.testing import CliRunner

from tenantkit import __version__
from tenantkit.cli import ExitCode, main, require_dsn


def _process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is dead, merely unreaped


def _wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def assert_cleaned_up(pid: int, base_dir: Path) -> None:
    assert _wait_for(lambda: _process_gone(pid)), f"postmaster {pid} still runs"
    assert _wait_for(lambda: not base_dir.exists()), f"{base_dir} still exists"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"tenantkit, version {__version__}"


def test_version_from_the_console_script() -> None:
    script = Path(sys.executable).parent / "tenantkit"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tenantkit.cli"]
    result = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True)
    assert __version__ in result.stdout


def test_help_lists_server() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "server" in result.output
    assert "--dsn" in result.output


def test_dsn_option_reaches_added_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command("probe-dsn")
    @click.pass_context
    def probe(ctx: click.Context) -> None:
        click.echo(require_dsn(ctx))

    main.add_command(probe)
    try:
        runner = CliRunner()
        monkeypatch.delenv("PGTENANTS_DSN", raising=False)
        missing = runner.invoke(main, ["probe-dsn"])
        assert missing.exit_code == 2
        assert "PGTENANTS_DSN" in missing.output
        given = runner.invoke(main, ["--dsn", "dbname=x", "probe-dsn"])
        assert given.exit_code == 0
        assert given.output.strip() == "dbname=x"
        from_env = runner.invoke(main, ["probe-dsn"], env={"PGTENANTS_DSN": "dbname=y"})
        assert from_env.output.strip() == "dbname=y"
    finally:
        main.commands.pop("probe-dsn", None)


def test_server_with_empty_bin_dir_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["server", "--bin-dir", str(tmp_path)])
    assert result.exit_code == 5
    assert "not found" in result.output
    assert "PGTENANTS_DSN" in result.output


def test_server_without_postgresql_binaries_is_one_line_and_exit_5(tmp_path: Path) -> None:
    """PGTENANTS_PG_BIN pointing at an empty directory, nothing on PATH: one error line."""
    result = tenantkit(
        "server", env={"PGTENANTS_PG_BIN": str(tmp_path), "PATH": str(tmp_path)}, timeout=60
    )
    assert result.returncode == int(ExitCode.UNAVAILABLE) == 5
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"error: PostgreSQL server programs not found: {tmp_path} (from PGTENANTS_PG_BIN)"
    )
    assert "PGTENANTS_DSN" in lines[0]


def test_server_rejects_bad_setting() -> None:
    result = CliRunner().invoke(main, ["server", "--set", "novalue"])
    assert result.exit_code == 2
    assert "NAME=VALUE" in result.output


def _start_cli(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantkit.cli", "server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PGTENANTS_DSN"},
    )
    assert process.stdout is not None
    lines: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        key, _, value = line.rstrip("\n").partition(": ")
        lines[key] = value
        if line.startswith("export "):
            lines["export"] = line.strip()
        if line.startswith("Press Ctrl-C"):
            return process, lines
    process.kill()
    assert process.stderr is not None
    pytest.fail(f"tenantkit server did not start: {lines} {process.stderr.read()}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_server_command_runs_until_signalled(sig: signal.Signals) -> None:
    process, lines = _start_cli("--set", "max_connections=220")
    dsn = lines["DSN"]
    assert lines["URL"].startswith("postgresql://postgres@127.0.0.1:")
    assert lines["export"] == f"export PGTENANTS_DSN={shlex.quote(dsn)}"
    data_dir = Path(lines["Data"])
    assert Path(lines["Log"]).parent == data_dir.parent
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_setting('max_connections')").fetchone()
        pid = conn.execute("SELECT pg_postmaster_start_time() IS NOT NULL").fetchone()
        assert row == ("220",)
        assert pid == (True,)
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Stopped." in err
    assert_cleaned_up(postmaster, data_dir.parent)


def test_server_stopped_from_another_terminal_ends_cleanly() -> None:
    """`tenantkit server stop DATA_DIR` on a foreground server: it says so and exits 0."""
    process, lines = _start_cli()
    data_dir = Path(lines["Data"])
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        stopped = tenantkit("server", "stop", str(data_dir))  # the data directory works too
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == (
            f"Stopped PostgreSQL (pid {postmaster}) and removed {data_dir.parent}."
        )
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "Stopped by `tenantkit server stop`." in err
        assert_cleaned_up(postmaster, data_dir.parent)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)


def test_detached_server_keeps_running_until_server_stop() -> None:
    result = tenantkit("server", "--detach", timeout=60)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert "Stop" in lines, result.stderr + result.stdout
    base_dir = Path(lines["Data"]).parent
    try:
        assert result.returncode == 0, result.stderr
        assert lines["Stop"] == f"tenantkit server stop {shlex.quote(str(base_dir))}"
        assert "Stopped" not in result.stderr
        postmaster = int((base_dir / "data" / "postmaster.pid").read_text().split()[0])
        with psycopg.connect(lines["DSN"]) as conn:  # the command has exited; it still runs
            assert conn.execute("select 1").fetchone() == (1,)
        stopped = tenantkit(*shlex.split(lines["Stop"])[1:])
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == (
            f"Stopped PostgreSQL (pid {postmaster}) and removed {base_dir}."
        )
        assert_cleaned_up(postmaster, base_dir)
    finally:
        if base_dir.exists():
            tenantkit("server", "stop", str(base_dir))


def _fake_server_dir(parent: Path, pid: int | None) -> Path:
    """A directory laid out like a throw-away server's, without a server."""
    base = parent / "tenantkit-fake"
    (base / "data").mkdir(parents=True)
    (base / "data" / "PG_VERSION").write_text("15\n")
    if pid is not None:
        (base / "data" / "postmaster.pid").write_text(f"{pid}\n{base / 'data'}\n")
    return base


def test_server_stop_never_signals_a_process_that_does_not_serve_the_directory(
    tmp_path: Path,
) -> None:
    """A stale postmaster.pid naming a live, unrelated process (here: a sleeping child of
    ours): nothing is signalled, the directory is removed."""
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        base = _fake_server_dir(tmp_path, bystander.pid)
        result = tenantkit("server", "stop", str(base))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"No server was running; removed {base}."
        assert not base.exists()
        assert bystander.poll() is None  # still alive
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize(
    ("layout", "code", "message"),
    [
        ("missing", 3, "does not exist"),
        ("plain", 2, "is not a tenantkit server directory"),
        ("no-pg-version", 2, "is not a tenantkit server directory"),
    ],
)
def test_server_stop_refuses_what_is_not_a_server_directory(
    tmp_path: Path, layout: str, code: int, message: str
) -> None:
    target = tmp_path / "tenantkit-nothing"
    if layout == "plain":
        target = tmp_path  # an ordinary directory, with files in it
        (tmp_path / "precious.txt").write_text("keep me")
    elif layout == "no-pg-version":
        (target / "data").mkdir(parents=True)
    result = tenantkit("server", "stop", str(target))
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {target} {message}"), result.stderr
    if layout == "plain":
        assert (tmp_path / "precious.txt").read_text() == "keep me"
    if layout == "no-pg-version":
        assert target.exists()


def test_server_help_lists_stop_and_plain_server_still_takes_options() -> None:
    result = CliRunner().invoke(main, ["server", "--help"])
    assert result.exit_code == 0
    assert "stop" in result.output and "--detach" in result.output and "--port" in result.output
    stop_help = CliRunner().invoke(main, ["server", "stop", "--help"])
    assert stop_help.exit_code == 0
    assert "DIRECTORY" in stop_help.output
