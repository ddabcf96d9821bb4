"""User errors end as one ``error:`` line and a documented exit status, never a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest
from _cli_support import cli_env, tenantkit, tenantkit_command

from tenantkit import Tenancy
from tenantkit.cli._errors import ExitCode, one_line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_error_line(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], stderr


def test_unreachable_server(dsn: str) -> None:
    port = _closed_port()
    result = tenantkit("list", dsn=f"host=127.0.0.1 port={port} user=x dbname=x connect_timeout=3")
    assert result.returncode == ExitCode.UNAVAILABLE
    assert_one_error_line(result.stderr, "cannot connect to PostgreSQL", str(port), "--embedded")


def test_malformed_dsn() -> None:
    result = tenantkit("list", dsn="this is not a dsn")
    assert result.returncode == ExitCode.USAGE
    assert_one_error_line(result.stderr, "invalid DSN")


def test_no_database_given_says_how_to_give_one() -> None:
    result = tenantkit("list")
    assert result.returncode == ExitCode.USAGE
    assert_one_error_line(result.stderr, "--dsn", "PGTENANTS_DSN", "DATABASE_URL", "--embedded")


def test_database_url_is_read(server_conninfo: str) -> None:
    result = tenantkit("list", env={"DATABASE_URL": server_conninfo})
    # The maintenance database has no registry: reaching it proves the URL was used.
    assert result.returncode == ExitCode.NOT_FOUND
    assert_one_error_line(result.stderr, "tenantkit init")


def test_registry_not_installed(server_conninfo: str) -> None:
    result = tenantkit("show", "acme", dsn=server_conninfo)
    assert result.returncode == ExitCode.NOT_FOUND
    assert_one_error_line(result.stderr, "run `tenantkit init`")


@pytest.mark.parametrize(
    "name", ['evil"; drop schema public; --', "Upper", "pg_catalog2", "x" * 64, "public"]
)
def test_invalid_schema_names_are_refused_before_any_sql(dsn: str, name: str) -> None:
    assert tenantkit("init", dsn=dsn).returncode == 0
    result = tenantkit("create", name, dsn=dsn)
    assert result.returncode == ExitCode.USAGE
    assert_one_error_line(result.stderr, "schema name")


def test_invalid_host_is_refused(dsn: str, schema_name: str) -> None:
    assert tenantkit("init", dsn=dsn).returncode == 0
    result = tenantkit("create", schema_name, "--domain", "bad host!", dsn=dsn)
    assert result.returncode == ExitCode.USAGE
    assert_one_error_line(result.stderr, "bad host!")
    assert schema_name not in tenantkit("list", "--json", dsn=dsn).stdout  # nothing created


def test_existing_tenant_is_a_conflict(dsn: str, schema_name: str) -> None:
    assert tenantkit("init", dsn=dsn).returncode == 0
    assert tenantkit("create", schema_name, "--empty", dsn=dsn).returncode == 0
    again = tenantkit("create", schema_name, "--empty", dsn=dsn)
    assert again.returncode == ExitCode.CONFLICT
    assert_one_error_line(again.stderr, "already exists")
    assert tenantkit("drop", schema_name, "--yes", dsn=dsn).returncode == 0


def test_unknown_host(dsn: str) -> None:
    assert tenantkit("init", dsn=dsn).returncode == 0
    result = tenantkit("domains", "remove", "nobody.example.test", dsn=dsn)
    assert result.returncode == ExitCode.NOT_FOUND
    assert_one_error_line(result.stderr, "nobody.example.test", "tenantkit domains list")


def test_dsn_and_embedded_exclude_each_other(dsn: str) -> None:
    result = tenantkit("--embedded", "list", dsn=dsn)
    assert result.returncode == ExitCode.USAGE
    assert "exclude each other" in result.stderr


def test_embedded_runs_a_throw_away_server_for_one_command() -> None:
    result = tenantkit("--embedded", "init")
    assert result.returncode == 0, result.stderr
    assert "registry installed" in result.stdout
    assert (
        "embedded PostgreSQL" in result.stderr and "removed when the command ends" in result.stderr
    )


def test_messages_fold_into_one_line() -> None:
    assert one_line("first\n\tSecond part?\n") == "first. Second part?"
    assert one_line("Looked in:\n- here\n- there") == "Looked in: here; there"
    assert one_line("") == "unknown error"


def test_an_unknown_state_is_a_usage_error(dsn: str) -> None:
    result = tenantkit("list", "--state", "bogus", dsn=dsn)
    assert result.returncode == ExitCode.USAGE
    assert "'bogus' is not one of" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cancels_the_query_and_exits_130(
    dsn: str, schema_name: str, signum: signal.Signals
) -> None:
    with Tenancy(dsn, max_size=1) as tenancy:
        tenancy.install()
        tenancy.create_tenant(schema_name)
    marker = f"select pg_sleep(60) as {schema_name}"
    child = subprocess.Popen(
        [*tenantkit_command(), "--dsn", dsn, "run", schema_name, "--", marker],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Started from a test runner, SIGINT may be ignored: give the child the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    running = "select count(*) from pg_stat_activity where query = %s and state = 'active'"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while conn.execute(running, (marker,)).fetchone() != (1,):
                assert time.monotonic() < deadline, "the query never started"
                time.sleep(0.05)
            child.send_signal(signum)
            _, stderr = child.communicate(timeout=30)
            assert child.returncode == ExitCode.INTERRUPTED
            assert_one_error_line(stderr, "interrupted")
            # The server stopped running it: the query was cancelled, not abandoned.
            deadline = time.monotonic() + 10
            while conn.execute(running, (marker,)).fetchone() != (0,):
                assert time.monotonic() < deadline, "the query kept running on the server"
                time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        with Tenancy(dsn, max_size=1) as tenancy:
            tenancy.drop_tenant(schema_name, cascade=True)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("nope",), "No such command 'nope'"),
        (("--bogus",), "No such option '--bogus'"),
        (("list", "--bogus"), "No such option '--bogus'"),
        (("list", "--limit", "0"), "--limit"),
        (("create",), "give a SCHEMA"),
    ],
)
def test_every_error_says_error_in_one_style(
    dsn: str, args: tuple[str, ...], fragment: str
) -> None:
    # click's own errors said "Error:", ours "error:" (issue 16): one style.
    result = tenantkit(*args, dsn=dsn)
    assert result.returncode == ExitCode.USAGE
    assert "Error:" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, result.stderr
    assert "for help." in result.stderr  # the usage hint stays


def test_embedded_server_is_not_told_to_run_init() -> None:
    # `tenantkit init` on a server removed when the command ends helps nobody (issue 16).
    result = tenantkit("--embedded", "list")
    assert result.returncode == ExitCode.NOT_FOUND
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.stderr
    assert "tenantkit init" not in error[0]
    assert "embedded server is empty" in error[0] and "tenantkit server" in error[0]


def test_version_imports_no_command_and_no_database_driver() -> None:
    # Start-up is the floor of every command: `--version` loads click and tenantkit.cli only.
    probe = (
        "import sys\n"
        "from tenantkit.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('tenantkit.cli.'))\n"
        "print(' '.join(loaded))\n"
        "print('rich' in sys.modules, 'prompt_toolkit' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=cli_env()
    )
    modules, heavy = result.stdout.strip().splitlines()[-2:]
    assert set(modules.split()) <= {"tenantkit.cli._context", "tenantkit.cli._errors"}
    assert heavy == "False False"
