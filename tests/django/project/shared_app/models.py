"""A shared app: its table lives in the public schema only."""

from __future__ import annotations

from django.db import models


class Announcement(models.Model):
    """Shown on the public site."""

    title = models.CharField(max_length=100)
