"""Test helpers (django-tenants' ``test`` package): ``cases`` and ``client``."""
