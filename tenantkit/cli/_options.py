"""Click options shared by several ``tenantkit`` commands (one definition, one help text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["migrations_option", "shared_schema_option"]

_F = TypeVar("_F", bound=Callable[..., Any])


def migrations_option(*, required: bool, purpose: str) -> Callable[[_F], _F]:
    """``--migrations DIR`` (env ``TENANTKIT_MIGRATIONS``), passed as ``migrations_dir``."""
    return click.option(
        "--migrations",
        "migrations_dir",
        # The pytest plugin's name is accepted too, so one environment serves both.
        envvar=["TENANTKIT_MIGRATIONS", "PGTENANTS_MIGRATIONS"],
        required=required,
        default=None,
        type=click.Path(exists=True, file_okay=False),
        help=f"Migrations directory holding shared/ and tenant/{purpose} "
        "[env: TENANTKIT_MIGRATIONS or PGTENANTS_MIGRATIONS].",
    )


def shared_schema_option(function: _F) -> _F:
    """``--shared-schema NAME`` (env ``TENANTKIT_SHARED_SCHEMA``, default ``public``)."""
    return click.option(
        "--shared-schema",
        envvar=["TENANTKIT_SHARED_SCHEMA", "PGTENANTS_SHARED_SCHEMA"],
        default="public",
        show_default=True,
        help="The shared schema (registry, shared tables) [env: TENANTKIT_SHARED_SCHEMA].",
    )(function)
