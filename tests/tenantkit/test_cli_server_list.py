"""``tenantkit server list``: the throw-away servers left on this machine, and how to reach and
stop them (issue 16: servers kept by ``--detach``, ``demo --keep`` or ``--pgtenants-keep``
were invisible once their output had scrolled away)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psycopg
from _cli_support import tenantkit

from tenantkit.cli.server import stop_server
from tenantkit.server import EmbeddedServer


def listed() -> dict[str, dict[str, Any]]:
    result = tenantkit("server", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {entry["directory"]: entry for entry in json.loads(result.stdout)}


def test_a_detached_server_is_listed_until_stopped() -> None:
    started = tenantkit("server", "--detach")
    assert started.returncode == 0, started.stderr
    stop_line = next(x for x in started.stdout.splitlines() if x.startswith("Stop: "))
    base_dir = stop_line.split()[-1]
    try:
        entry = listed()[base_dir]
        assert entry["state"] == "running (detached)"
        assert entry["watched_by"] is None
        assert entry["stop"] == f"tenantkit server stop {base_dir}"
        with psycopg.connect(entry["dsn"], connect_timeout=5, autocommit=True) as conn:
            assert conn.info.backend_pid != entry["pid"]  # a backend of that postmaster
            conn.execute("create database kept_by_a_test")
        assert listed()[base_dir]["databases"] == ["kept_by_a_test"]
        table = tenantkit("server", "list")
        assert table.returncode == 0
        row = next(x for x in table.stdout.splitlines() if x.startswith(base_dir))
        assert "running (detached)" in row and str(entry["port"]) in row
        assert f"export PGTENANTS_DSN='{entry['dsn']}'" in table.stdout
    finally:
        assert tenantkit("server", "stop", base_dir).returncode == 0
    assert base_dir not in listed()


def test_a_server_in_use_and_one_stopped_with_its_data_kept() -> None:
    with EmbeddedServer() as running:
        entry = listed()[str(running.base_dir)]
        assert entry["state"] == f"running (in use by pid {os.getpid()})"
        assert entry["pid"] == running.pid
    kept = EmbeddedServer(keep=True)
    kept.start()
    kept.stop()
    base_dir = Path(kept.base_dir)
    try:
        entry = listed()[str(base_dir)]
        assert entry["state"] == "stopped, data kept"
        assert (entry["pid"], entry["dsn"]) == (None, None)
    finally:
        stop_server(base_dir)
    assert not base_dir.exists()
