"""The hypothesis strategies produce what they promise (checked against tenantkit.names)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from pytest_pgtenants.strategies import (
    hostile_hosts,
    hostile_schema_names,
    hostnames,
    schema_names,
)
from tenantkit.errors import InvalidHostname, InvalidSchemaName
from tenantkit.names import normalize_host, validate_schema_name


@settings(max_examples=200)
@given(schema_names())
def test_schema_names_are_valid(name: str) -> None:
    assert validate_schema_name(name) == name
    assert len(name.encode()) <= 63


@settings(max_examples=200)
@given(hostile_schema_names(shared_schema="shared"))
def test_hostile_schema_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidSchemaName):
        validate_schema_name(name, shared_schema="shared")


@settings(max_examples=200)
@given(hostnames())
def test_hostnames_are_normalised(host: str) -> None:
    assert normalize_host(host) == host


@settings(max_examples=200)
@given(hostile_hosts())
def test_hostile_hosts_are_rejected(host: str) -> None:
    with pytest.raises(InvalidHostname):
        normalize_host(host)


def test_strategies_in_an_inner_run(pytester: pytest.Pytester) -> None:
    """Usable from a user's test module (importing them needs no server)."""
    pytester.makepyfile(
        """
        from hypothesis import given
        from pytest_pgtenants.strategies import schema_names

        @given(schema_names(max_size=8))
        def test_short(name):
            assert len(name) <= 8
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
