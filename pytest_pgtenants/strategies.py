"""Hypothesis strategies for schema names and hostnames, valid and hostile.

``hypothesis`` is an optional dependency (extra ``hypothesis``); it is imported when a
strategy is first built, so importing this module is free.

* :func:`schema_names` - names :func:`tenantkit.core.names.validate_schema_name` accepts.
* :func:`hostile_schema_names` - names it must reject (quotes, semicolons, NUL, upper case,
  non-ASCII, 64+ bytes, ``pg_`` and tenantkit's internal prefixes, reserved names...).
* :func:`hostnames` - valid DNS hostnames, already normalised.
* :func:`hostile_hosts` - Host header values :func:`tenantkit.core.names.normalize_host` must
  reject, near misses of valid hosts included (a bad port, one invisible character...).
* :func:`host_spellings` - ``(spelling, canonical)``: other spellings of one host (case, a
  trailing dot, a port, Unicode or A-labels) and the one form they must normalise to.
* :func:`lookalike_hosts` - ``(registered, lookalike)``: a registered host and a different
  host that looks like it (homoglyphs, IDNA 2003/2008 differences such as ``ß``/``ss``,
  invisible and compatibility characters); the lookalike must be rejected or normalise to
  something else, never to ``registered``.

The host strategies are not filtered through ``normalize_host``: what they promise is built
in, so a property test over them fails when ``normalize_host`` accepts or folds what it
should not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._extras import require

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "host_spellings",
    "hostile_hosts",
    "hostile_schema_names",
    "hostnames",
    "lookalike_hosts",
    "schema_names",
]


def schema_names(*, shared_schema: str = "public", max_size: int = 63) -> SearchStrategy[str]:
    """Valid tenant schema names: ``[a-z_][a-z0-9_]*``, at most ``max_size`` bytes, not reserved."""
    st = require("hypothesis.strategies")
    from tenantkit.core.names import is_valid_schema_name

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
    bytes (PostgreSQL would truncate them), the ``pg_`` prefix, tenantkit's internal prefixes
    (``_tenantkit_``, ``_pgtenants_``: the template, spares), a leading digit, the empty string
    and the reserved names (``public``, ``information_schema``, the shared schema).
    """
    st = require("hypothesis.strategies")
    from tenantkit.core.names import is_valid_schema_name
    from tenantkit.core.storage import INTERNAL_PREFIX, TEMPLATE_PREFIX

    valid = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
    bad_chars = st.sampled_from(['"', "'", ";", "\\", "\x00", "\n", " ", "-", ".", "$", "é", "Ä"])
    injected = st.builds(
        lambda head, bad, tail: head + bad + tail, valid, bad_chars, st.text(max_size=10)
    )
    upper = valid.map(lambda s: "X" + s.upper())
    too_long = st.integers(min_value=64, max_value=100).map(lambda n: "t" * n)
    # Multi-byte characters: 32 characters but 64 bytes, so a length check in characters
    # instead of bytes would let them through.
    multibyte = st.just("\u00e9" * 32)
    pg_prefixed = valid.map(lambda s: "pg_" + s)
    internal = st.builds(
        lambda prefix, s: prefix + s,
        st.sampled_from([INTERNAL_PREFIX, "_" + INTERNAL_PREFIX, "_pgtenants_", TEMPLATE_PREFIX]),
        st.from_regex(r"[a-z0-9_]{0,20}", fullmatch=True),
    )
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
        classics,
        injected,
        upper,
        too_long,
        multibyte,
        pg_prefixed,
        internal,
        digit_first,
        reserved,
        anything,
    ).filter(lambda name: not is_valid_schema_name(name, shared_schema=shared_schema))
    return result


def hostnames(*, max_labels: int = 4) -> SearchStrategy[str]:
    """Valid, normalised DNS hostnames (lower case, no port, no trailing dot)."""
    st = require("hypothesis.strategies")
    from tenantkit.core.names import normalize_host

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


# Characters that make any Host value invalid wherever they stand (escaped here, as most are
# invisible): header injection, URL syntax, C0 and C1 controls (\x0b \x0c \x1c-\x1f \x85...),
# every kind of whitespace (NBSP, ogham, em, line and paragraph separators, ideographic), and
# characters IDNA deletes or disallows (soft hyphen, zero-width space, word joiner, BOM,
# combining grapheme joiner, variation selector 16, right-to-left override).
_BAD_HOST_CHARS = [
    *["\r\n", "\n", "\r", "\x00", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f"],
    *["\x7f", "\x85", "\x9f", " ", "\xa0", "\u1680", "\u2003", "\u2028", "\u2029", "\u3000"],
    *["\xad", "\u200b", "\u2060", "\ufeff", "\u034f", "\ufe0f", "\u202e"],
    *["/", "@", "?", "#", "%", "\\", ";", "'", '"', ",", "_", "<", ">", "`", "{", "}", "|"],
]
# Ports that are not a number from 1 to 65535 in ASCII digits (full-width and Arabic-Indic
# digits included).
_BAD_PORTS = ["", "0", "00000", "65536", "99999", "100000", "+80", "-1", " 80", "80 ", "0x50"]
_BAD_PORTS += ["8_0", "\uff18\uff10", "\u0668\u0660", "1e3", "80:80", "80/", ":80"]
# Characters UTS-46 maps onto other characters: full-width a and A, the ordinal indicators,
# the Kelvin sign, the "ij" ligature, circled a, modifier a, mathematical bold a, roman
# numeral one, superscript two, titlecase dz with caron, capital I with dot above.
_FOLDING_CHARS = ["\uff41", "\uff21", "\xaa", "\xba", "\u212a", "\u0133", "\u24d0", "\u1d43"]
_FOLDING_CHARS += ["\U0001d41a", "\u2160", "\xb2", "\u01c5", "\u0130"]
# Dots UTS-46 maps onto ".": ideographic, full-width and half-width ideographic full stops.
_FOLDING_DOTS = ["\u3002", "\uff0e", "\uff61"]


def _ascii_upper(text: str) -> str:
    return "".join(ch.upper() if ch.isascii() else ch for ch in text)


def _insert(host: str, index: int, text: str) -> str:
    index %= len(host) + 1
    return host[:index] + text + host[index:]


def hostile_hosts() -> SearchStrategy[str]:
    """Host header values that must be rejected (400), never routed to any tenant.

    Built to be invalid, not filtered, so a test over them fails when ``normalize_host``
    accepts one: header injection (CR/LF, NUL), URL parts (``/``, ``@``, ``?``, ``#``), SQL
    fragments, empty labels, labels over 63 bytes, names over 253, broken IPv6 literals, and
    near misses of valid hosts: a valid host with a port outside 1-65535 (``:0``, ``:65536``,
    ``:``, ``:+80``), with one control, whitespace or invisible character anywhere in it
    (``\\x0b``, ``\\x85``, NBSP, soft hyphen, zero-width space...), with one character that
    IDNA would fold into another (full-width letters, ``ª``, the Kelvin sign, ``。`` for a
    dot), with a doubled or second trailing dot, and numeric last labels that are not an IPv4
    address (``1.2.3``, ``0x7f.0.0.1``), each also with its ASCII letters upper-cased.
    """
    st = require("hypothesis.strategies")
    good = hostnames(max_labels=3)
    anywhere = st.integers(min_value=0, max_value=300)
    injected = st.builds(
        lambda host, at, bad, tail: _insert(host, at, bad + tail),
        good,
        anywhere,
        st.sampled_from(_BAD_HOST_CHARS),
        st.text(max_size=8),
    )
    bad_port = st.builds(
        lambda host, dot, port: f"{host}{dot}:{port}",
        good,
        st.sampled_from(["", "."]),
        st.sampled_from(_BAD_PORTS) | st.integers(65536, 10**7).map(str),
    )
    folded = st.builds(_insert, good, anywhere, st.sampled_from(_FOLDING_CHARS))
    folded_dot = good.filter(lambda h: "." in h).map(
        lambda h: h.replace(".", _FOLDING_DOTS[len(h) % len(_FOLDING_DOTS)], 1)
    )
    double_dot = st.builds(
        lambda host, at: _insert(host, host.find("."), ".") if at else host + "..",
        good.filter(lambda h: "." in h),
        st.booleans(),
    )
    numeric = st.sampled_from(["1.2.3", "0x7f.0.0.1", "01.2.3.4", "1.2.3.4.5", "acme.123"])
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
            "[::1]:0",
            "[::1]:",
            "[not-an-ip]",
            "[fe80::1%25eth0]",
            "acme.example.test\r\nX-Injected: 1",
            "evil.test/acme.example.test",
            "user@acme.example.test",
            "acme'; DROP TABLE tenantkit_domains; --",
            "256.256.256.256",
            "xn--zz.example.test",
            "xn--.example.test",
        ]
    )
    long_label = st.integers(64, 80).map(lambda n: "a" * n + ".example.test")
    long_name = st.integers(128, 140).map(lambda n: ".".join(["ab"] * n))
    near_misses = st.one_of(injected, bad_port, folded, folded_dot, double_dot, numeric)
    result: SearchStrategy[str] = st.one_of(
        structural,
        long_label,
        long_name,
        near_misses,
        near_misses.map(_ascii_upper),
    )
    return result


# Lower-case letters valid (PVALID) in IDNA 2008 labels next to ASCII letters: a, o and u
# with diaeresis, e acute, n tilde, c cedilla, o stroke, a ring, Cyrillic zhe and ya, Greek
# medial and final sigma, sharp s, a CJK ideograph, dotless i. (Sharp s and final sigma have
# no upper case that lower-cases back to them; _upper_safely leaves them alone.)
_UNICODE_LETTERS = ["\xe4", "\xf6", "\xfc", "\xe9", "\xf1", "\xe7", "\xf8", "\xe5", "\u0436"]
_UNICODE_LETTERS += ["\u044f", "\u03c3", "\u03c2", "\xdf", "\u4e2d", "\u0131"]
# Whole labels: Devanagari "ksha" with and without a zero-width joiner after the virama (both
# valid IDNA 2008, two different hosts), "buecher" and "strasse" with umlaut and sharp s, and
# the Greek word for Greek (it ends in a final sigma).
_UNICODE_LABELS = ["\u0915\u094d\u200d\u0937", "\u0915\u094d\u0937", "b\xfccher", "stra\xdfe"]
_UNICODE_LABELS += ["\u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03cc\u03c2"]


def _idna_a_labels(name: str) -> str:
    """IDNA 2008 A-label form of a lower-case, already valid name, by the idna package.

    ASCII labels stay as they are: the idna package refuses hyphens in the third and fourth
    place, which DNS and browsers accept (``r3---sn-abc.googlevideo.com``).
    """
    import idna  # a dependency of tenantkit

    return ".".join(
        label if label.isascii() else idna.encode(label).decode("ascii")
        for label in name.split(".")
    )


def _upper_safely(text: str) -> str:
    # Upper-case only where lower-casing gives the same character back.
    return "".join(
        ch.upper() if len(ch.upper()) == 1 and ch.upper().lower() == ch else ch for ch in text
    )


def host_spellings() -> SearchStrategy[tuple[str, str]]:
    """``(spelling, canonical)``: one host written as clients and configuration write it, and
    the only form ``normalize_host`` may return for it.

    The spellings vary what the same host may vary in: upper case (ASCII and Unicode), one
    trailing dot, a port from 1 to 65535, and internationalised labels given in Unicode
    (``straße``, ``ς``, ``中``...) or as their A-labels, in either case. ``canonical`` is
    computed with the ``idna`` package (IDNA 2008, as browsers send it), independently of
    ``normalize_host``: ``straße.example`` must become ``xn--strae-oqa.example``, never the
    IDNA 2003 ``strasse.example``.
    """
    st = require("hypothesis.strategies")
    ascii_label = st.from_regex(r"[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
    unicode_label = st.builds(
        lambda left, letter, right: left + letter + right,
        st.from_regex(r"[a-z]{0,5}", fullmatch=True),
        st.sampled_from(_UNICODE_LETTERS),
        st.from_regex(r"[a-z]{0,5}", fullmatch=True),
    ) | st.sampled_from(_UNICODE_LABELS)
    tld = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
    names = st.builds(
        lambda labels, top: ".".join([*labels, top]),
        st.lists(ascii_label | unicode_label, min_size=1, max_size=3),
        tld,
    ).filter(lambda name: len(_idna_a_labels(name)) <= 253)

    def spell(name: str, a_labels: bool, upper: bool, dot: bool, port: int | None) -> str:
        text = _idna_a_labels(name) if a_labels else name
        if upper:
            text = _upper_safely(text)
        return text + ("." if dot else "") + (f":{port}" if port is not None else "")

    result: SearchStrategy[tuple[str, str]] = names.flatmap(
        lambda name: st.tuples(
            st.builds(
                spell,
                st.just(name),
                st.booleans(),
                st.booleans(),
                st.booleans(),
                st.none() | st.integers(1, 65535),
            ),
            st.just(_idna_a_labels(name)),
        )
    )
    return result


# (registered, lookalike) pieces: inside a label, the lookalike piece replaces the registered
# one. Each lookalike is a different host (or no valid host at all) that displays alike.
_LOOKALIKES = [
    # Homoglyphs from other scripts, valid IDNA 2008 with a different A-label: Cyrillic a, es,
    # ie, o, er, ha, u; Greek omicron; dotless i; the dental click that looks like l.
    *[("a", "\u0430"), ("c", "\u0441"), ("e", "\u0435"), ("o", "\u043e"), ("p", "\u0440")],
    *[("x", "\u0445"), ("y", "\u0443"), ("o", "\u03bf"), ("i", "\u0131"), ("l", "\u01c0")],
    # IDNA 2003 folded these into one spelling, IDNA 2008 keeps them apart: sharp s and "ss",
    # final and medial sigma, Devanagari ksha with and without a zero-width joiner.
    *[("ss", "\xdf"), ("\xdf", "ss"), ("\u03c3", "\u03c2"), ("\u03c2", "\u03c3")],
    *[("\u0915\u094d\u0937", "\u0915\u094d\u200d\u0937")],
    *[("\u0915\u094d\u200d\u0937", "\u0915\u094d\u0937")],
    # Invisible characters IDNA 2003 or UTS-46 deletes, and joiners outside their context:
    # soft hyphen, zero-width space, non-joiner and joiner, word joiner, BOM, combining
    # grapheme joiner, variation selector 16, Mongolian free variation selector one.
    *[("", "\xad"), ("", "\u200b"), ("", "\u200c"), ("", "\u200d"), ("", "\u2060")],
    *[("", "\ufeff"), ("", "\u034f"), ("", "\ufe0f"), ("", "\u180b")],
    # Compatibility characters UTS-46 maps onto the registered ones: full-width a, the
    # ordinal indicators, the Kelvin sign, the "fi" and "ij" ligatures, circled a,
    # mathematical bold a, capital I with dot above, roman numeral one, superscript two,
    # capital sharp s.
    *[("a", "\uff41"), ("a", "\xaa"), ("o", "\xba"), ("k", "\u212a"), ("fi", "\ufb01")],
    *[("ij", "\u0133"), ("a", "\u24d0"), ("a", "\U0001d41a"), ("i", "\u0130")],
    *[("i", "\u2160"), ("2", "\xb2"), ("ss", "\u1e9e")],
]
# Look-alike dots: ideographic, full-width and half-width ideographic full stops.
_LOOKALIKE_DOTS = ["\u3002", "\uff0e", "\uff61"]


def lookalike_hosts() -> SearchStrategy[tuple[str, str]]:
    """``(registered, lookalike)``: a registered (normalised) host and another host that looks
    like it; ``normalize_host(lookalike)`` must raise ``InvalidHostname`` or return a host
    other than ``registered``, so the lookalike can never reach the registered tenant.

    The lookalikes: homoglyphs from other scripts (Cyrillic a, Greek omicron...), the
    IDNA 2003/2008 differences (``ß`` and ``ss``, final and medial sigma, a zero-width joiner
    after a virama), invisible characters (soft hyphen, zero-width space and joiners, BOM,
    variation selectors), compatibility characters UTS-46 maps onto ASCII (full-width
    letters, ``ª``, ``º``, the Kelvin sign, ligatures, capital sharp s) and look-alike dots
    (``。``), in upper case too.
    """
    st = require("hypothesis.strategies")
    side = st.from_regex(r"[a-z]{1,6}", fullmatch=True)
    tld = st.from_regex(r"[a-z]{2,6}", fullmatch=True)

    def piece(left: str, pair: tuple[str, str], right: str, top: str, upper: bool) -> Any:
        registered, lookalike = pair
        reg = f"{left}{registered}{right}.{top}"
        look = f"{left}{lookalike}{right}.{top}"
        return _idna_a_labels(reg), _upper_safely(look) if upper else look

    in_label = st.builds(piece, side, st.sampled_from(_LOOKALIKES), side, tld, st.booleans())
    dots = st.builds(
        lambda left, dot, right, top: (f"{left}.{right}.{top}", f"{left}{dot}{right}.{top}"),
        side,
        st.sampled_from(_LOOKALIKE_DOTS),
        side,
        tld,
    )
    result: SearchStrategy[tuple[str, str]] = in_label | dots
    return result
