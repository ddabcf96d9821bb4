"""``EXTRA_SET_TENANT_METHOD_PATH`` target of the tests: records what it was called with."""

from __future__ import annotations

from typing import Any

calls: list[str] = []


def record_tenant(connection: Any, tenant: Any) -> None:
    """Remember the schema ``connection.set_tenant()`` switched to."""
    calls.append(tenant.schema_name)
