"""Schema lifecycle: create, drop, rename, exists, list (sync, and async twins prefixed ``a``).

Usable without the registry. Every name is validated with
:func:`tenantkit.core.names.validate_schema_name` *before* any SQL is composed, then quoted with
``psycopg.sql.Identifier``. The functions run on the connection as given: inside the caller's
transaction when there is one, so they compose into atomic operations such as tenant creation.

The asyncio functions (:mod:`tenantkit.core._schema_async`) are the source; the sync ones
(:mod:`tenantkit.core._schema_sync`) are generated from them by ``tools/async_to_sync.py``, so the
two cannot drift apart. The pure parts (validation, SQL, error translation) are shared from
:mod:`tenantkit.core._schema_base`.
"""

from __future__ import annotations

from ._schema_async import (
    acreate_schema,
    adrop_schema,
    alist_schemas,
    arename_schema,
    aschema_exists,
)
from ._schema_sync import create_schema, drop_schema, list_schemas, rename_schema, schema_exists

__all__ = [
    "acreate_schema",
    "adrop_schema",
    "alist_schemas",
    "arename_schema",
    "aschema_exists",
    "create_schema",
    "drop_schema",
    "list_schemas",
    "rename_schema",
    "schema_exists",
]
