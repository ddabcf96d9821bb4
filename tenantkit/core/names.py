"""Schema-name and hostname validation and normalisation.

Pure functions: nothing here talks to a database. Every name that reaches SQL elsewhere in
tenantkit has been through :func:`validate_schema_name` first, and is then composed with
``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Collection

import idna

from ..errors import InvalidHostname, InvalidSchemaName
from .storage import INTERNAL_PREFIX

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "RESERVED_PREFIXES",
    "RESERVED_SCHEMAS",
    "is_valid_hostname",
    "is_valid_schema_name",
    "normalize_host",
    "schema_name_from",
    "validate_schema_name",
]

#: PostgreSQL's NAMEDATALEN - 1. Longer names are silently truncated by the server, so two
#: tenants could end up sharing one schema: we refuse them instead.
MAX_IDENTIFIER_BYTES = 63

#: Schemas that can never be a tenant's, whatever the configured shared schema is.
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})

#: Name prefixes no tenant may use: PostgreSQL's ``pg_``, and tenantkit's own schemas (the
#: migration template ``_tenantkit_template_<hash>``, warm spares ``_tenantkit_spare_<hex>``,
#: the test plugin's ``_pgtenants_retired_<hex>``). The two internal ones are reserved after
#: any number of leading underscores too (``__tenantkit_schema__`` is the clone placeholder).
#: A tenant with such a name would be taken for an internal schema: new tenants cloned from
#: its tables, or dropped along with the template.
RESERVED_PREFIXES = ("pg_", INTERNAL_PREFIX, "_pgtenants_")

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]*")
_INTERNAL_PREFIX_RE = re.compile(r"_+(tenantkit|pgtenants)_")


def _reserved_prefix(name: str) -> str | None:
    """The entry of :data:`RESERVED_PREFIXES` that ``name`` starts with, if any."""
    if name.startswith("pg_"):
        return "pg_"
    internal = _INTERNAL_PREFIX_RE.match(name)
    return None if internal is None else f"_{internal.group(1)}_"


def validate_schema_name(name: object, *, shared_schema: str = "public") -> str:
    """Return ``name`` if it is a valid tenant schema name, else raise ``InvalidSchemaName``.

    Valid: a ``str`` matching ``[a-z_][a-z0-9_]*``, at most 63 bytes, not starting with one
    of :data:`RESERVED_PREFIXES` (``pg_``, ``_tenantkit_``, ``_pgtenants_``), and not
    ``public``, ``information_schema`` or ``shared_schema``.
    """
    if not isinstance(name, str):
        raise InvalidSchemaName(name, f"expected a str, got {type(name).__name__}")
    if not name:
        raise InvalidSchemaName(name, "it is empty")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise InvalidSchemaName(
            name, f"it is longer than {MAX_IDENTIFIER_BYTES} bytes (PostgreSQL would truncate it)"
        )
    if not _SCHEMA_RE.fullmatch(name):
        raise InvalidSchemaName(
            name, "only lower-case ASCII letters, digits and '_' are allowed, not first a digit"
        )
    reserved = _reserved_prefix(name)
    if reserved == "pg_":
        raise InvalidSchemaName(name, "the 'pg_' prefix is reserved for PostgreSQL")
    if reserved is not None:
        raise InvalidSchemaName(
            name,
            f"the {reserved!r} prefix is reserved for tenantkit's internal schemas (the "
            "migration template, warm spares, the test plugin's holding schemas), also after "
            "more leading '_'",
        )
    if name in RESERVED_SCHEMAS or name == shared_schema:
        raise InvalidSchemaName(name, "it is a reserved or the shared schema")
    return name


def is_valid_schema_name(name: object, *, shared_schema: str = "public") -> bool:
    """Tell whether :func:`validate_schema_name` would accept ``name``."""
    try:
        validate_schema_name(name, shared_schema=shared_schema)
    except InvalidSchemaName:
        return False
    return True


def schema_name_from(
    display_name: str,
    *,
    taken: Collection[str] | Callable[[str], bool] = (),
    prefix: str = "",
    shared_schema: str = "public",
) -> str:
    """Derive a valid, unused schema name from a human display name.

    ``"Ünïcode Café, Inc."`` becomes ``"unicode_cafe_inc"``; a name in ``taken`` (a collection,
    or a predicate such as a database lookup) gets a numeric suffix (``acme_2``, ``acme_3``...).
    The result always passes :func:`validate_schema_name`.
    """
    ascii_name = (
        unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode("ascii")
    )
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    slug = prefix + (slug or "tenant")
    if not re.match(r"[a-z_]", slug):
        slug = "t_" + slug
    # Checked with the "_" of a numeric suffix after it: a taken "pg" must not become "pg_2".
    while _reserved_prefix(slug + "_") is not None:
        slug = "t_" + slug
    if slug in RESERVED_SCHEMAS or slug == shared_schema:
        slug = "t_" + slug
    slug = slug[:MAX_IDENTIFIER_BYTES].rstrip("_") or "tenant"

    def is_taken(candidate: str) -> bool:
        if candidate == shared_schema:  # "acme_2" may be the shared schema
            return True
        return taken(candidate) if callable(taken) else candidate in taken

    candidate = slug
    counter = 1
    while is_taken(candidate):
        counter += 1
        suffix = f"_{counter}"
        candidate = slug[: MAX_IDENTIFIER_BYTES - len(suffix)] + suffix
    return validate_schema_name(candidate, shared_schema=shared_schema)


# Host normalisation. Two paths give the same answers: a fast one for the common case (an
# ASCII name, maybe a port: one regular expression, never the idna package), and a careful one
# for everything else (IP literals, Unicode, and every input that will be rejected, so that the
# error names what is wrong).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_HOST_RE = re.compile(rf"((?:{_LABEL}\.)*{_LABEL})(\.)?(?::([0-9]{{1,5}}))?")
_LABEL_RE = re.compile(_LABEL)
_PORT_RE = re.compile(r"[0-9]{1,5}")
# A last label that the WHATWG URL parser reads as a number makes the whole name an IPv4
# address to browsers ("1.2.3", "0x7f.1"): only a dotted quad may end in one.
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Never part of a hostname (URL and header syntax): named in the error. ":", "[" and "]" are
# checked where ports and IPv6 literals are split off.
_URL_CHARS_RE = re.compile(r"[/\\@?#%,;\"'<>`{}|^=&!$()*+~_]")
# C0 and C1 controls (category Cc) and whitespace of any kind (str.isspace() covers the
# Unicode space separators and the line and paragraph separators).
_CONTROL_OR_SPACE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\s]")
_MAX_PORT = 65535
# The longest input that can be valid: a 253-character name, a trailing dot and ":65535" (an
# IPv6 literal is shorter). Longer input is refused before any other work.
_MAX_HOST_INPUT = 253 + 1 + 6


def _describe(ch: str) -> str:
    """``'ª' (U+00AA FEMININE ORDINAL INDICATOR)``, ``U+00AD SOFT HYPHEN``: a character named,
    also when it is invisible."""
    code = f"U+{ord(ch):04X}"
    name = unicodedata.name(ch, "")
    if name:
        code = f"{code} {name}"
    if ch.isprintable() and not ch.isspace():
        return f"{ch!r} ({code})"
    return code


def _check_port(host: str, port: str) -> None:
    if not _PORT_RE.fullmatch(port):
        raise InvalidHostname(
            host, f"the port {port!r} is not a number from 1 to {_MAX_PORT} (ASCII digits only)"
        )
    if not 0 < int(port) <= _MAX_PORT:
        raise InvalidHostname(host, f"the port {port} is outside 1-{_MAX_PORT}")


def _check_controls(host: str) -> None:
    """Reject control characters and whitespace of any kind, naming the first."""
    found = _CONTROL_OR_SPACE_RE.search(host)
    if found is not None:
        ch = found.group()
        kind = "control character" if unicodedata.category(ch) == "Cc" else "whitespace"
        raise InvalidHostname(host, f"it contains the {kind} {_describe(ch)}")


def _check_url_chars(host: str, name: str) -> None:
    """Reject URL syntax in ``name`` (the value without its port), naming it."""
    bad = sorted(set(_URL_CHARS_RE.findall(name)))
    if bad:
        raise InvalidHostname(
            host, f"it contains characters not allowed in a hostname: {' '.join(bad)}"
        )


def _ascii_name(host: str, name: str) -> str:
    """Check a lower-case ASCII name (no port, no trailing dot); return its canonical form."""
    if not name:
        raise InvalidHostname(host, "the name is empty")
    if len(name) > 253:
        raise InvalidHostname(host, "it is longer than 253 characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise InvalidHostname(
                host, f"label {label!r} must be 1-63 letters, digits or inner hyphens"
            )
    return _checked_name(host, name, labels[-1])


def _checked_name(host: str, name: str, last: str) -> str:
    """The checks after the syntax: numeric names are IPv4 addresses, A-labels must be real."""
    if _NUMERIC_LABEL_RE.fullmatch(last):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise InvalidHostname(
                host,
                "its last label is a number, which makes it an IPv4 address to browsers, "
                "but it is not one in dotted-quad form (four numbers 0-255, no leading zeros)",
            ) from None
    if "xn--" in name:
        for label in name.split("."):
            if label.startswith("xn--"):
                _check_a_label(host, label)
    return name


def _check_a_label(host: str, label: str) -> None:
    problem = _a_label_problem(label)
    if problem is not None:
        raise InvalidHostname(host, problem)


@functools.lru_cache(maxsize=1024)
def _a_label_problem(label: str) -> str | None:
    # An A-label is routed as the Unicode name it stands for: it must be exactly the IDNA 2008
    # encoding of that name, or two spellings would reach one tenant (or a browser's spelling
    # none). Cached: the same few labels come back on every cold host of a tenant.
    try:
        canonical = idna.encode(idna.decode(label)).decode("ascii")
    except idna.IDNAError as exc:
        return f"label {label!r} is not a valid IDNA 2008 A-label ({exc})"
    if canonical != label:
        return f"label {label!r} is not in canonical IDNA 2008 form; use {canonical!r}"
    return None


def _unicode_name(host: str, name: str) -> str:
    """IDNA 2008 (UTS-46, non-transitional) A-label form of a name with non-ASCII letters.

    Only lower-casing is done for the caller. Anything UTS-46 would silently delete or map to
    another character (a soft hyphen, ``ª`` -> ``a``, full-width letters, the Kelvin sign,
    ``。`` as a dot) is rejected: such a host would not be what its sender sees, and could
    fold onto another tenant's name.
    """
    if not unicodedata.is_normalized("NFC", name):
        raise InvalidHostname(
            host, "it is not in Unicode normal form C (NFC); IDNA would change it"
        )
    mapped: list[str] = []
    for ch in name:
        if ch.isascii():
            mapped.append(ch.lower())
            continue
        if ch == "\u1e9e":
            # UTS-46 before Unicode 15.1 maps it to "ss", from 15.1 on to "ß": browsers
            # disagree about which host it names.
            raise InvalidHostname(
                host, f"{_describe(ch)} means 'ss' or 'ß' depending on the browser; write either"
            )
        try:
            out = idna.uts46_remap(ch, std3_rules=True, transitional=False)
        except idna.IDNAError:
            raise InvalidHostname(
                host, f"{_describe(ch)} is not allowed in a hostname (IDNA 2008)"
            ) from None
        # Kept as is, or an upper-case letter lower-cased (to a letter that stays non-ASCII:
        # U+212A KELVIN SIGN must not become "k").
        if out != ch and not (len(out) == 1 and not out.isascii() and out == ch.lower()):
            change = f"become {out!r}" if out else "be removed"
            raise InvalidHostname(
                host,
                f"{_describe(ch)} would silently {change} under IDNA; write the host "
                "exactly as it is to be routed",
            )
        mapped.append(out)
    lowered = "".join(mapped)
    labels: list[str] = []
    for label in lowered.split("."):
        if label.isascii():
            labels.append(label)  # checked with the other ASCII labels below
            continue
        try:
            encoded = idna.encode(label, uts46=True, std3_rules=True, transitional=False)
            if idna.decode(encoded) != label:
                raise idna.IDNAError(f"it would be changed into {idna.decode(encoded)!r}")
        except idna.IDNAError as exc:
            raise InvalidHostname(
                host, f"label {label!r} is not a valid internationalised (IDNA 2008) label: {exc}"
            ) from None
        labels.append(encoded.decode("ascii"))
    return _ascii_name(host, ".".join(labels))


def _split_port(host: str) -> tuple[str, bool]:
    """Strip a ``:port`` suffix (checked); return the name and whether it is an IPv6 literal."""
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            raise InvalidHostname(host, "unterminated IPv6 literal")
        rest = host[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidHostname(host, "junk after the IPv6 literal")
            _check_port(host, rest[1:])
        return host[1:end], True
    if host.count(":") == 1:
        name, port = host.split(":")
        _check_port(host, port)
        return name, False
    if ":" in host:
        # A bare IPv6 address without brackets (not valid in a Host header, but accepted
        # from configuration such as a domain table).
        return host, True
    return host, False


def _normalize_host_slow(host: str) -> str:
    """:func:`normalize_host` for any input, with a precise reason when it is rejected."""
    if not host:
        raise InvalidHostname(host, "it is empty")
    if len(host) > _MAX_HOST_INPUT:
        raise InvalidHostname(host, "it is longer than 253 characters")
    _check_controls(host)
    name, ipv6 = _split_port(host)
    _check_url_chars(host, name)
    if ipv6:
        try:
            return f"[{ipaddress.IPv6Address(name).compressed}]"
        except ValueError:
            raise InvalidHostname(host, "not a valid IPv6 address") from None
    if name.endswith("."):
        name = name[:-1]  # one trailing dot: the fully-qualified spelling of the same name
    if not name:
        raise InvalidHostname(host, "the name is empty")
    if name.isascii():
        return _ascii_name(host, name.lower())
    return _unicode_name(host, name)


def normalize_host(host: str, *, strip_www: bool = False) -> str:
    """Return the canonical form of a hostname or Host header value, or raise
    ``InvalidHostname``.

    The only changes made: letters lower-cased, a ``:port`` (1-65535) removed, one trailing
    dot removed, internationalised names converted to their IDNA 2008 A-label form (UTS-46,
    non-transitional, as browsers send them: ``straße.example`` -> ``xn--strae-oqa.example``),
    IPv4 addresses in dotted-quad form and IPv6 literals compressed and bracketed
    (``[2001:db8::1]``), and with ``strip_www`` a leading ``www.`` removed.

    Everything else is rejected rather than repaired: control characters, whitespace of any
    kind (also around the name), URL syntax (``/``, ``@``, ``_``...), empty labels, labels
    over 63 bytes, names over 253, ports out of range, and non-ASCII characters that are not
    valid IDNA 2008 or that IDNA would silently remove or change (soft hyphen, ``ª``,
    full-width letters...), so no spelling can fold onto another tenant's host.
    """
    if not isinstance(host, str):
        raise InvalidHostname(host, f"expected a str, got {type(host).__name__}")
    fast = host.isascii() and len(host) <= _MAX_HOST_INPUT
    match = _FAST_HOST_RE.fullmatch(host.lower()) if fast else None
    if match is None:
        name = _normalize_host_slow(host)
    else:
        name, _dot, port = match.groups()
        if port is not None and not 0 < int(port) <= _MAX_PORT:
            _check_port(host, port)
        if len(name) > 253:
            raise InvalidHostname(host, "it is longer than 253 characters")
        name = _checked_name(host, name, name[name.rfind(".") + 1 :])
    if strip_www and name.startswith("www.") and name.count(".") > 1:
        name = name[4:]
    return name


def is_valid_hostname(host: str) -> bool:
    """Tell whether :func:`normalize_host` would accept ``host``."""
    try:
        normalize_host(host)
    except InvalidHostname:
        return False
    return True
