"""Deprecated path of :mod:`tenantkit.core.registry`.

Import from ``tenantkit.core.registry`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .core.registry import *  # noqa: F403
from .core.registry import __all__ as __all__

alias(__name__)
