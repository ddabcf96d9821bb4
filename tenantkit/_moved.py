"""Old import paths of the modules that moved into subpackages (issue 12).

Each old module (``tenantkit/routing.py`` ...) star-imports the new one, so type checkers and
``from tenantkit.routing import X`` keep working, then calls :func:`alias`: a
``DeprecationWarning`` naming the new path, and ``sys.modules`` pointing the old name at the new
module, so the old path gives the very same module object (private names and monkeypatching
included). The old paths go away in the release after next.
"""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["MOVED", "alias"]

#: old module -> new module, for every path kept as a deprecated alias.
MOVED: dict[str, str] = {
    "tenantkit.asgi": "tenantkit.web.asgi",
    "tenantkit.catalog": "tenantkit.introspection.catalog",
    "tenantkit.clone": "tenantkit.provisioning.clone",
    "tenantkit.describe": "tenantkit.introspection.describe",
    "tenantkit.domain_sources": "tenantkit.web.sources",
    "tenantkit.inspect": "tenantkit.introspection.describe",
    "tenantkit.isolation": "tenantkit.introspection.isolation",
    "tenantkit.models": "tenantkit.core.models",
    "tenantkit.names": "tenantkit.core.names",
    "tenantkit.registry": "tenantkit.core.storage",
    "tenantkit.routing": "tenantkit.web.routing",
    "tenantkit.schema": "tenantkit.core.schema",
    "tenantkit.search_path": "tenantkit.core.context",
    "tenantkit.tenancy": "tenantkit.core.tenancy",
    "tenantkit.wsgi": "tenantkit.web.wsgi",
}


def alias(old: str) -> None:
    """Warn that ``old`` moved and make ``sys.modules[old]`` the new module."""
    new = MOVED[old]
    warnings.warn(
        f"{old} moved to {new} (or import the name from tenantkit); the old path goes away "
        "in the release after next",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
