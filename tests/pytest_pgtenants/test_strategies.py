"""The hypothesis strategies produce what they promise (checked against tenantkit.core.names)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis.errors import NoSuchExample

from pytest_pgtenants.strategies import (
    host_spellings,
    hostile_hosts,
    hostile_schema_names,
    hostnames,
    lookalike_hosts,
    schema_names,
)
from tenantkit.core.names import normalize_host, validate_schema_name
from tenantkit.errors import InvalidHostname, InvalidSchemaName


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


def _found(strategy: Any, predicate: Any) -> bool:
    """Whether ``strategy`` yields a value satisfying ``predicate`` (found, not shrunk)."""
    try:
        find(
            strategy,
            predicate,
            settings=settings(max_examples=2000, database=None, phases=[Phase.generate]),
        )
    except NoSuchExample:
        return False
    return True


def test_hostile_hosts_include_near_misses() -> None:
    """Not just garbage: valid hosts spoiled by one port, character or dot."""
    for near_miss in (
        lambda h: h.endswith((":0", ":65536", ":")),
        lambda h: any(c in h for c in "\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\t\xad"),
        lambda h: "\xaa" in h or "\uff41" in h or "\u212a" in h,
        lambda h: "\u3002" in h or ".." in h,
        lambda h: any(len(label) > 63 for label in h.split(".")),
    ):
        assert _found(hostile_hosts(), near_miss)


@settings(max_examples=200)
@given(host_spellings())
def test_host_spellings_normalise_to_their_canonical_form(spelling: tuple[str, str]) -> None:
    raw, canonical = spelling
    assert normalize_host(raw) == canonical
    assert canonical.isascii() and canonical == canonical.lower()


def test_host_spellings_cover_idna_2008() -> None:
    assert _found(host_spellings(), lambda p: "\xdf" in p[0] and ":" in p[0])
    assert _found(host_spellings(), lambda p: p[0].rstrip(".").split(":")[0].isupper())


@settings(max_examples=200)
@given(lookalike_hosts())
def test_lookalikes_never_normalise_to_the_registered_host(pair: tuple[str, str]) -> None:
    registered, lookalike = pair
    assert normalize_host(registered) == registered
    assert lookalike != registered
    with contextlib.suppress(InvalidHostname):  # rejected: fine too
        assert normalize_host(lookalike) != registered


def test_lookalikes_include_idna_2003_folds() -> None:
    """Pairs IDNA 2003 folded together, the reason the strategy exists."""
    for piece in ("\xdf", "\u03c2", "\u200d", "\xad", "\xaa"):
        assert _found(lookalike_hosts(), lambda p, piece=piece: piece in p[1])


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
