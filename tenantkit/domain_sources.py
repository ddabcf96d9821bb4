"""Deprecated path of :mod:`tenantkit.web.sources`.

Import from ``tenantkit.web.sources`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .web.sources import *  # noqa: F403
from .web.sources import __all__ as __all__

alias(__name__)
