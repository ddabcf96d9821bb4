"""The database backend: ``ENGINE: "tenantkit.django.postgresql_backend"``."""
