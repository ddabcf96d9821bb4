"""The packaged example project run by ``tenantkit demo``: a shared plans table, tenant notes."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MIGRATIONS"]

#: Migrations directory of the demo project (``shared/`` and ``tenant/`` subfolders).
MIGRATIONS = Path(__file__).with_name("migrations")
