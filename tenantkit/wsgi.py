"""Deprecated path of :mod:`tenantkit.web.wsgi`.

Import from ``tenantkit.web.wsgi`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .web.wsgi import *  # noqa: F403
from .web.wsgi import __all__ as __all__

alias(__name__)
