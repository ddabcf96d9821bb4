"""``python -m tenantkit.cli``: the ``tenantkit`` command without the console script."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main(prog_name="tenantkit")
