"""A tenant app: its tables live in every tenant schema."""

from __future__ import annotations

from django.db import models


class Item(models.Model):
    """Something a tenant owns."""

    name = models.CharField(max_length=100)


class Note(models.Model):
    """A note on an item (added by the second migration)."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="notes")
    text = models.TextField(default="")
