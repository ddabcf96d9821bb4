"""The ``tenantkit`` command: the group, ``--version``, ``--dsn`` and ``tenantkit server``."""

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
from click.testing import CliRunner

from tenantkit import __version__
from tenantkit.cli import main, require_dsn


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
    assert result.exit_code == 1
    assert "not found" in result.output
    assert "PGTENANTS_DSN" in result.output


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
