"""The MSSanté trust space: white-list entries, operator DNs and the rules that use them.

Pure domain code (no I/O). The XML parser lives in :mod:`mssante.formats.trust_list`.

Sources: SPEC §1.2 and §10 R1–R5, R11; WL = ansforge/MSS-liste-blanche.

Facts measured on the WL snapshot of 2025-03-13 (SPEC §1.2 [E]) that shape this model:

- one ``Domaine`` element is one *(domain, operator DN)* pair. The 619 entries name only
  516 distinct domains: a domain served by several relays (``smtp-1``/``smtp-2``…) is listed
  once per relay certificate, and five pairs are even listed twice. A domain therefore has
  one or more authorised DNs, and ``len(trust_list)`` counts entries (619, as R1 says);
- DNs are published most-specific first (``CN=…,OU=…,O=…,ST=…,C=FR``), like
  ``cryptography``'s ``Name.rfc4514_string()``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from cryptography import x509

#: One attribute: (canonical upper-case type, normalised value).
Attribute = tuple[str, str]
#: A flattened, normalised DN, most-specific attribute first.
DistinguishedName = tuple[Attribute, ...]
#: Normalised DN kept as RDNs (attributes of a multi-valued RDN are sorted).
_RDNs = tuple[tuple[Attribute, ...], ...]
#: Anything a DN comparison accepts.
DNInput = str | x509.Name | Sequence[Attribute]

MSSANTE_SUFFIX = "mssante.fr"

# Attribute type aliases (RFC 4514 §3, RFC 4519, OpenSSL/Java spellings) → canonical name.
_OID_NAMES: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "TITLE",
    "2.5.4.42": "GN",
    "2.5.4.97": "ORGANIZATIONIDENTIFIER",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "EMAILADDRESS",
}
_TYPE_ALIASES: dict[str, str] = {
    "S": "ST",
    "STATEORPROVINCENAME": "ST",
    "E": "EMAILADDRESS",
    "EMAIL": "EMAILADDRESS",
    "COMMONNAME": "CN",
    "COUNTRYNAME": "C",
    "LOCALITYNAME": "L",
    "ORGANIZATIONNAME": "O",
    "ORGANIZATIONALUNITNAME": "OU",
    "STREETADDRESS": "STREET",
    "SURNAME": "SN",
    "GIVENNAME": "GN",
    "DOMAINCOMPONENT": "DC",
    "USERID": "UID",
}
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_NUMERIC_OID = re.compile(r"(?:OID\.)?([0-9]+(?:\.[0-9]+)+)", re.IGNORECASE)
_HEX = frozenset("0123456789abcdefABCDEF")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# BER string tags accepted in a "#hex" value (RFC 4514 §2.4) and their codecs.
_BER_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be"}


def _canonical_type(raw: str) -> str:
    raw = raw.strip()
    numeric = _NUMERIC_OID.fullmatch(raw)
    if numeric:
        return _OID_NAMES.get(numeric.group(1), numeric.group(1))
    if not _KEYWORD.fullmatch(raw):
        raise ValueError(f"invalid DN attribute type {raw!r}")
    upper = raw.upper()
    return _TYPE_ALIASES.get(upper, upper)


def _normalise_value(value: str) -> str:
    """Compare values as X.520 caseIgnoreMatch would: NFC, collapsed spaces, case-folded."""
    return " ".join(unicodedata.normalize("NFC", value).split()).casefold()


def _decode_ber(hexstring: str) -> str:
    raw = bytes.fromhex(hexstring)
    if len(raw) >= 2 and raw[0] in _BER_STRINGS:
        length, start = raw[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, start = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
        if start + length == len(raw):
            try:
                return raw[start:].decode(_BER_STRINGS[raw[0]])
            except UnicodeDecodeError:
                pass
    return "#" + hexstring.lower()


def _read_value(s: str, i: int) -> tuple[str, int]:
    """Read one RFC 4514 value from ``s[i:]``; return it and the index after it."""
    n = len(s)
    if i < n and s[i] == "#":
        j = i + 1
        while j < n and s[j] in _HEX:
            j += 1
        if (j - i - 1) % 2 or j == i + 1:
            raise ValueError("invalid hex-encoded DN value")
        return _decode_ber(s[i + 1 : j]), j
    quoted = i < n and s[i] == '"'  # RFC 2253/1779 legacy quoting
    if quoted:
        i += 1
    out: list[str] = []
    pending = bytearray()  # consecutive \XX escapes form one UTF-8 sequence
    while i < n:
        c = s[i]
        if quoted and c == '"':
            i += 1
            break
        if not quoted and c in ",+;":
            break
        if c == "\\":
            pair = s[i + 1 : i + 3]
            if len(pair) == 2 and all(h in _HEX for h in pair):
                pending.append(int(pair, 16))
                i += 3
                continue
            if i + 1 >= n:
                raise ValueError("DN ends with a lone backslash")
            c, i = s[i + 1], i + 1
        if pending:
            out.append(pending.decode("utf-8"))  # UnicodeDecodeError is a ValueError
            pending.clear()
        out.append(c)
        i += 1
    else:
        if quoted:
            raise ValueError("unterminated quoted DN value")
    if pending:
        out.append(pending.decode("utf-8"))
    return "".join(out), i


def _parse_rdns(dn: str) -> _RDNs:
    s, i, n = dn, 0, len(dn)
    rdns: list[tuple[Attribute, ...]] = []
    current: list[Attribute] = []
    if not s.strip():
        return ()
    while True:
        eq = s.find("=", i)
        if eq < 0:
            raise ValueError(f"DN component without '=' in {dn!r}")
        attr_type = _canonical_type(s[i:eq])
        start = eq + 1
        while start < n and s[start] == " ":
            start += 1
        value, i = _read_value(s, start)
        current.append((attr_type, _normalise_value(value)))
        while i < n and s[i] == " ":
            i += 1
        if i >= n:
            break
        if s[i] in ",;":
            rdns.append(tuple(sorted(current)))
            current = []
        elif s[i] != "+":
            raise ValueError(f"unexpected {s[i]!r} in DN {dn!r}")
        i += 1
    rdns.append(tuple(sorted(current)))
    return tuple(rdns)


def _rdns_of_x509(name: x509.Name) -> _RDNs:
    # Name.rdns is in ASN.1 order (C first); reverse it to the RFC 4514 / WL order.
    result: list[tuple[Attribute, ...]] = []
    for rdn in reversed(name.rdns):
        attrs: list[Attribute] = []
        for attr in rdn:
            value = attr.value if isinstance(attr.value, str) else "#" + attr.value.hex()
            kind = _OID_NAMES.get(attr.oid.dotted_string, attr.oid.dotted_string)
            attrs.append((kind, _normalise_value(value)))
        result.append(tuple(sorted(attrs)))
    return tuple(result)


def _rdns_of(dn: DNInput) -> _RDNs:
    if isinstance(dn, str):
        return _parse_rdns(dn)
    if isinstance(dn, x509.Name):
        return _rdns_of_x509(dn)
    return tuple(((_canonical_type(t), _normalise_value(v)),) for t, v in dn)


def parse_dn(dn: str) -> DistinguishedName:
    """Parse an RFC 4514 DN into normalised ``(TYPE, value)`` pairs, most specific first.

    Handles ``\\,`` and ``\\2C`` escapes, ``"quoted"`` values, ``#`` BER values, spaces around
    ``=``/``,``, ``;`` separators and ``+`` (flattened). Raises ``ValueError`` if malformed.
    """
    return tuple(attr for rdn in _parse_rdns(dn) for attr in rdn)


def dn_from_x509_name(name: x509.Name) -> DistinguishedName:
    """Same normalised form as :func:`parse_dn`, for a certificate subject or issuer."""
    return tuple(attr for rdn in _rdns_of_x509(name) for attr in rdn)


def dn_equal(a: DNInput, b: DNInput) -> bool:
    """True iff both DNs hold the same attributes in the same order, or in reversed order.

    Reversed order is accepted because some tools print DNs least-specific first. An empty
    or malformed DN never equals anything: an empty subject must never authenticate (R5).
    """
    try:
        ra, rb = _rdns_of(a), _rdns_of(b)
    except ValueError:
        return False
    return bool(ra) and (ra == rb or ra == rb[::-1])


def normalise_domain(name: str) -> str:
    """Lower-case a domain name and drop one trailing dot (domains are case-insensitive)."""
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") else name


def is_valid_domain_name(name: str) -> bool:
    """ASCII LDH host name (RFC 1123), at least two labels, at most 253 characters."""
    name = normalise_domain(name)
    labels = name.split(".")
    return (
        name.isascii()
        and len(name) <= 253
        and len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
    )


def is_mssante_domain(name: str) -> bool:
    """R11: a hosted MSSanté domain is a (strict) subdomain of ``mssante.fr``."""
    name = normalise_domain(name)
    return is_valid_domain_name(name) and name.endswith("." + MSSANTE_SUFFIX)


_EMAIL = re.compile(r"[^\s,;:<>()]+@[^\s,;:<>()]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+?\d[\d .()-]{5,}\d")


@dataclass(frozen=True, slots=True)
class Contact:
    """A ``ResponsableContact``/``SupportContact``: free text as published (WL).

    The text is usually ``"<phone>, <email>"`` but sometimes adds a name or omits a part;
    ``email`` and ``phone`` are best-effort extracts, ``text`` is authoritative.
    """

    text: str
    email: str | None = None
    phone: str | None = None

    @classmethod
    def from_text(cls, text: str) -> Contact:
        email = _EMAIL.search(text)
        phone = _PHONE.search(text)
        return cls(
            text=text,
            email=email.group(0) if email else None,
            phone=" ".join(phone.group(0).split()) if phone else None,
        )


@dataclass(frozen=True, slots=True)
class TrustedDomain:
    """One ``Domaine`` entry of the white list: a domain and one authorised operator DN."""

    name: str
    operator_dn: str
    description: str = ""
    responsible: Contact | None = None
    support: Contact | None = None
    updated_at: datetime | None = None
    _dn_key: _RDNs = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalise_domain(self.name))
        key = _parse_rdns(self.operator_dn)  # ValueError if malformed
        if not key:
            raise ValueError(f"empty operator DN for {self.name}")
        object.__setattr__(self, "_dn_key", key)

    def dn_matches(self, peer_dn: DNInput) -> bool:
        """True iff ``peer_dn`` equals this entry's DN (in either order)."""
        try:
            peer = _rdns_of(peer_dn)
        except ValueError:
            return False
        return bool(peer) and (peer == self._dn_key or peer[::-1] == self._dn_key)


@dataclass(frozen=True, slots=True)
class TrustList:
    """A parsed, validated white list (R1). ``len()`` counts ``Domaine`` entries."""

    generated_at: datetime
    entries: tuple[TrustedDomain, ...]
    sha256: str
    warnings: tuple[str, ...] = ()
    _by_name: Mapping[str, tuple[TrustedDomain, ...]] = field(init=False, repr=False, compare=False)
    _dn_keys: frozenset[_RDNs] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, list[TrustedDomain]] = {}
        for entry in self.entries:
            by_name.setdefault(entry.name, []).append(entry)
        index = {name: tuple(found) for name, found in by_name.items()}
        object.__setattr__(self, "_by_name", MappingProxyType(index))
        object.__setattr__(self, "_dn_keys", frozenset(e._dn_key for e in self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[TrustedDomain]:
        return iter(self.entries)

    def __contains__(self, domain: object) -> bool:
        return isinstance(domain, str) and self.contains(domain)

    def domain_names(self) -> frozenset[str]:
        """The distinct listed domain names (lower case)."""
        return frozenset(self._by_name)

    def entries_for(self, domain: str) -> tuple[TrustedDomain, ...]:
        """Every entry of ``domain`` (one per authorised operator DN), in document order."""
        return self._by_name.get(normalise_domain(domain), ())

    def get(self, domain: str) -> TrustedDomain | None:
        """The first entry of ``domain``, or None; see :meth:`entries_for` for all of them."""
        found = self.entries_for(domain)
        return found[0] if found else None

    def contains(self, domain: str) -> bool:
        """R4: True iff ``domain`` is in the trust space (case-insensitive, trailing dot ok)."""
        return normalise_domain(domain) in self._by_name

    def operator_dns(self) -> frozenset[str]:
        """The distinct ``DNCertificatOperateur`` strings, as published."""
        return frozenset(e.operator_dn for e in self.entries)

    def sender_authorised(self, sender_domain: str, peer_dn: DNInput) -> bool:
        """R5: the sender domain is listed with a DN equal to the peer certificate's subject."""
        return any(e.dn_matches(peer_dn) for e in self.entries_for(sender_domain))

    def is_operator(self, peer_dn: DNInput) -> bool:
        """True iff ``peer_dn`` equals the DN of any listed entry (null-sender bounces)."""
        try:
            peer = _rdns_of(peer_dn)
        except ValueError:
            return False
        return bool(peer) and (peer in self._dn_keys or peer[::-1] in self._dn_keys)
