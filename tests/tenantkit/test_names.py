"""Property tests for the pure name helpers (tenantkit.core.names), and the few places where the
names meet the database (reserved internal schemas, Unicode domains stored and routed)."""

# Fixtures come from _migrations_support (imported by name, so pytest sees them).
# ruff: noqa: F811

from __future__ import annotations

import ipaddress
import re

import psycopg
import pytest
from _migrations_support import mig_dir, mig_tenancy, shared_name  # noqa: F401 (fixtures)
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from pytest_pgtenants.strategies import host_spellings, hostile_hosts, lookalike_hosts
from tenantkit.core.names import (
    MAX_IDENTIFIER_BYTES,
    RESERVED_PREFIXES,
    _normalize_host_slow,
    is_valid_hostname,
    is_valid_schema_name,
    normalize_host,
    schema_name_from,
    validate_schema_name,
)
from tenantkit.core.tenancy import Tenancy
from tenantkit.errors import InvalidHostname, InvalidSchemaName
from tenantkit.migrations import template_schema_name
from tenantkit.web.routing import Outcome, TenantResolver
from tenantkit.web.sources import StaticDomainSource

labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
# The last label has a letter: an all-numeric name is read as an IPv4 address.
hostnames = st.tuples(
    st.lists(labels, max_size=3), st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
).map(lambda parts: ".".join([*parts[0], parts[1]]))


def _reserved(name: str) -> bool:
    internal = re.match(r"_+(tenantkit|pgtenants)_", name) is not None
    return internal or name.startswith("pg_") or name in ("public", "information_schema")


@given(
    st.from_regex(r"[a-z_][a-z0-9_]{0,62}", fullmatch=True)
    | st.from_regex(r"_{1,3}(tenantkit|pgtenants)_?[a-z0-9_]{0,20}", fullmatch=True)
)
def test_valid_names_accepted_unless_reserved(name: str) -> None:
    reserved = _reserved(name)
    assert is_valid_schema_name(name) is not reserved
    if not reserved:
        assert validate_schema_name(name) == name


@given(st.text())
def test_every_accepted_name_is_safe(name: str) -> None:
    if is_valid_schema_name(name):
        assert len(name.encode()) <= MAX_IDENTIFIER_BYTES
        assert name.isascii()
        assert not set(name) - set("abcdefghijklmnopqrstuvwxyz0123456789_")
        assert not _reserved(name)
    else:
        with pytest.raises(InvalidSchemaName):
            validate_schema_name(name)


_PREFIXES = ["", "t_", "_", "pg_", "_tenantkit_", "__tenantkit", "_pgtenants_", "_tenantkit"]


@given(
    st.text() | st.sampled_from(["PG", "tenantkit", "Tenantkit Template", "pgtenants", "acme"]),
    st.sets(
        st.text(max_size=10) | st.sampled_from(["pg", "acme", "t_pg", "_tenantkit"]), max_size=5
    ),
    st.sampled_from(_PREFIXES),
    st.sampled_from(["public", "acme_2", "shared"]),
)
def test_schema_name_from_is_valid_and_free(
    display: str, taken: set[str], prefix: str, shared: str
) -> None:
    name = schema_name_from(display, taken=taken, prefix=prefix, shared_schema=shared)
    assert is_valid_schema_name(name, shared_schema=shared)
    assert not _reserved(name)
    assert name not in taken


def test_schema_name_from_never_derives_a_reserved_name() -> None:
    # A taken "pg" used to become "pg_2", which validation then refused.
    assert schema_name_from("PG", taken={"pg"}) == "t_pg"
    assert schema_name_from("template", prefix="_tenantkit_") == "t__tenantkit_template"
    assert schema_name_from("tenantkit", prefix="_", taken={"t__tenantkit"}) == "t__tenantkit_2"
    assert schema_name_from("acme", taken={"acme"}, shared_schema="acme_2") == "acme_3"


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        (template_schema_name("public"), "_tenantkit_"),
        ("_tenantkit_spare_0123456789abcdef", "_tenantkit_"),
        ("__tenantkit_schema__", "_tenantkit_"),
        ("_pgtenants_retired_0123456789abcdef", "_pgtenants_"),
        ("pg_temp_1", "pg_"),
    ],
)
def test_internal_prefixes_are_reserved(name: str, prefix: str) -> None:
    assert prefix in RESERVED_PREFIXES
    with pytest.raises(InvalidSchemaName, match=f"the '{prefix}' prefix is reserved") as info:
        validate_schema_name(name)
    assert info.value.name == name
    # Not a tenantkit prefix: an ordinary name.
    assert validate_schema_name(name.lstrip("_").replace("pg_", "pq_")) is not None


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


# Hosts: the findings, one by one.


@pytest.mark.parametrize("port", ["99999", "65536", "0", "00000", "", "+80", "-1", "8_0", "x"])
@pytest.mark.parametrize("host", ["acme.example.test", "127.0.0.1", "[::1]"])
def test_ports_outside_1_to_65535_are_rejected(host: str, port: str) -> None:
    with pytest.raises(InvalidHostname, match="port"):
        normalize_host(f"{host}:{port}")


@pytest.mark.parametrize("port", [1, 80, 8443, 65535])
def test_ports_in_range_are_stripped(port: int) -> None:
    assert normalize_host(f"ACME.example.test.:{port}") == "acme.example.test"
    assert normalize_host(f"[::1]:{port}") == "[::1]"


@pytest.mark.parametrize(
    "char",
    [
        *["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\t", "\xad", "\xaa"],
        *["\x00", "\r", "\n", " ", "\x7f", "\u2028", "\u3000", "\u200b", "\ufeff", "\u2060"],
    ],
)
@pytest.mark.parametrize("where", ["start", "inside", "end"])
def test_control_space_and_invisible_characters_are_rejected(char: str, where: str) -> None:
    """They used to be stripped or folded away: `"\\x0bacme.example"` served acme."""
    host = {"start": f"{char}acme.example", "inside": f"ac{char}me.example"}.get(
        where, f"acme.example{char}"
    )
    with pytest.raises(InvalidHostname) as info:
        normalize_host(host)
    assert f"U+{ord(char):04X}" in info.value.reason or repr(char) in info.value.reason


def test_idna_2008_not_2003() -> None:
    # IDNA 2003 mapped "ß" to "ss": straße.example routed to the owner of strasse.example,
    # while browsers send xn--strae-oqa.example.
    assert normalize_host("straße.example") == "xn--strae-oqa.example"
    assert normalize_host("STRAßE.Example.:443") == "xn--strae-oqa.example"
    assert normalize_host("xn--strae-oqa.example") == "xn--strae-oqa.example"
    assert normalize_host("strasse.example") == "strasse.example"
    assert normalize_host("ς.example") == "xn--3xa.example"  # final sigma kept
    # Python's str.lower() would make the last sigma final; UTS-46 lower-cases it to medial.
    upper, lower = "\u0391\u03a3.example", "\u03b1\u03c3.example"  # alpha sigma
    assert normalize_host(upper) == normalize_host(lower) == "xn--mxa0b.example"
    assert normalize_host("क्\u200dष.example") != normalize_host("क्ष.example")  # ZWJ kept


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("\uff41cme.example", "U+FF41 FULLWIDTH LATIN SMALL LETTER A"),
        ("\u212acme.example", "NFC"),  # the Kelvin sign
        ("acme\u3002example", "U+3002 IDEOGRAPHIC FULL STOP"),
        ("cafe\u0301.example", "NFC"),
        ("a\u200db.example", "IDNA 2008"),
        ("\u0130stanbul.example", "U+0130"),
        ("stra\u1e9ee.example", "'ss' or '\xdf'"),  # capital sharp s
        ("xn--zz.example", "A-label"),
        ("xn--bcher-2pa.example", "A-label"),  # encodes "b\xdccher": upper case
        ("1.2.3", "IPv4"),
        ("0x7f.0.0.1", "IPv4"),
        ("acme.123", "IPv4"),
        ("acme.example..", "label ''"),
        ("[fe80::1%25eth0]", "%"),
    ],
)
def test_folds_and_lookalikes_are_rejected(host: str, reason: str) -> None:
    with pytest.raises(InvalidHostname, match=re.escape(reason)):
        normalize_host(host)


_CANONICAL_RE = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


def _assert_canonical(norm: str) -> None:
    """What every accepted host becomes: ASCII, lower case, LDH labels or an IP literal."""
    assert norm.isascii() and norm == norm.lower()
    assert normalize_host(norm) == norm  # idempotent
    if norm.startswith("["):
        assert f"[{ipaddress.IPv6Address(norm[1:-1]).compressed}]" == norm
    elif re.fullmatch(r"[0-9.]+", norm):
        assert str(ipaddress.IPv4Address(norm)) == norm
    else:
        assert _CANONICAL_RE.fullmatch(norm) and len(norm) <= 253


@settings(max_examples=300)
@given(hostile_hosts())
def test_hostile_hosts_are_rejected_by_both_paths(host: str) -> None:
    with pytest.raises(InvalidHostname):
        normalize_host(host)
    with pytest.raises(InvalidHostname):
        _normalize_host_slow(host)


@settings(max_examples=200)
@given(host_spellings())
def test_every_spelling_of_a_host_normalises_to_its_idna_2008_form(
    spelling: tuple[str, str],
) -> None:
    raw, canonical = spelling
    assert normalize_host(raw) == canonical
    _assert_canonical(canonical)


@settings(max_examples=200)
@given(lookalike_hosts())
def test_a_lookalike_never_reaches_the_registered_host(pair: tuple[str, str]) -> None:
    registered, lookalike = pair
    assert normalize_host(registered) == registered
    try:
        norm = normalize_host(lookalike)
    except InvalidHostname:
        return
    assert norm != registered
    _assert_canonical(norm)


_HOSTISH = st.text(alphabet="abcAB019.-:[]_ %\x0b\xad\xe4\xdf\u212a\u3002", max_size=30)


@settings(max_examples=500)
@given(_HOSTISH | st.text(max_size=30) | hostile_hosts())
def test_accepted_hosts_are_canonical_and_both_paths_agree(host: str) -> None:
    try:
        norm = normalize_host(host)
    except InvalidHostname:
        with pytest.raises(InvalidHostname):
            _normalize_host_slow(host)
        return
    # The fast path (ASCII names) answers exactly what the careful one does.
    assert _normalize_host_slow(host) == norm
    _assert_canonical(norm)


# Where names meet the database.


def test_stored_unicode_domains_route_like_the_browser_sends_them(
    dsn: str, schema_name: str
) -> None:
    with Tenancy(dsn, shared_schema=schema_name, max_size=2) as tk:
        tk.install()
        owner = tk.create_tenant(f"{schema_name}_o", domains=["straße.example"])
        other = tk.create_tenant(f"{schema_name}_x", domains=["strasse.example"])
        stored = {d.host for d in tk.domains(owner)}
        assert stored == {"xn--strae-oqa.example"}
        assert tk.get_tenant(host="STRAßE.example.:8443").schema == owner.schema
        resolver = TenantResolver(StaticDomainSource(tk.domain_map()), subscribe=False)
        for sent in ("xn--strae-oqa.example", "straße.example", "XN--STRAE-OQA.example:443"):
            assert resolver.resolve(sent).tenant == owner
        assert resolver.resolve("strasse.example").tenant == other
        assert resolver.resolve("stra\xadsse.example").outcome is Outcome.INVALID
        assert resolver.resolve("strasse.example:99999").outcome is Outcome.INVALID


def test_a_tenant_cannot_take_an_internal_schema_name(
    mig_tenancy: Tenancy, conn: psycopg.Connection
) -> None:
    """A tenant named like the template or a spare got new tenants' tables (and was dropped
    with the template); the names are refused, and the template and spares still work."""
    tk = mig_tenancy
    template = template_schema_name(tk.shared_schema)
    assert tk.spares.fill(1) == 1
    spares = sql.SQL("select schema from {}.tenantkit_spares").format(
        sql.Identifier(tk.shared_schema)
    )
    (spare,) = conn.execute(spares).fetchone() or ("",)
    assert spare.startswith("_tenantkit_spare_")
    for name in (template, spare, "_tenantkit_template_00000000", "_pgtenants_retired_1"):
        with pytest.raises(InvalidSchemaName, match="reserved for tenantkit"):
            tk.create_tenant(name)
        with pytest.raises(InvalidSchemaName), tk.connection(name):
            pass
    made = tk.create_tenant(f"{tk.shared_schema}_a")
    assert tk.provisioner.last_path == "spare"
    again = tk.create_tenant(f"{tk.shared_schema}_b")
    assert tk.provisioner.last_path == "template"
    assert made.schema != again.schema
    exists = "select count(*) from pg_namespace where nspname = %s"
    assert conn.execute(exists, (template,)).fetchone() == (1,)
