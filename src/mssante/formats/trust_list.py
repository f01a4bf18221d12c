"""Parser of the ANS MSSanté white list ``listeblanchemssante.xml`` (SPEC §1.2, R1–R3; WL).

Format (WL, snapshot 2025-03-13)::

    <ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">
      <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>
      <ListeDomaines>
        <Domaine>
          <Nom>…</Nom> <Description>…</Description>
          <DNCertificatOperateur>CN=…,OU=…,O=…,ST=…,C=FR</DNCertificatOperateur>
          <ResponsableContact>phone, email</ResponsableContact>
          <SupportContact>phone, email</SupportContact>
          <DateMAJ>2025-03-13T14:54:10Z</DateMAJ>
        </Domaine> …
      </ListeDomaines>

Choices, all checked against the published file:

- Safety: parsed from bytes with defusedxml; a DTD, an entity declaration or an external
  reference is refused; the size and the number of ``Domaine`` entries are bounded.
- The published file (every stored upstream version) ends after ``</ListeDomaines>`` without
  the closing ``</ListeBlancheMSSante>`` tag, so it is not well-formed XML. That exact quirk is
  tolerated (and reported in ``TrustList.warnings``); any other truncation is refused. The
  SHA-256 ``checksum`` (R2) is what guards integrity.
- A domain listed several times with different DNs is normal (one entry per relay
  certificate: 619 entries, 516 names); the same (domain, DN) pair twice is harmless and
  only warned about. Any entry without ``Nom`` or DN, or with an invalid name or DN, rejects
  the whole list: R3 keeps the previous list rather than load a doubtful one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as safe_et

from mssante.domain.errors import TrustListRejected
from mssante.domain.trust import (
    Contact,
    TrustedDomain,
    TrustList,
    is_mssante_domain,
    is_valid_domain_name,
    normalise_domain,
    parse_dn,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DOMAINS",
    "NAMESPACE",
    "ROOT_ELEMENT",
    "load_trust_list",
    "parse_checksum",
    "parse_trust_list",
    "sha256_hex",
    "verify_checksum",
]

NAMESPACE = "https://listeblanche.mssante.fr/schema"
ROOT_ELEMENT = "ListeBlancheMSSante"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # the 2025 snapshot is 342 kB
DEFAULT_MAX_DOMAINS = 50_000  # the 2025 snapshot has 619 entries

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ROOT_END = re.compile(rb"</(?:[\w.-]+:)?" + ROOT_ELEMENT.encode() + rb"\s*>")
_MISSING_ROOT_END = (
    "the document lacks its closing </ListeBlancheMSSante> tag (a known quirk of the "
    "published file); accepted because it ends with a complete </ListeDomaines>"
)


def _q(local: str) -> str:
    return f"{{{NAMESPACE}}}{local}"


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data`` (what the WL ``checksum`` file holds)."""
    return hashlib.sha256(data).hexdigest()


def parse_checksum(checksum_text: str) -> str:
    """Extract the hex SHA-256 from a ``checksum`` file (``<hex>`` maybe followed by a name)."""
    for token in checksum_text.split():
        if _HEX64.fullmatch(token):
            return token.lower()
    raise TrustListRejected("checksum file holds no SHA-256 hex digest (64 hex characters)")


def verify_checksum(data: bytes, checksum_text: str) -> None:
    """R2: raise ``TrustListRejected`` unless SHA-256(data) equals the published checksum."""
    expected = parse_checksum(checksum_text)
    actual = sha256_hex(data)
    if not hmac.compare_digest(expected.encode("ascii"), actual.encode("ascii")):
        raise TrustListRejected(
            f"checksum mismatch: expected SHA-256 {expected}, got {actual} for the downloaded list"
        )


def _check_size(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise TrustListRejected(
            f"white list is {len(data)} bytes, above the limit of {max_bytes} bytes"
        )


def _fromstring(data: bytes) -> Element:
    root: Element = safe_et.fromstring(
        data, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    return root


def _parse_xml(data: bytes) -> tuple[Element, list[str]]:
    """Parse safely; tolerate only the missing root end tag of the published file."""
    try:
        try:
            return _fromstring(data), []
        except ParseError as first:
            if data.rstrip().endswith(b"</ListeDomaines>") and not _ROOT_END.search(data):
                try:
                    repaired = data.rstrip() + b"</" + ROOT_ELEMENT.encode() + b">"
                    return _fromstring(repaired), [_MISSING_ROOT_END]
                except ParseError:
                    pass
            raise TrustListRejected(f"white list is not well-formed XML: {first}") from first
    except defusedxml.DTDForbidden as exc:
        raise TrustListRejected("white list refused: a DTD is forbidden") from exc
    except defusedxml.EntitiesForbidden as exc:
        raise TrustListRejected("white list refused: entity declarations are forbidden") from exc
    except defusedxml.ExternalReferenceForbidden as exc:
        raise TrustListRejected("white list refused: external references are forbidden") from exc
    except defusedxml.DefusedXmlException as exc:
        raise TrustListRejected(f"white list refused by the XML guard: {exc}") from exc


def _only(parent: Element, local: str, where: str, *, required: bool) -> Element | None:
    found = parent.findall(_q(local))
    if len(found) > 1:
        raise TrustListRejected(f"{where} has {len(found)} {local} elements, expected one")
    if not found and required:
        raise TrustListRejected(f"{where} has no {local} element")
    return found[0] if found else None


def _text(parent: Element, local: str, where: str) -> str | None:
    elem = _only(parent, local, where, required=False)
    text = (elem.text or "").strip() if elem is not None else ""
    return text or None


def _required_text(parent: Element, local: str, where: str) -> str:
    text = _text(parent, local, where)
    if text is None:
        raise TrustListRejected(f"{where} has no {local} element or it is empty")
    return text


def _parse_datetime(text: str) -> datetime:
    """ISO-8601 with an explicit offset (the WL uses ``Z``); returned in UTC."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return value.astimezone(UTC)


def _check_root(root: Element) -> None:
    if root.tag == _q(ROOT_ELEMENT):
        return
    namespace, _, local = (
        root.tag[1:].rpartition("}") if root.tag.startswith("{") else ("", "", root.tag)
    )
    if local == ROOT_ELEMENT:
        raise TrustListRejected(
            f"root element is in namespace {namespace or '(none)'!r}, expected {NAMESPACE!r}"
        )
    raise TrustListRejected(f"wrong root element {root.tag!r}, expected {_q(ROOT_ELEMENT)!r}")


def _parse_entry(elem: Element, index: int, warnings: list[str]) -> TrustedDomain:
    where = f"Domaine #{index}"
    raw_name = _text(elem, "Nom", where)
    if raw_name is None:
        raise TrustListRejected(f"{where} has no Nom (domain name)")
    if not is_valid_domain_name(raw_name):
        raise TrustListRejected(f"{where}: invalid domain name {raw_name!r}")
    name = normalise_domain(raw_name)
    where = f"{where} ({name})"
    dn = _required_text(elem, "DNCertificatOperateur", where)
    updated_at: datetime | None = None
    date_text = _text(elem, "DateMAJ", where)
    if date_text is not None:
        try:
            updated_at = _parse_datetime(date_text)
        except ValueError:
            warnings.append(f"{where}: unreadable DateMAJ {date_text!r} ignored")
    responsible = _text(elem, "ResponsableContact", where)
    support = _text(elem, "SupportContact", where)
    try:
        return TrustedDomain(
            name=name,
            operator_dn=dn,
            description=_text(elem, "Description", where) or "",
            responsible=Contact.from_text(responsible) if responsible else None,
            support=Contact.from_text(support) if support else None,
            updated_at=updated_at,
        )
    except ValueError as exc:
        raise TrustListRejected(f"{where}: invalid DNCertificatOperateur {dn!r}: {exc}") from exc


def parse_trust_list(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_domains: int = DEFAULT_MAX_DOMAINS,
) -> TrustList:
    """Parse and validate a white list (R1). Raises ``TrustListRejected`` with the reason."""
    _check_size(data, max_bytes)
    root, warnings = _parse_xml(data)
    _check_root(root)
    generated_text = _required_text(root, "DateDeGeneration", ROOT_ELEMENT)
    try:
        generated_at = _parse_datetime(generated_text)
    except ValueError as exc:
        raise TrustListRejected(f"invalid DateDeGeneration {generated_text!r}: {exc}") from exc
    listing = _only(root, "ListeDomaines", ROOT_ELEMENT, required=True)
    elements = listing.findall(_q("Domaine")) if listing is not None else []
    if not elements:
        raise TrustListRejected("empty list: ListeDomaines holds no Domaine entry")
    if len(elements) > max_domains:
        raise TrustListRejected(
            f"white list has {len(elements)} Domaine entries, above the limit of {max_domains}"
        )
    entries: list[TrustedDomain] = []
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for index, elem in enumerate(elements, start=1):
        entry = _parse_entry(elem, index, warnings)
        key = (entry.name, parse_dn(entry.operator_dn))
        if key in seen:
            warnings.append(
                f"Domaine #{index} ({entry.name}) repeats Domaine #{seen[key]} with the same DN"
            )
        else:
            seen[key] = index
        if not is_mssante_domain(entry.name):
            warnings.append(f"Domaine #{index} ({entry.name}) is not under mssante.fr (R11)")
        entries.append(entry)
    return TrustList(
        generated_at=generated_at,
        entries=tuple(entries),
        sha256=sha256_hex(data),
        warnings=tuple(warnings),
    )


def load_trust_list(
    data: bytes,
    checksum_text: str | None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_domains: int = DEFAULT_MAX_DOMAINS,
) -> TrustList:
    """R1–R2: check the size, then the checksum (when given), then parse.

    Any failure raises ``TrustListRejected``; the caller keeps its last valid list (R3).
    """
    _check_size(data, max_bytes)
    if checksum_text is not None:
        verify_checksum(data, checksum_text)
    return parse_trust_list(data, max_bytes=max_bytes, max_domains=max_domains)
