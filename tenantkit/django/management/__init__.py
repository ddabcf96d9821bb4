"""Management commands of ``tenantkit.django`` (django-tenants' names and options)."""
