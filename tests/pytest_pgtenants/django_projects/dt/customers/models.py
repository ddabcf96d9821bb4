from django.conf import settings
from django.db import models

if settings.TENANCY_PACKAGE == "tenantkit.django":
    from tenantkit.django.models import DomainMixin, TenantMixin
else:
    from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    name = models.CharField(max_length=100, default="")
    created_on = models.DateTimeField(auto_now_add=True)


class Domain(DomainMixin):
    pass
