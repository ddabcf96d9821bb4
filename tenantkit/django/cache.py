"""Cache keys per schema (django-tenants' ``cache`` module).

``CACHES = {"default": {..., "KEY_FUNCTION": "tenantkit.django.cache.make_key",
"REVERSE_KEY_FUNCTION": "tenantkit.django.cache.reverse_key"}}`` keeps each tenant's cache
entries apart.
"""

from __future__ import annotations

from typing import Any

from . import _state

__all__ = ["make_key", "reverse_key"]


def make_key(key: Any, key_prefix: str, version: Any) -> str:
    """The cache key of ``key`` in the current schema."""
    return f"{_state.current()[0].schema_name}:{key_prefix}:{version}:{key}"


def reverse_key(key: str) -> str:
    """The user's key from a key made by :func:`make_key`."""
    return key.split(":", 3)[3]
