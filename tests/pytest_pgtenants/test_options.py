"""Options: every option from each source, the precedence CLI > env > ini > default, errors."""

from __future__ import annotations

import pytest

from pytest_pgtenants._options import OPTIONS

# (option, ini value, env value, cli value, how the header shows each)
VALUES = {
    "dsn": None,  # tested separately: it decides which server is used
    "migrations": ("ini_dir", "env_dir", "cli_dir"),
    "keep": ("yes", "no", "yes"),
    "strict": ("yes", "no", "yes"),
    "rollback": ("yes", "no", "yes"),
    "spares": ("7", "8", "9"),
    "cache": ("no", "yes", "no"),
    "shared_schema": ("shared_ini", "shared_env", "shared_cli"),
    "domain": ("ini.test", "env.test", "cli.test"),
}

SPECS = {spec.name: spec for spec in OPTIONS}


def _expect(name: str, raw: str, pytester: pytest.Pytester) -> str:
    spec = SPECS[name]
    if spec.kind == "bool":
        return "True" if raw == "yes" else "False"
    if spec.kind == "path":
        return str(pytester.path / raw)
    return raw


NAMES = [n for n, v in VALUES.items() if v is not None]


@pytest.mark.parametrize("step", ["default", "ini", "env", "cli"])
def test_precedence(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """For every option, each step of CLI > env > ini > default wins over the ones below it.

    One inner run per step sets every option at that step and all the steps below it.
    """
    lines = ["[pytest]"]
    args = [
        "-p",
        "pytest_pgtenants",
        "-p",
        "no:cacheprovider",
        "-s",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    for name in NAMES:
        spec = SPECS[name]
        ini_value, env_value, cli_value = VALUES[name]  # type: ignore[misc]
        if spec.kind == "path":
            for raw in (ini_value, env_value, cli_value):
                (pytester.path / raw).mkdir(exist_ok=True)
        monkeypatch.delenv(spec.env, raising=False)
        if step in ("ini", "env", "cli"):
            lines.append(f"{spec.ini} = {ini_value}")
        if step in ("env", "cli"):
            monkeypatch.setenv(spec.env, env_value)
        if step == "cli":
            if spec.kind == "bool":
                args.append(spec.flag if cli_value == "yes" else spec.no_flag)
            else:
                args.append(f"{spec.flag}={cli_value}")
    pytester.makeini("\n".join(lines))
    # Only reads the settings: starts no server.
    pytester.makepyfile(
        f"""
        def test_show(request):
            from pytest_pgtenants.fixtures import SESSION_KEY
            s = request.config.stash[SESSION_KEY].settings
            for name in {NAMES!r}:
                print("SETTING", name, getattr(s, name), s.sources[name])
        """
    )
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=1)
    for name in NAMES:
        spec = SPECS[name]
        if step == "default":
            expected = str(spec.default)
        else:
            ini_value, env_value, cli_value = VALUES[name]  # type: ignore[misc]
            raw = {"ini": ini_value, "env": env_value, "cli": cli_value}[step]
            expected = _expect(name, raw, pytester)
        result.stdout.fnmatch_lines([f"*SETTING {name} {expected} {step}"])


@pytest.mark.parametrize("step", ["ini", "env", "cli"])
def test_dsn_precedence(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The DSN follows the same precedence (and the header redacts passwords)."""
    values = {"ini": "host=ini.invalid", "env": "host=env.invalid", "cli": "host=cli.invalid"}
    pytester.makeini(f"[pytest]\npgtenants_dsn = {values['ini']} password=secret\n")
    monkeypatch.delenv("PGTENANTS_DSN", raising=False)
    if step in ("env", "cli"):
        monkeypatch.setenv("PGTENANTS_DSN", values["env"])
    args = [
        "-p",
        "pytest_pgtenants",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if step == "cli":
        args.append(f"--pgtenants-dsn={values['cli']}")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"pgtenants: dsn=*host={step}.invalid* ({step}),*"])
    assert "secret" not in result.stdout.str()


def test_default_dsn_is_embedded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any DSN the header says the embedded server will be used (none started here)."""
    monkeypatch.delenv("PGTENANTS_DSN", raising=False)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess(
        "-p",
        "pytest_pgtenants",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["pgtenants: dsn=embedded (default),*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pgtenants-spares=lots"], "*--pgtenants-spares: expected an integer*'lots'*"),
        (["--pgtenants-spares=-1"], "*--pgtenants-spares: must not be negative*"),
        (
            ["--pgtenants-migrations=nowhere"],
            "*migrations directory*nowhere*(from cli) does not exist*",
        ),
    ],
)
def test_invalid_values(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    """Bad option values stop the run with a usage error naming the option."""
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess("-p", "pytest_pgtenants", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_invalid_env_value(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment variable with a bad value is named in the error."""
    monkeypatch.setenv("PGTENANTS_STRICT", "sometimes")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_inprocess("-p", "pytest_pgtenants")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*PGTENANTS_STRICT: expected a boolean*"])


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    """`pytest --help` shows each option once as flag and once as ini key, with its env var."""
    result = pytester.runpytest_inprocess("-p", "pytest_pgtenants", "--help")
    out = result.stdout.str()
    for spec in OPTIONS:
        assert spec.flag in out
        if spec.kind == "bool":
            assert spec.no_flag in out
        assert f"{spec.ini} (" in out or f"{spec.ini}:" in out or spec.ini in out
        assert spec.env in out


def test_markers_registered(pytester: pytest.Pytester) -> None:
    """`pytest --markers` documents the plugin's markers."""
    result = pytester.runpytest_inprocess("-p", "pytest_pgtenants", "--markers")
    result.stdout.fnmatch_lines(
        [
            '@pytest.mark.tenants("acme", "globex", ...)*',
            "@pytest.mark.pgtenants_strict*",
            "@pytest.mark.pgtenants_rollback*",
        ]
    )


def test_plugin_import_starts_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the plugin imports neither psycopg nor tenantkit; unused, it starts no server."""
    monkeypatch.delenv("PGTENANTS_DSN", raising=False)
    pytester.makepyfile(
        """
        import sys
        def test_modules():
            ours = sorted(m for m in sys.modules if m.startswith(("pytest_pgtenants", "tenantkit")))
            assert "psycopg" not in sys.modules, ours
            assert "tenantkit.server" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "pytest_pgtenants",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(passed=1)


def test_loaded_with_pytest_plugins(pytester: pytest.Pytester) -> None:
    """`pytest_plugins = ["pytest_pgtenants"]` in a conftest loads hooks, options and fixtures."""
    pytester.makeconftest('pytest_plugins = ["pytest_pgtenants"]')
    pytester.makepyfile(
        """
        def test_settings(pgtenants_settings):
            assert pgtenants_settings.spares == 5
        """
    )
    result = pytester.runpytest_inprocess(
        "--pgtenants-spares=5",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    )
    result.assert_outcomes(passed=1)
