"""Import optional dependencies lazily, with an error saying which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

_EXTRAS = {
    "factory": ("factory-boy", "factories"),
    "hypothesis": ("hypothesis", "hypothesis"),
    "httpx": ("httpx", "pytest"),
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` naming the package and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        package, extra = _EXTRAS.get(top, (top, "all"))
        raise ImportError(
            f"pytest_pgtenants needs {package} for this: pip install {package!r} "
            f"(or pip install 'pytest-pgtenants[{extra}]')"
        ) from exc
