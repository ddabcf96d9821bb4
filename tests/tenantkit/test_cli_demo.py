"""`tenantkit demo`: the README's main job, run through the real console script.

It must route each host to its own schema, prove isolation, and leave nothing behind: no
database on the user's server, no server process or directory of its own, unless --keep, and
then the one command it prints removes everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from _cli_support import tenantkit, tenantkit_command
from psycopg import sql

TENANTS = {"acme": "Acme Corp", "globex": "Globex", "initech": "Initech"}


def _databases(server_conninfo: str) -> set[str]:
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        return {r[0] for r in conn.execute("select datname from pg_database")}


def _line(out: str, start: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, out)
    return lines[0]


def _check_transcript(out: str) -> None:
    """What every successful demo prints: paths, routing, isolation, summary."""
    # The three provisioning paths, each with a time.
    for schema, path in [
        ("acme", "migrations replayed"),
        ("globex", "template clone"),
        ("initech", "spare claimed"),
    ]:
        row = _line(out, f"{schema} ")
        assert path in row and re.search(r"\d+\.\d ms$", row.rstrip()), row
    # Each tenant host is served from its own schema, with its own note and no other's.
    for schema, name in TENANTS.items():
        row = _line(out, f"{schema}.localhost ").split()
        assert row[1:3] == ["200", "OK"], row
        assert row[3] == schema, row
        text = " ".join(row[4:])
        assert text == f"hello from {name}", row
    assert _line(out, "ACME.localhost.:8000 ").split()[1:4] == ["200", "OK", "acme"]
    assert _line(out, "localhost ").split()[1:4] == ["200", "OK", "public"]
    assert "404 Not Found" in _line(out, "unknown.localhost ")
    assert "400 Bad Request" in _line(out, "bad host! ")
    # The isolation check ran and passed.
    assert "each tenant sees only its own notes: acme 1 row, globex 1 row, initech 1 row" in out
    assert "cross-schema references between tenant schemas: none" in out
    assert re.search(r"canary rows: [1-9]\d* written .* none visible to another tenant", out)
    assert "\nisolation OK\n" in out
    summary = out.split("\nSummary\n", 1)[1]
    assert "\nisolation  OK\n" in summary
    assert "\nmigrations 0 pending; 0 of 3 tenants drift from the template\n" in summary
    assert "each tenant host served from its own schema; unknown host 404, bad host 400" in out
    assert "\x1b[" not in out  # no colour when not on a terminal


def test_demo_with_a_dsn_works_in_its_own_database_and_drops_it(server_conninfo: str) -> None:
    result = tenantkit("demo", dsn=server_conninfo)
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    _check_transcript(out)
    match = re.search(r"in a new database (tenantkit_demo_\w+)", out)
    assert match, out
    dbname = match.group(1)
    assert f"Cleaned up: database {dbname} dropped." in out
    assert dbname not in _databases(server_conninfo)


def _postmaster_processes(base_dir: str) -> list[int]:
    """Pids of processes whose command line names ``base_dir`` (a server left behind)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if base_dir.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def _wait_for(predicate: object, timeout: float = 15.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


NEEDS_PROC = pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds servers in /proc")


@NEEDS_PROC
def test_demo_without_a_dsn_runs_an_embedded_server_and_removes_it() -> None:
    # --no-wait is the old spelling of the default (clean up and exit), still accepted.
    result = tenantkit("demo", "--no-wait")
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    _check_transcript(out)
    assert re.search(r"embedded PostgreSQL [\d.]+ at 127\.0\.0\.1:\d+, started in", out)
    match = re.search(r"Cleaned up: server stopped, (\S+) removed\.", out)
    assert match, out
    base_dir = match.group(1)
    assert Path(base_dir).name.startswith("tenantkit-")
    assert not Path(base_dir).exists()
    assert _wait_for(lambda: not _postmaster_processes(base_dir))


def _server_dirs_of(output: str) -> set[Path]:
    """Directories of the servers listening on a port named in ``output`` (found through their
    command lines: ``postgres -D DIR/data -p PORT``), however the output was wrapped."""
    ports = set(re.findall(r"127\.0\.0\.1:(\d+)", "".join(output.split())))
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if "-D" in args and "-p" in args and args[args.index("-p") + 1] in ports:
                found.add(Path(args[args.index("-D") + 1]).parent)
    return found


@contextlib.contextmanager
def _cleanup_servers(output: str) -> Iterator[None]:
    """Whatever happens in the block (even failing to read the output), no server the output
    names and no directory of one stays behind."""
    base_dirs = _server_dirs_of(output)
    try:
        yield
    finally:
        for base_dir in base_dirs:
            if base_dir.exists():
                tenantkit("server", "stop", str(base_dir))
            if base_dir.exists():  # last resort: the stop command itself is what failed
                for pid in _postmaster_processes(str(base_dir)):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                subprocess.run(["rm", "-rf", str(base_dir)], check=False)


def _run_printed(command: str) -> subprocess.CompletedProcess[str]:
    """Run a `tenantkit ...` line the demo printed, with our console script."""
    words = shlex.split(command)
    assert words[0] == "tenantkit", command
    return tenantkit(*words[1:])


@NEEDS_PROC
def test_demo_keep_leaves_the_server_running_until_the_printed_stop_command() -> None:
    result = tenantkit("demo", "--keep")
    out = result.stdout
    with _cleanup_servers(out):
        assert result.returncode == 0, result.stderr + out
        match = re.search(r"^  (tenantkit server stop (\S+))$", out, re.M)
        assert match, out
        stop, base_dir = match.group(1), Path(match.group(2))
        assert _server_dirs_of(out) == {base_dir}
        _check_transcript(out)
        assert "Cleaned up" not in out
        export = _line(out, "  export PGTENANTS_DSN=")
        dsn = shlex.split(export.split("=", 1)[1])[0]
        assert "  tenantkit shell --tenant acme" in out.splitlines()
        # The command has exited; the server still answers, with the demo's tenants.
        with psycopg.connect(dsn, autocommit=True) as conn:
            for schema, name in TENANTS.items():
                rows = conn.execute(
                    sql.SQL("select body from {}.notes").format(sql.Identifier(schema))
                ).fetchall()
                assert rows == [(f"hello from {name}",)]
        data_dir = base_dir / "data"
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])

        stopped = _run_printed(stop)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == f"Stopped PostgreSQL (pid {pid}) and removed {base_dir}."
        assert not base_dir.exists()
        assert _wait_for(lambda: not _postmaster_processes(str(base_dir)))
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)


def test_demo_keep_with_a_dsn_keeps_its_database_until_the_printed_drop(
    server_conninfo: str,
) -> None:
    # A narrow terminal width: the commands to copy must still come on one line each.
    before = _databases(server_conninfo)
    result = tenantkit("demo", "--keep", dsn=server_conninfo, env={"COLUMNS": "60"})
    # Ours is the new demo database the output names (other tests may run demos meanwhile).
    flat = "".join(result.stdout.split())
    ours = {d for d in _databases(server_conninfo) - before if d.startswith("tenantkit_demo_")}
    ours = {d for d in ours if d in flat}
    try:
        assert result.returncode == 0, result.stderr + result.stdout
        match = re.search(r"in a new database\s+(tenantkit_demo_\w+)", result.stdout)
        assert match, result.stdout
        dbname = match.group(1)
        assert ours == {dbname}
        assert dbname in _databases(server_conninfo)
        drop = _line(result.stdout, "  tenantkit --dsn ").strip()
        assert drop.endswith(f"demo --drop {dbname}")
        export = _line(result.stdout, "  export PGTENANTS_DSN=")
        assert f"dbname={dbname}" in export
        dropped = _run_printed(drop)
        assert dropped.returncode == 0, dropped.stderr
        assert dropped.stdout.strip() == f"Dropped database {dbname}."
        assert dbname not in _databases(server_conninfo)
        again = _run_printed(drop)
        assert again.returncode == 3
        assert again.stderr.strip() == (
            f"error: no database '{dbname}' on {_host_port(server_conninfo)}"
        )
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as conn:
            for name in ours:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )


def _host_port(conninfo: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or '5432'}"


def test_demo_drop_only_drops_demo_databases(server_conninfo: str) -> None:
    result = tenantkit("demo", "--drop", "postgres", dsn=server_conninfo)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 'postgres' is not a database made by")
    assert "postgres" in _databases(server_conninfo)


def test_demo_without_postgresql_binaries_says_so_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = tenantkit("demo", env={"PGTENANTS_PG_BIN": str(empty), "PATH": str(empty)})
    assert result.returncode == 5
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: PostgreSQL server programs not found")
    assert "PGTENANTS_DSN" in lines[0]
    assert "Traceback" not in result.stderr


def test_demo_help_hides_the_old_no_wait_option() -> None:
    result = subprocess.run(
        [*tenantkit_command(), "demo", "--help"], capture_output=True, text=True, check=True
    )
    assert "--keep" in result.stdout
    assert "--no-wait" not in result.stdout and "--wait" not in result.stdout
