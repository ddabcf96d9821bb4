"""The plugin's options: one spec per option, resolved as CLI > environment > ini > default.

Every option exists three times with one help string: ini ``pgtenants_x``, command line
``--pgtenants-x`` and environment variable ``PGTENANTS_X``. The command-line options default to
``None`` so that "not given" can be told apart from "given the default value".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

__all__ = ["OPTIONS", "OptionSpec", "Settings", "add_options", "parse_bool", "resolve_settings"]

Kind = Literal["str", "bool", "int", "path"]
Source = Literal["cli", "env", "ini", "default"]

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f", ""})


@dataclass(frozen=True)
class OptionSpec:
    """One option of the plugin and the help string shared by its three spellings."""

    name: str
    kind: Kind
    default: str | bool | int | None
    help: str

    @property
    def ini(self) -> str:
        """The ini key, e.g. ``pgtenants_dsn``."""
        return f"pgtenants_{self.name}"

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--pgtenants-dsn``."""
        return "--pgtenants-" + self.name.replace("_", "-")

    @property
    def no_flag(self) -> str:
        """The negative command-line flag of a boolean option, e.g. ``--pgtenants-no-keep``."""
        return "--pgtenants-no-" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``PGTENANTS_DSN``."""
        return f"PGTENANTS_{self.name.upper()}"

    @property
    def dest(self) -> str:
        """The argparse destination."""
        return f"pgtenants_{self.name}"


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "dsn",
        "str",
        None,
        "PostgreSQL server to test against: a libpq conninfo or URL for a superuser (or a role "
        "with CREATEDB) on the maintenance database. Default: start an embedded temporary "
        "server (one for the whole run, shared by pytest-xdist workers).",
    ),
    OptionSpec(
        "migrations",
        "path",
        None,
        "Migrations directory (with shared/ and tenant/ subfolders) applied to the test "
        "database and to every tenant the fixtures create.",
    ),
    OptionSpec(
        "alembic",
        "path",
        None,
        "Alembic configuration (alembic.ini) whose revisions are the migrations applied to the "
        "test database and to every tenant the fixtures create, instead of "
        "pgtenants_migrations (see tenantkit.alembic).",
    ),
    OptionSpec(
        "keep",
        "bool",
        False,
        "Keep the test databases, tenant schemas (and the embedded server) after the run and "
        "print how to connect to them, including a `tenantkit shell` command line.",
    ),
    OptionSpec(
        "strict",
        "bool",
        False,
        "Strict mode for every test: a statement run on a tenancy connection with no tenant "
        "bound fails the test (per test: @pytest.mark.pgtenants_strict).",
    ),
    OptionSpec(
        "rollback",
        "bool",
        False,
        "Rollback mode for every test: tenant_conn runs in one transaction that is rolled back "
        "at the end of the test instead of committing (per test: @pytest.mark.pgtenants_rollback).",
    ),
    OptionSpec(
        "spares",
        "int",
        20,
        "How many fully migrated spare schemas each test database keeps warm, so that a fresh "
        "tenant is claimed by a rename in milliseconds (0 disables spares).",
    ),
    OptionSpec(
        "cache",
        "bool",
        True,
        "Keep the template database (keyed by a hash of the migrations and the tool and server "
        "versions) on the server between runs, so the next run skips migrating.",
    ),
    OptionSpec(
        "shared_schema",
        "str",
        "public",
        "The shared schema holding the tenant registry and shared tables.",
    ),
    OptionSpec(
        "domain",
        "str",
        "example.test",
        "Base domain of the hosts given to tenants the fixtures create (<schema>.<domain>).",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The resolved options of one run; ``sources`` tells where each value came from."""

    dsn: str | None = None
    migrations: Path | None = None
    alembic: Path | None = None
    keep: bool = False
    strict: bool = False
    rollback: bool = False
    spares: int = 20
    cache: bool = True
    shared_schema: str = "public"
    domain: str = "example.test"
    sources: Mapping[str, Source] = field(default_factory=dict)


def parse_bool(value: str, *, what: str) -> bool:
    """Parse a yes/no option value, raising ``pytest.UsageError`` naming ``what`` when invalid."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise pytest.UsageError(f"{what}: expected a boolean (yes/no, true/false, 1/0), got {value!r}")


def add_options(parser: pytest.Parser) -> None:
    """Register every option as ini key and command-line flag (env vars need no registration)."""
    group = parser.getgroup("pgtenants", "multi-tenant PostgreSQL testing (pytest_pgtenants)")
    for spec in OPTIONS:
        help_text = f"{spec.help} [ini {spec.ini}, env {spec.env}]"
        if spec.kind == "bool":
            # A pair of flags, so the command line can also override a `yes` coming from the
            # environment or the ini file. (An optional value, `--pgtenants-keep[=no]`, would
            # swallow a following test path: `--pgtenants-keep tests/`.)
            group.addoption(
                spec.flag,
                dest=spec.dest,
                action="store_const",
                const="yes",
                default=None,
                help=help_text,
            )
            group.addoption(
                spec.no_flag,
                dest=spec.dest,
                action="store_const",
                const="no",
                default=None,
                help=f"Negates {spec.flag}.",
            )
        else:
            group.addoption(spec.flag, dest=spec.dest, default=None, help=help_text)
        parser.addini(spec.ini, help=spec.help, type="string", default="")


def _convert(spec: OptionSpec, raw: str, what: str, base: Path) -> str | bool | int | Path | None:
    if spec.kind == "bool":
        return parse_bool(raw, what=what)
    if spec.kind == "int":
        try:
            number = int(raw.strip())
        except ValueError:
            raise pytest.UsageError(f"{what}: expected an integer, got {raw!r}") from None
        if number < 0:
            raise pytest.UsageError(f"{what}: must not be negative, got {number}")
        return number
    if spec.kind == "path":
        path = Path(raw.strip()).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    text = raw.strip()
    return text or None


def resolve_settings(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every option with the precedence CLI > environment > ini > default.

    Relative paths are taken relative to where they were written: the invocation directory for
    the command line and the environment, the ini file's directory for the ini file.
    """
    env = os.environ if environ is None else environ
    invocation_dir = Path(config.invocation_params.dir)
    ini_dir = Path(config.inipath).parent if config.inipath else Path(config.rootpath)
    values: dict[str, object] = {}
    sources: dict[str, Source] = {}
    for spec in OPTIONS:
        cli_value = config.getoption(spec.dest, default=None)
        ini_value = str(config.getini(spec.ini) or "")
        if cli_value is not None:
            value = _convert(spec, str(cli_value), spec.flag, invocation_dir)
            source: Source = "cli"
        elif env.get(spec.env, "") != "":
            value = _convert(spec, env[spec.env], spec.env, invocation_dir)
            source = "env"
        elif ini_value.strip():
            value = _convert(spec, ini_value, f"ini {spec.ini}", ini_dir)
            source = "ini"
        else:
            value = spec.default  # no path option has a default
            source = "default"
        values[spec.name] = value
        sources[spec.name] = source
    return Settings(**values, sources=sources)  # type: ignore[arg-type]
