"""Deprecated path of :mod:`tenantkit.core.storage`.

Import from ``tenantkit.core.storage`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .core.storage import *  # noqa: F403
from .core.storage import __all__ as __all__

alias(__name__)
