"""Deprecated alias of :mod:`tenantkit.describe` (this name shadowed the standard library's
``inspect`` module inside the package). Import from ``tenantkit.describe``; this alias goes
away in the next release."""

from __future__ import annotations

import warnings

from .describe import *  # noqa: F403
from .describe import __all__ as __all__

warnings.warn(
    "tenantkit.inspect is renamed tenantkit.describe; the old name goes away in the next release",
    DeprecationWarning,
    stacklevel=2,
)
