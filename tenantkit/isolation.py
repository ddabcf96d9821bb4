"""Deprecated path of :mod:`tenantkit.introspection.isolation`.

Import from ``tenantkit.introspection.isolation`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .introspection.isolation import *  # noqa: F403
from .introspection.isolation import __all__ as __all__

alias(__name__)
