"""The embedded PostgreSQL server: discovery, root handling, caching, ports and cleanup.

These tests start real servers of their own (they do not use PGTENANTS_DSN's server) and only
ever look at the processes and directories of the servers they started: other PostgreSQL
servers run on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import tenantkit.server._cluster as cluster_module
from tenantkit.errors import PostgresNotFound, ServerError
from tenantkit.server import (
    EmbeddedServer,
    ExternalServer,
    conninfo_to_url,
    server_conninfo_from_env,
)
from tenantkit.server._binaries import bundled_bin_dir, find_pg_bin

IS_ROOT = os.geteuid() == 0


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (an unreaped zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path`` (the postmaster names its -D)."""
    found = []
    needle = str(path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and not process_gone(int(entry.name)):
            found.append(int(entry.name))
    return found


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def assert_cleaned_up(pid: int, base_dir: Path) -> None:
    assert wait_for(lambda: process_gone(pid)), f"postmaster {pid} still runs"
    assert wait_for(lambda: not base_dir.exists()), f"{base_dir} still exists"
    # Nothing else mentioning it (backends, the watchdog) may linger either.
    assert wait_for(lambda: processes_using(base_dir) == []), processes_using(base_dir)


@pytest.fixture
def cache_dir() -> Iterator[Path]:
    """A private cluster cache reachable by the unprivileged account when we are root."""
    path = Path(tempfile.mkdtemp(prefix="tenantkit-test-cache-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_start_exposes_connection_details() -> None:
    with EmbeddedServer() as server:
        assert server.running
        assert server.conninfo == (
            f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        )
        assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        assert server.conninfo_for("other").endswith("dbname=other")
        assert server.version.split(".")[0] == str(server.version_num // 10000)
        assert (server.data_dir / "PG_VERSION").is_file()
        assert server.data_dir.parent == server.base_dir
        assert server.base_dir.name.startswith("tenantkit-")
        with psycopg.connect(server.conninfo) as conn:
            row = conn.execute(
                "SELECT current_user, current_setting('fsync'), "
                "current_setting('synchronous_commit'), current_setting('full_page_writes'), "
                "current_setting('max_connections')::int, current_setting('server_version_num')"
            ).fetchone()
        assert row == ("postgres", "off", "off", "off", 300, str(server.version_num))
        # The unix socket works too.
        with psycopg.connect(
            host=str(server.socket_dir), port=server.port, user="postgres", dbname="postgres"
        ) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_settings_override_defaults() -> None:
    with EmbeddedServer(settings={"max_connections": 210, "jit": True}) as server:
        with psycopg.connect(server.conninfo) as conn:
            row = conn.execute(
                "SELECT current_setting('max_connections'), current_setting('jit')"
            ).fetchone()
        assert row == ("210", "on")


def test_managed_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        EmbeddedServer(settings={"port": 5})


def test_normal_stop_removes_process_and_directory() -> None:
    server = EmbeddedServer().start()
    pid, base = server.pid, server.base_dir
    assert pid is not None
    assert base.is_dir()
    server.stop()
    assert not server.running
    assert_cleaned_up(pid, base)
    server.stop()  # idempotent


def test_exception_in_block_cleans_up() -> None:
    seen: dict[str, Any] = {}

    def fail_inside() -> None:
        with EmbeddedServer() as server:
            seen.update(pid=server.pid, base=server.base_dir)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert_cleaned_up(seen["pid"], seen["base"])


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from tenantkit.server import EmbeddedServer

    server = EmbeddedServer()
    if sys.argv[1] == "with":
        with server:
            print(json.dumps({"pid": server.pid, "base": str(server.base_dir)}), flush=True)
            if sys.argv[2] == "raise":
                raise SystemExit("failing on purpose")
            time.sleep(60)
    else:
        server.start()  # no stop(): the handlers, atexit or the watchdog must clean up
        print(json.dumps({"pid": server.pid, "base": str(server.base_dir)}), flush=True)
        if sys.argv[2] == "sleep":
            time.sleep(60)
    """
)


def _default_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def run_child(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PGTENANTS_DSN"},
        # Start the child with the dispositions a user's process has: a SIGINT ignored by
        # whatever ran the test suite would otherwise be inherited, and the child would sleep
        # through the signal under test (seen once in CI). test_cli_errors does the same.
        preexec_fn=_default_signals,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        assert process.stderr is not None
        pytest.fail(f"child failed: {process.stderr.read()}")
    return process, json.loads(line)


@pytest.mark.parametrize(
    ("mode", "sig"),
    [
        ("plain", signal.SIGTERM),
        ("plain", signal.SIGINT),
        ("with", signal.SIGTERM),
        ("with", signal.SIGINT),
        ("plain", signal.SIGKILL),  # no handler runs at all: the watchdog cleans up
    ],
)
def test_parent_signal_cleans_up(mode: str, sig: signal.Signals) -> None:
    process, info = run_child(mode, "sleep")
    assert not process_gone(info["pid"])
    process.send_signal(sig)
    process.wait(timeout=30)
    assert_cleaned_up(info["pid"], Path(info["base"]))


@pytest.mark.parametrize("mode", ["plain", "with"])
def test_parent_exit_cleans_up(mode: str) -> None:
    """Normal interpreter exit (atexit) and an exception leaving the block."""
    process, info = run_child(mode, "raise" if mode == "with" else "exit")
    process.wait(timeout=30)
    assert process.returncode == (1 if mode == "with" else 0)
    assert_cleaned_up(info["pid"], Path(info["base"]))


_CHAINING_CHILD = textwrap.dedent(
    """
    import json, os, signal
    from tenantkit.server import EmbeddedServer

    calls = []
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    server = EmbeddedServer().start()
    info = {"pid": server.pid, "base": str(server.base_dir)}
    os.kill(os.getpid(), signal.SIGTERM)
    info.update(calls=calls, running=server.running)
    print(json.dumps(info), flush=True)
    """
)


def test_sigterm_chains_to_previous_handler() -> None:
    # In a child process: the handler stops every server of its process, and this test
    # process has its own session server to keep.
    result = subprocess.run(
        [sys.executable, "-c", _CHAINING_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PGTENANTS_DSN"},
        check=True,
    )
    info = json.loads(result.stdout)
    assert info["calls"] == [signal.SIGTERM]  # the previous handler ran, and we survived it
    assert info["running"] is False
    assert_cleaned_up(info["pid"], Path(info["base"]))


# --- the owner dies abruptly: forked children, and SIGKILL in the middle of start() -------


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """A directory of our own for the servers of a child process (``PGTENANTS_TMPDIR``).

    Whatever happens to the test, every process still running in it (a postmaster the code
    under test failed to stop, its watchdog) is killed and the directory removed afterwards.
    """
    path = Path(tempfile.mkdtemp(prefix="tenantkit-test-tmp-", dir=cluster_module.tmp_root()))
    path.chmod(0o755)  # as root, the unprivileged account must reach the server's directory
    try:
        yield path
    finally:
        for pid in processes_using(path):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: processes_using(path) == [], timeout=10)
        shutil.rmtree(path, ignore_errors=True)


def _child_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PGTENANTS_DSN"}
    env["PGTENANTS_TMPDIR"] = str(tmp)
    # The child's own temporary files too (multiprocessing's forkserver directory of an owner
    # killed with SIGKILL): inside the directory the fixture removes.
    env["TMPDIR"] = str(tmp)
    return env


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


_FORKING_OWNER = textwrap.dedent(
    """
    import json, multiprocessing, os, subprocess, sys, time
    from tenantkit.server import EmbeddedServer

    server = EmbeddedServer().start()
    how = sys.argv[1]
    if how == "os.fork":
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
    elif how == "subprocess":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]).pid
    else:  # a multiprocessing start method
        process = multiprocessing.get_context(how).Process(target=time.sleep, args=(60,))
        process.start()
        child = process.pid
    info = {"pid": server.pid, "base": str(server.base_dir), "child": child}
    print(json.dumps(info), flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("how", ["os.fork", "fork", "forkserver", "subprocess"])
def test_owner_killed_with_forked_children_stops_the_server(how: str, private_tmp: Path) -> None:
    """Regression: children inherited the watchdog's pipe, so SIGKILL of the owner left the
    postmaster running as long as a child lived (a processes-executor worker, a pool)."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _FORKING_OWNER, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(private_tmp),
    )
    children: list[int] = []
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        if not line:
            owner.wait()
            assert owner.stderr is not None
            pytest.fail(f"owner failed: {owner.stderr.read()}")
        info = json.loads(line)
        children.append(info["child"])
        assert not process_gone(info["pid"])
        owner.kill()
        owner.wait(timeout=30)
        assert not process_gone(info["child"])  # the child outlives its parent...
        assert_cleaned_up(info["pid"], Path(info["base"]))  # ...the server does not
    finally:
        owner.kill()
        owner.wait()
        _kill_all(children)


_DYING_OWNER = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    import tenantkit.server._cluster
    from tenantkit.server import EmbeddedServer

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    when = sys.argv[1]
    if when == "spawned":  # the postmaster exists, we die before we could say so
        real_popen = subprocess.Popen

        class DieAfterSpawn(real_popen):
            def __init__(self, args, *rest, **kwargs):
                super().__init__(args, *rest, **kwargs)
                if str(args[0]).endswith("postgres"):
                    die()

        subprocess.Popen = DieAfterSpawn
    elif when == "booting":  # the watchdog was told, the server is not ready yet
        tenantkit.server._cluster.cluster_class().wait_booting = lambda self: die()
    elif when == "ready":  # the server accepts connections, start() has not returned
        cluster = tenantkit.server._cluster.cluster_class()
        real_wait = cluster.wait_booting

        def wait_then_die(self):
            real_wait(self)
            die()

        cluster.wait_booting = wait_then_die
    EmbeddedServer().start()
    print("started", flush=True)
    """
)


def _leftovers(tmp: Path) -> list[str]:
    """What remains of the servers of ``tmp``: processes, then directories."""
    return [f"pid {pid}" for pid in processes_using(tmp)] + [p.name for p in tmp.iterdir()]


@pytest.mark.parametrize("when", ["data-dir", "postmaster.pid", "spawned", "booting", "ready"])
def test_owner_killed_during_start_leaves_no_server(when: str, private_tmp: Path) -> None:
    """Regression: SIGKILL in start() could leave a postmaster running for ~60 s, until it
    noticed its directory was gone (the watchdog learnt its pid only after start-up).

    ``data-dir`` and ``postmaster.pid`` kill the owner from outside as soon as that path
    exists; in the other cases the owner kills itself right after spawning the postmaster
    (before it could tell the watchdog), while it boots, and once it is ready.
    """
    owner = subprocess.Popen(
        [sys.executable, "-c", _DYING_OWNER, when],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(private_tmp),
    )
    try:
        if when in ("data-dir", "postmaster.pid"):
            pattern = "tenantkit-*/data" + ("/postmaster.pid" if when == "postmaster.pid" else "")
            deadline = time.monotonic() + 60
            while not list(private_tmp.glob(pattern)) and owner.poll() is None:
                assert time.monotonic() < deadline, "the server never got that far"
                time.sleep(0.001)
            owner.kill()
        owner.wait(timeout=60)
        assert owner.returncode == -signal.SIGKILL, owner.stderr.read() if owner.stderr else ""
        assert wait_for(lambda: _leftovers(private_tmp) == []), _leftovers(private_tmp)
    finally:
        owner.kill()
        owner.wait()


def test_two_servers_get_different_ports() -> None:
    with EmbeddedServer() as one, EmbeddedServer() as two:
        assert one.port != two.port
        assert one.base_dir != two.base_dir
        for server in (one, two):
            with psycopg.connect(server.conninfo) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_port_taken_by_someone_else_is_repicked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        real = cluster_module.free_port
        monkeypatch.setattr(cluster_module, "free_port", lambda: next(ports, None) or real())
        with EmbeddedServer() as server:
            assert server.port != taken
            with psycopg.connect(server.conninfo) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_fixed_port_in_use_is_an_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        server = EmbeddedServer(port=taken)
        with pytest.raises(ServerError, match="in use"):
            server.start()
        assert not server.base_dir.exists()


def test_empty_bin_dir_gives_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotFound) as info:
        EmbeddedServer(bin_dir=tmp_path).start()
    message = str(info.value)
    assert str(tmp_path) in message
    assert "initdb" in message
    assert "postgres" in message
    assert "PGTENANTS_DSN" in message
    assert "apt-get install postgresql" in message
    assert isinstance(info.value, FileNotFoundError)


def test_env_bin_dir_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGTENANTS_PG_BIN", str(tmp_path))
    with pytest.raises(PostgresNotFound, match="PGTENANTS_PG_BIN"):
        find_pg_bin()


def test_nothing_found_lists_every_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tenantkit.server._binaries as binaries

    monkeypatch.delenv("PGTENANTS_PG_BIN", raising=False)
    monkeypatch.setattr(
        binaries,
        "_candidates",
        lambda: iter(
            [
                ("PATH", None),
                ("Debian/Ubuntu layout", tmp_path / "15" / "bin"),
                ("Homebrew layout", tmp_path / "brew"),
                ("pgserver", None),
            ]
        ),
    )
    with pytest.raises(PostgresNotFound) as info:
        find_pg_bin()
    message = str(info.value)
    for fragment in ("PATH: nothing found", str(tmp_path / "15" / "bin"), "Homebrew", "pgserver"):
        assert fragment in message
    assert "PGTENANTS_DSN" in message


def test_discovery_order_ends_with_bundled_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    import tenantkit.server._binaries as binaries

    monkeypatch.delenv("PGTENANTS_PG_BIN", raising=False)
    where = [w for w, _ in binaries._candidates()]
    assert where[0] == "PATH"
    assert where.index("pg_config --bindir") < where.index("Homebrew layout")
    assert where[-1].startswith("pgserver")


def test_explicit_program_path_means_its_directory() -> None:
    found = find_pg_bin()
    assert find_pg_bin(found / "postgres") == found


@pytest.mark.skipif(bundled_bin_dir() is None, reason="pgserver (extra 'bundled') not installed")
def test_bundled_postgresql_16_starts_and_answers() -> None:
    bundled = bundled_bin_dir()
    assert bundled is not None
    with EmbeddedServer(bin_dir=bundled) as server:
        assert server.version_num // 10000 == 16
        with psycopg.connect(server.conninfo) as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        assert row == (server.version_num,)


def test_warm_start_skips_initdb(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmbeddedServer(cache_dir=cache_dir) as cold:
        cold_pid = cold.pid
    entries = [p for p in cache_dir.iterdir() if p.is_dir()]
    assert len(entries) == 1
    assert (entries[0] / "PG_VERSION").is_file()
    assert not list(cache_dir.glob(".*"))  # no staging directory left behind
    assert cold_pid is not None

    def no_initdb(*args: object, **kwargs: object) -> None:
        raise AssertionError("initdb ran on a warm start")

    monkeypatch.setattr(cluster_module, "run_initdb", no_initdb)
    # Across runs too: forget the in-process cache, keep the directory.
    monkeypatch.setattr(cluster_module, "_CACHED", {})
    with EmbeddedServer(cache_dir=cache_dir) as warm:
        assert warm.data_dir != entries[0]
        with psycopg.connect(warm.conninfo) as conn:
            conn.execute("CREATE TABLE t_warm (id int)")
    # The cached cluster is never written to by a server.
    with EmbeddedServer(cache_dir=cache_dir) as again, psycopg.connect(again.conninfo) as conn:
        assert conn.execute("SELECT to_regclass('t_warm')").fetchone() == (None,)


def test_staging_directory_of_a_killed_initdb_is_removed(cache_dir: Path) -> None:
    """A run SIGKILLed during the cache's initdb leaves its staging directory behind; the next
    run that fills the cache removes it."""
    key = cluster_module.cache_key(find_pg_bin(), cluster_module.run_account(None))
    stale = cache_dir / f".{key}-killed"
    (stale / "base").mkdir(parents=True)
    with EmbeddedServer(cache_dir=cache_dir):
        pass
    assert not stale.exists()
    assert (cache_dir / key / "PG_VERSION").is_file()


def test_without_cache_runs_initdb(cache_dir: Path) -> None:
    with EmbeddedServer(cache=False, cache_dir=cache_dir) as server:
        assert (server.data_dir / "PG_VERSION").is_file()
    assert list(cache_dir.iterdir()) == []


def test_keep_leaves_data_directory(tmp_path: Path) -> None:
    server = EmbeddedServer(keep=True).start()
    pid, base = server.pid, server.base_dir
    assert pid is not None
    try:
        server.stop()
        assert wait_for(lambda: process_gone(pid))
        assert (base / "data" / "PG_VERSION").is_file()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_detach_leaves_server_running() -> None:
    server = EmbeddedServer().start()
    pid, base, conninfo = server.pid, server.base_dir, server.conninfo
    assert pid is not None
    try:
        server.detach()
        server.stop()  # no longer ours: does nothing
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        os.kill(pid, signal.SIGQUIT)
        assert wait_for(lambda: process_gone(pid))
        shutil.rmtree(base, ignore_errors=True)


def test_from_env_prefers_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGTENANTS_DSN", "host=db.example port=6543 user=app dbname=main")
    server = EmbeddedServer.from_env()
    assert isinstance(server, ExternalServer)
    with server:
        assert conninfo_to_dict(server.conninfo_for("x")) == {
            "host": "db.example",
            "port": "6543",
            "user": "app",
            "dbname": "x",
        }
        assert server.url == "postgresql://app@db.example:6543/main"
        assert server.data_dir is None
    with server_conninfo_from_env() as conninfo:
        assert conninfo == "host=db.example port=6543 user=app dbname=main"


def test_from_env_without_dsn_starts_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGTENANTS_DSN", raising=False)
    assert isinstance(EmbeddedServer.from_env(), EmbeddedServer)
    with server_conninfo_from_env() as conninfo, psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_external_server_version(server_conninfo: str) -> None:
    server = ExternalServer(server_conninfo)
    assert server.version_num >= 100000
    assert server.version.split(".")[0] == str(server.version_num // 10000)


@pytest.mark.parametrize(
    ("conninfo", "url"),
    [
        ("host=127.0.0.1 port=5 user=postgres dbname=db", "postgresql://postgres@127.0.0.1:5/db"),
        ("host=::1 port=5 user=u password=p@ss dbname=d", "postgresql://u:p%40ss@[::1]:5/d"),
        ("host=/tmp/sock port=5 dbname=d", "postgresql:///d?host=%2Ftmp%2Fsock&port=5"),
        ("host=h dbname=d sslmode=require", "postgresql://h/d?sslmode=require"),
    ],
)
def test_conninfo_to_url(conninfo: str, url: str) -> None:
    assert conninfo_to_url(conninfo) == url


@pytest.mark.skipif(not IS_ROOT, reason="root handling")
def test_as_root_runs_as_unprivileged_account() -> None:
    with EmbeddedServer() as server:
        owner = pwd.getpwuid(server.data_dir.stat().st_uid).pw_name
        assert server.account == owner != "root"
        uid_line = next(
            line
            for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uid_line.split()[1] == str(server.data_dir.stat().st_uid)
        assert "pytest-of" not in str(server.base_dir)


@pytest.mark.skipif(not IS_ROOT, reason="root handling")
def test_root_account_is_refused() -> None:
    with pytest.raises(ServerError, match="refuse to run as root"):
        EmbeddedServer(user="root").start()


_NON_ROOT_CHECK = textwrap.dedent(
    """
    import os, psycopg
    from tenantkit.server import EmbeddedServer
    assert os.geteuid() != 0
    for _ in range(2):  # cold (initdb into the cache), then warm
        with EmbeddedServer() as server, psycopg.connect(server.conninfo) as conn:
            user = conn.execute("SELECT current_user").fetchone()[0]
            base = server.base_dir
        assert not base.exists()
    print("ok", user, server.account)
    """
)


@pytest.mark.skipif(not IS_ROOT, reason="shows the non-root path from a root run")
def test_non_root_user_can_start_a_server() -> None:
    """Acceptance: the embedded server works for an ordinary account, not only for root."""
    account = next((a for a in ("postgres", "nobody") if _has_account(a)), None)
    if account is None:
        pytest.skip("no unprivileged account on this machine")
    entry = pwd.getpwnam(account)
    home = Path(tempfile.mkdtemp(prefix="tenantkit-test-home-", dir="/var/tmp"))
    os.chown(home, entry.pw_uid, entry.pw_gid)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGTENANTS_", "XDG_", "TMP"))}
    env["HOME"] = str(home)
    # Our interpreter may live where the account cannot go (pyenv under /root): hand the
    # import path over explicitly so any Python of the same version can import the project.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    interpreter = _interpreter_for(entry, env)
    if interpreter is None:
        pytest.skip(f"no Python interpreter that {account} may run")
    try:
        result = subprocess.run(
            [interpreter, "-c", _NON_ROOT_CHECK],
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=[],
            env=env,
            cwd=str(home),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        # Not root, so no account switch: the server runs as the caller.
        assert result.stdout.split() == ["ok", "postgres", "None"]
        assert (home / ".cache" / "tenantkit" / "clusters").is_dir()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _has_account(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _interpreter_for(entry: pwd.struct_passwd, env: dict[str, str]) -> str | None:
    """A Python of our version the account may execute (ours, else the system one)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3"]
    candidates.append(f"/usr/bin/python{version}")
    check = f"import sys, psycopg; assert '%d.%d' % sys.version_info[:2] == '{version}'"
    for candidate in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
        try:
            probe = subprocess.run(
                [candidate, "-c", check],
                user=entry.pw_uid,
                group=entry.pw_gid,
                extra_groups=[],
                env=env,
                cwd="/",
                capture_output=True,
                timeout=60,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


def _database_names(server_conninfo: str) -> set[str]:
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        return {r[0] for r in conn.execute("select datname from pg_database")}


def test_temporary_database_is_dropped_even_with_open_connections(server_conninfo: str) -> None:
    from tenantkit.server import temporary_database

    before = _database_names(server_conninfo)
    with temporary_database(server_conninfo, prefix="tk_tmpdb") as conninfo:
        left_open = psycopg.connect(conninfo)  # WITH (FORCE) must not wait for it
        name = left_open.info.dbname
        assert name.startswith("tk_tmpdb_")
        assert name in _database_names(server_conninfo)
    assert _database_names(server_conninfo) == before
    left_open.close()


def test_temporary_database_is_dropped_on_an_exception(server_conninfo: str) -> None:
    from tenantkit.server import temporary_database

    before = _database_names(server_conninfo)
    with pytest.raises(RuntimeError, match="boom"), temporary_database(server_conninfo):
        raise RuntimeError("boom")
    assert _database_names(server_conninfo) == before


def test_with_dbname_keeps_the_other_parameters() -> None:
    from tenantkit.server import with_dbname

    out = conninfo_to_dict(
        with_dbname("host=/tmp/s port=5433 user=me dbname=a", "b", sslmode="disable")
    )
    assert out == {
        "host": "/tmp/s",
        "port": "5433",
        "user": "me",
        "dbname": "b",
        "sslmode": "disable",
    }
