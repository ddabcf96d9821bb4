"""pytest_pgtenants: fast, isolated multi-tenant PostgreSQL tests (load with ``-p pytest_pgtenants``)."""

from __future__ import annotations
