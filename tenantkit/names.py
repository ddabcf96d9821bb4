"""Schema-name and hostname validation and normalisation.

Pure functions: nothing here talks to a database. Every name that reaches SQL elsewhere in
tenantkit has been through :func:`validate_schema_name` first, and is then composed with
``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Collection

from .errors import InvalidHostname, InvalidSchemaName

__all__ = [
    "MAX_IDENTIFIER_BYTES",
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

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]*")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def validate_schema_name(name: object, *, shared_schema: str = "public") -> str:
    """Return ``name`` if it is a valid tenant schema name, else raise ``InvalidSchemaName``.

    Valid: a ``str`` matching ``[a-z_][a-z0-9_]*``, at most 63 bytes, not starting with
    ``pg_``, and not ``public``, ``information_schema`` or ``shared_schema``.
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
    if name.startswith("pg_"):
        raise InvalidSchemaName(name, "the 'pg_' prefix is reserved for PostgreSQL")
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
    while slug.startswith("pg_"):
        slug = "t_" + slug
    if slug in RESERVED_SCHEMAS or slug == shared_schema:
        slug = "t_" + slug
    slug = slug[:MAX_IDENTIFIER_BYTES].rstrip("_") or "tenant"

    def is_taken(candidate: str) -> bool:
        return taken(candidate) if callable(taken) else candidate in taken

    candidate = slug
    counter = 1
    while is_taken(candidate):
        counter += 1
        suffix = f"_{counter}"
        candidate = slug[: MAX_IDENTIFIER_BYTES - len(suffix)] + suffix
    return validate_schema_name(candidate, shared_schema=shared_schema)


def _split_port(host: str) -> str:
    """Strip a ``:port`` suffix, leaving IPv6 literals (``[::1]:8000``) intact."""
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            raise InvalidHostname(host, "unterminated IPv6 literal")
        rest = host[end + 1 :]
        if rest and not (rest.startswith(":") and _PORT_RE.fullmatch(rest[1:])):
            raise InvalidHostname(host, "junk after the IPv6 literal")
        return host[: end + 1]
    if host.count(":") == 1:
        name, port = host.split(":")
        if not _PORT_RE.fullmatch(port):
            raise InvalidHostname(host, "the port is not a number")
        return name
    if ":" in host:
        # A bare IPv6 address without brackets (not valid in a Host header, but accepted
        # from configuration such as a domain table).
        return host
    return host


def normalize_host(host: str, *, strip_www: bool = False) -> str:
    """Return the canonical form of a hostname or Host header value.

    Lower-cased, port and trailing dot removed, internationalised names converted to their
    IDNA (punycode) form, IPv6 literals compressed and bracketed (``[2001:db8::1]``), and
    optionally a leading ``www.`` removed. Raises ``InvalidHostname`` for anything that is
    not a DNS name or an IP literal (spaces, slashes, ``@``, empty labels, labels over 63
    bytes, names over 253 bytes...).
    """
    if not isinstance(host, str):
        raise InvalidHostname(host, f"expected a str, got {type(host).__name__}")
    raw = host.strip()
    if not raw:
        raise InvalidHostname(host, "it is empty")
    if any(ch in raw for ch in "/\\@?#%\x00 \t\r\n,;\"'<>`{}|^"):
        raise InvalidHostname(host, "it contains characters not allowed in a hostname")
    name = _split_port(raw)
    if name.startswith("["):
        try:
            addr = ipaddress.IPv6Address(name[1:-1])
        except ValueError as exc:
            raise InvalidHostname(host, "not a valid IPv6 address") from exc
        return f"[{addr.compressed}]"
    if ":" in name:
        try:
            return f"[{ipaddress.IPv6Address(name).compressed}]"
        except ValueError as exc:
            raise InvalidHostname(host, "not a valid IPv6 address") from exc
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidHostname(host, "it is empty")
    name = name.lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidHostname(host, "not a valid internationalised domain name") from exc
    if re.fullmatch(r"[0-9.]+", name):
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError as exc:
            raise InvalidHostname(host, "not a valid IPv4 address") from exc
    if len(name) > 253:
        raise InvalidHostname(host, "it is longer than 253 characters")
    labels = name.split(".")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise InvalidHostname(
                host, f"label {label!r} must be 1-63 letters, digits or inner hyphens"
            )
    if strip_www and len(labels) > 2 and labels[0] == "www":
        name = ".".join(labels[1:])
    return name


def is_valid_hostname(host: str) -> bool:
    """Tell whether :func:`normalize_host` would accept ``host``."""
    try:
        normalize_host(host)
    except InvalidHostname:
        return False
    return True
