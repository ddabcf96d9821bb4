"""Reading schemas back: catalog snapshots and drift, descriptions, isolation checks.

- :mod:`~tenantkit.introspection.catalog`: table/index/constraint definitions, fingerprints, drift.
- :mod:`~tenantkit.introspection.describe`: what ``tenantkit shell``'s backslash commands show.
- :mod:`~tenantkit.introspection.isolation`: cross-schema references and canary checks.

Nothing is imported here; the public names are exported from :mod:`tenantkit`.
"""
