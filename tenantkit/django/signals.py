"""django-tenants' signals, with the same names and arguments."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import Signal

__all__ = [
    "post_schema_sync",
    "schema_migrate_message",
    "schema_migrated",
    "schema_needs_to_be_sync",
    "schema_pre_migration",
]

#: Sent after a tenant was saved and its schema created and migrated (argument: ``tenant``).
post_schema_sync = Signal()
#: Sent when a new tenant was saved without creating its schema (argument: ``tenant``).
schema_needs_to_be_sync = Signal()
#: Sent after the migrations of a schema ran (argument: ``schema_name``).
schema_migrated = Signal()
#: Sent before the migrations of a schema run (argument: ``schema_name``).
schema_pre_migration = Signal()
#: Sent for each message of a schema's migration run (argument: ``message``).
schema_migrate_message = Signal()


def tenant_delete_callback(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Drop the schema of a deleted tenant whose model sets ``auto_drop_schema``.

    Also covers queryset deletes (``Client.objects.filter(...).delete()``), which do not call
    the model's ``delete()``.
    """
    from .utils import get_tenant_model, schema_exists

    try:
        model = get_tenant_model()
    except Exception:  # TENANT_MODEL not configured (yet): nothing of ours was deleted
        return
    if not isinstance(instance, model):
        return
    if instance.auto_drop_schema and schema_exists(instance.schema_name):
        instance._drop_schema(True)


post_delete.connect(tenant_delete_callback, dispatch_uid="tenantkit.django.tenant_delete_callback")
