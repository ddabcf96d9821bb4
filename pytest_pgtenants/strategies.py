"""Hypothesis strategies for schema names and hostnames, valid and hostile.

``hypothesis`` is an optional dependency (extra ``hypothesis``); it is imported when a
strategy is first built, so importing this module is free.

* :func:`schema_names` - names :func:`tenantkit.names.validate_schema_name` accepts.
* :func:`hostile_schema_names` - names it must reject (quotes, semicolons, NUL, upper case,
  non-ASCII, 64+ bytes, ``pg_`` prefix, reserved names...).
* :func:`hostnames` - valid DNS hostnames, already normalised.
* :func:`hostile_hosts` - Host header values :func:`tenantkit.names.normalize_host` must reject.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._extras import require

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["hostile_hosts", "hostile_schema_names", "hostnames", "schema_names"]


def schema_names(*, shared_schema: str = "public", max_size: int = 63) -> SearchStrategy[str]:
    """Valid tenant schema names: ``[a-z_][a-z0-9_]*``, at most ``max_size`` bytes, not reserved."""
    st = require("hypothesis.strategies")
    from tenantkit.names import is_valid_schema_name

    size = max(1, min(max_size, 63))
    pattern = rf"[a-z_][a-z0-9_]{{0,{size - 1}}}"
    result: SearchStrategy[str] = st.from_regex(pattern, fullmatch=True).filter(
        lambda name: is_valid_schema_name(name, shared_schema=shared_schema)
    )
    return result


def hostile_schema_names(*, shared_schema: str = "public") -> SearchStrategy[str]:
    """Names a schema must never get: each is rejected by ``validate_schema_name``.

    Mixes the classics of SQL injection and of silent truncation: quotes, semicolons,
    backslashes, NUL, newlines, spaces, upper case, non-ASCII letters, names of 64 or more
    bytes (PostgreSQL would truncate them), the ``pg_`` prefix, a leading digit, the empty
    string and the reserved names (``public``, ``information_schema``, the shared schema).
    """
    st = require("hypothesis.strategies")
    from tenantkit.names import is_valid_schema_name

    valid = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
    bad_chars = st.sampled_from(['"', "'", ";", "\\", "\x00", "\n", " ", "-", ".", "$", "é", "Ä"])
    injected = st.builds(
        lambda head, bad, tail: head + bad + tail, valid, bad_chars, st.text(max_size=10)
    )
    upper = valid.map(lambda s: "X" + s.upper())
    too_long = st.integers(min_value=64, max_value=100).map(lambda n: "t" * n)
    # Multi-byte characters: 32 characters but 64 bytes, so a length check in characters
    # instead of bytes would let them through.
    multibyte = st.just("é" * 32)
    pg_prefixed = valid.map(lambda s: "pg_" + s)
    digit_first = st.builds(lambda d, s: str(d) + s, st.integers(0, 9), valid)
    reserved = st.sampled_from(["", "public", "information_schema", shared_schema])
    classics = st.sampled_from(
        [
            'acme"; DROP SCHEMA public CASCADE; --',
            "acme'; DROP TABLE tenantkit_tenants; --",
            'a"b',
            "a\x00b",
            "tenant\n",
            " acme",
            "ACME",
            "acme-corp",
            "acme.corp",
        ]
    )
    anything = st.text(max_size=80)
    result: SearchStrategy[str] = st.one_of(
        classics, injected, upper, too_long, multibyte, pg_prefixed, digit_first, reserved, anything
    ).filter(lambda name: not is_valid_schema_name(name, shared_schema=shared_schema))
    return result


def hostnames(*, max_labels: int = 4) -> SearchStrategy[str]:
    """Valid, normalised DNS hostnames (lower case, no port, no trailing dot)."""
    st = require("hypothesis.strategies")
    from tenantkit.names import normalize_host

    label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
    tld = st.from_regex(r"[a-z]{2,10}", fullmatch=True)
    result: SearchStrategy[str] = (
        st.builds(
            lambda labels, top: ".".join([*labels, top]),
            st.lists(label, min_size=1, max_size=max(1, max_labels - 1)),
            tld,
        )
        .filter(lambda host: len(host) <= 253)
        .filter(lambda host: normalize_host(host) == host)
    )
    return result


def _rejected(host: str) -> bool:
    from tenantkit.errors import InvalidHostname
    from tenantkit.names import normalize_host

    try:
        normalize_host(host)
    except InvalidHostname:
        return True
    return False


def hostile_hosts() -> SearchStrategy[str]:
    """Host header values that must be rejected (400), never routed to any tenant.

    Header injection (CR/LF, NUL), URL parts (``/``, ``@``, ``?``, ``#``), spaces, empty
    labels, labels over 63 bytes, names over 253 bytes, bad ports, broken IPv6 literals and
    SQL fragments.
    """
    st = require("hypothesis.strategies")
    good = hostnames(max_labels=3)
    injected = st.builds(
        lambda host, bad, tail: host + bad + tail,
        good,
        st.sampled_from(["\r\n", "\n", "\x00", " ", "/", "@", "?", "#", "\\", ";", "'", '"', ","]),
        st.text(max_size=12),
    )
    structural = st.sampled_from(
        [
            "",
            " ",
            ".",
            "..",
            "acme..example.test",
            ".acme.example.test",
            "-acme.example.test",
            "acme-.example.test",
            "acme.example.test:port",
            "acme.example.test:99999999",
            "acme.example.test:80:80",
            "[::1",
            "[::1]x",
            "[not-an-ip]",
            "acme.example.test\r\nX-Injected: 1",
            "evil.test/acme.example.test",
            "user@acme.example.test",
            "acme'; DROP TABLE tenantkit_domains; --",
            "256.256.256.256",
        ]
    )
    long_label = st.integers(64, 80).map(lambda n: "a" * n + ".example.test")
    long_name = st.integers(128, 140).map(lambda n: ".".join(["ab"] * n))
    result: SearchStrategy[str] = st.one_of(
        structural, injected, long_label, long_name, st.text(max_size=40)
    ).filter(_rejected)
    return result
