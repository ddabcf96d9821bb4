"""Deprecated path of :mod:`tenantkit.core.names`.

Import from ``tenantkit.core.names`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .core.names import *  # noqa: F403
from .core.names import __all__ as __all__

alias(__name__)
