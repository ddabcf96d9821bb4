"""Deprecated path of :mod:`tenantkit.provisioning.clone`.

Import from ``tenantkit.provisioning.clone`` (or the name from ``tenantkit``); this alias goes
away in the release after next (see :mod:`tenantkit._moved`).
"""

from __future__ import annotations

from ._moved import alias
from .provisioning.clone import *  # noqa: F403
from .provisioning.clone import __all__ as __all__

alias(__name__)
