"""Property tests for the pure name helpers (tenantkit.names)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantkit.errors import InvalidHostname, InvalidSchemaName
from tenantkit.names import (
    MAX_IDENTIFIER_BYTES,
    is_valid_hostname,
    is_valid_schema_name,
    normalize_host,
    schema_name_from,
    validate_schema_name,
)

labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
# The last label has a letter: an all-numeric name is read as an IPv4 address.
hostnames = st.tuples(
    st.lists(labels, max_size=3), st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
).map(lambda parts: ".".join([*parts[0], parts[1]]))


@given(st.from_regex(r"[a-z_][a-z0-9_]{0,62}", fullmatch=True))
def test_valid_names_accepted_unless_reserved(name: str) -> None:
    reserved = name.startswith("pg_") or name in ("public", "information_schema")
    assert is_valid_schema_name(name) is not reserved
    if not reserved:
        assert validate_schema_name(name) == name


@given(st.text())
def test_every_accepted_name_is_safe(name: str) -> None:
    if is_valid_schema_name(name):
        assert len(name.encode()) <= MAX_IDENTIFIER_BYTES
        assert name.isascii()
        assert not set(name) - set("abcdefghijklmnopqrstuvwxyz0123456789_")
        assert not name.startswith("pg_")
    else:
        with pytest.raises(InvalidSchemaName):
            validate_schema_name(name)


@given(st.text(), st.sets(st.text(max_size=10), max_size=5), st.sampled_from(["", "t_"]))
def test_schema_name_from_is_valid_and_free(display: str, taken: set[str], prefix: str) -> None:
    name = schema_name_from(display, taken=taken, prefix=prefix)
    assert is_valid_schema_name(name)
    assert name not in taken


@given(hostnames, st.booleans(), st.integers(min_value=1, max_value=65535))
def test_normalize_host_idempotent(host: str, upper: bool, port: int) -> None:
    raw = (host.upper() if upper else host) + f".:{port}"
    norm = normalize_host(raw)
    assert norm == host
    assert normalize_host(norm) == norm
    assert is_valid_hostname(norm)


@given(labels, st.sampled_from(list(" /\\@\"';\x00\n<>`{}|^?#%,")), labels)
def test_hostile_hosts_rejected(before: str, bad: str, after: str) -> None:
    with pytest.raises(InvalidHostname):
        normalize_host(before + bad + after)
