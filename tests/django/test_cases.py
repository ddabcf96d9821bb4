"""TenantTestCase / FastTenantTestCase / TenantClient / TenantRequestFactory, run for real.

The Django test cases run through unittest inside a pytest test (pytest-django stays out).
"""

from __future__ import annotations

import unittest
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("django_project")


def _run(*cases: type[unittest.TestCase]) -> unittest.TestResult:
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for case in cases:
        suite.addTests(loader.loadTestsFromTestCase(case))
    result = unittest.TestResult()
    suite.run(result)
    return result


def _check(result: unittest.TestResult) -> None:
    problems = [f"{test}: {trace}" for test, trace in [*result.errors, *result.failures]]
    assert problems == []
    assert result.testsRun > 0


def test_tenant_test_case_runs_in_a_fresh_tenant() -> None:
    from django.db import connection
    from project.customers.models import Client
    from project.tenant_app.models import Item

    from tenantkit.django.test.cases import TenantTestCase
    from tenantkit.django.test.client import TenantClient, TenantRequestFactory
    from tenantkit.django.utils import schema_exists

    seen: dict[str, Any] = {}

    class Case(TenantTestCase):
        def test_one(self) -> None:
            seen["schema"] = connection.schema_name
            Item.objects.create(name="made in a test")
            assert Item.objects.count() == 1

        def test_two_sees_no_data_of_test_one(self) -> None:
            assert Item.objects.count() == 0

        def test_client_and_factory(self) -> None:
            Item.objects.create(name="visible")
            client = TenantClient(self.tenant)
            response = client.get("/who/")
            assert response.json()["schema"] == "test"
            assert response.json()["items"] == ["visible"]
            request = TenantRequestFactory(self.tenant).get("/who/")
            assert request.tenant is self.tenant
            assert request.tenant.domain_url == "tenant.test.com"

    _check(_run(Case))
    assert seen["schema"] == "test"
    assert connection.schema_name == "public"
    assert not schema_exists("test")
    assert not Client.objects.filter(schema_name="test").exists()


def test_fast_tenant_test_case_keeps_its_tenant() -> None:
    from django.db import connection
    from project.customers.models import Client
    from project.tenant_app.models import Item

    from tenantkit.django.test.cases import FastTenantTestCase

    created: list[str] = []

    class First(FastTenantTestCase):
        @classmethod
        def use_new_tenant(cls) -> None:
            created.append("new")

        @classmethod
        def use_existing_tenant(cls) -> None:
            created.append("existing")

        def test_write(self) -> None:
            Item.objects.create(name="rolled back")
            assert connection.schema_name == "fast_test"

    class Second(First):
        def test_write(self) -> None:
            assert Item.objects.count() == 0

    try:
        _check(_run(First, Second))
        assert created == ["new", "existing"]
        assert connection.schema_name == "public"
    finally:
        tenant = Client.objects.get(schema_name="fast_test")
        tenant.delete(force_drop=True)
