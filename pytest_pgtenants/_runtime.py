"""The test scope currently active, for code that cannot take fixtures (factory-boy factories)."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._session import TestScope

__all__ = ["activate", "current_scope", "deactivate"]

_SCOPE: contextvars.ContextVar[TestScope | None] = contextvars.ContextVar(
    "pytest_pgtenants_scope", default=None
)
# Factories may run in threads or event-loop tasks whose context was copied before the test
# started; the module-level fallback lets them find the running test's scope anyway.
_LAST: list[TestScope] = []


def activate(scope: TestScope) -> contextvars.Token[TestScope | None]:
    """Make ``scope`` the current test scope; returns the token for :func:`deactivate`."""
    _LAST.append(scope)
    return _SCOPE.set(scope)


def deactivate(token: contextvars.Token[TestScope | None]) -> None:
    """Undo :func:`activate`."""
    scope = _SCOPE.get()
    if scope is not None and scope in _LAST:
        _LAST.remove(scope)
    try:
        _SCOPE.reset(token)
    except ValueError:  # reset from another context: the value is dropped with it
        _SCOPE.set(None)


def current_scope() -> TestScope:
    """The running test's scope, or a ``RuntimeError`` explaining what to request."""
    scope = _SCOPE.get() or (_LAST[-1] if _LAST else None)
    if scope is None:
        raise RuntimeError(
            "pytest_pgtenants factories need a running test that uses the `tenancy` fixture "
            "(or `tenant`, `tenant_factory`...): add it to the test's arguments"
        )
    return scope
