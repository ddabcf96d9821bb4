"""Deprecated path of :mod:`tenantkit.core.tenancy`.

Import from ``tenantkit.core.tenancy`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .core.tenancy import *  # noqa: F403
from .core.tenancy import __all__ as __all__

alias(__name__)
