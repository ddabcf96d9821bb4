"""Deprecated path of :mod:`tenantkit.web.asgi`.

Import from ``tenantkit.web.asgi`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .web.asgi import *  # noqa: F403
from .web.asgi import __all__ as __all__

alias(__name__)
