"""A small django-tenants style project running on tenantkit.django (tests, benchmarks)."""
