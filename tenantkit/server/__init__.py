"""The embedded temporary PostgreSQL server.

- :mod:`~tenantkit.server.embedded`: ``EmbeddedServer`` and the conninfo helpers.
- ``_binaries`` (finding PostgreSQL), ``_cluster`` (initdb, the cached data directory, running as
  an unprivileged account), ``_watchdog`` (the process that cleans up after a dead owner).
"""

from __future__ import annotations

from .embedded import (
    DEFAULT_SETTINGS,
    EmbeddedServer,
    ExternalServer,
    bundled_bin_dir,
    clear_cache,
    conninfo_to_url,
    find_pg_bin,
    is_pg_bin_dir,
    server_conninfo_from_env,
    temporary_database,
    with_dbname,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "EmbeddedServer",
    "ExternalServer",
    "bundled_bin_dir",
    "clear_cache",
    "conninfo_to_url",
    "find_pg_bin",
    "is_pg_bin_dir",
    "server_conninfo_from_env",
    "temporary_database",
    "with_dbname",
]
