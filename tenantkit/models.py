"""Deprecated path of :mod:`tenantkit.core.models`.

Import from ``tenantkit.core.models`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .core.models import *  # noqa: F403
from .core.models import __all__ as __all__

alias(__name__)
