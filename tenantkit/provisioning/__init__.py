"""Fast tenant creation: warm spares, a template at the migration head, schema cloning.

- :mod:`~tenantkit.provisioning.provisioners`: ``MigrationProvisioner``, ``Spares``,
  ``Template``, ``CloneProvisioner``.
- :mod:`~tenantkit.provisioning.clone`: ``clone_schema`` and the clone scripts.
"""

from __future__ import annotations

from .provisioners import (
    SPARE_PREFIX,
    CloneProvisioner,
    MigrationProvisioner,
    Spares,
    Template,
)

__all__ = ["SPARE_PREFIX", "CloneProvisioner", "MigrationProvisioner", "Spares", "Template"]
