"""The host router the tenantkit.django middlewares share (one per process).

Requests are answered from an in-process host table over the project's domain table, kept
current by LISTEN/NOTIFY (triggers on the tenant and domain tables) with a one-second polling
fallback. Two hooks for code that changes the registry where a notification cannot arrive in
time, such as a test that creates tenants inside a transaction it rolls back (notifications
are delivered on commit only):

- :func:`get_resolver` gives the router; its ``invalidate()`` makes the next request reload
  the host table (no I/O now);
- :func:`reset_resolver` closes it (its LISTEN connection included) and forgets it, so the
  next request builds a new one: after settings changed, or before dropping the database.
"""

from __future__ import annotations

from ._source import get_resolver, reset_resolver

__all__ = ["get_resolver", "reset_resolver"]
