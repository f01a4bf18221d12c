"""XDS metadata of an XDM package: the ebRIM 3.0 ``lcm:SubmitObjectsRequest`` (SPEC §7.1–7.2).

``build_metadata`` writes a SubmissionSet (``rim:RegistryPackage``), its DocumentEntries
(``rim:ExtrinsicObject``) and the ``HasMember`` associations, with the classification and
identification schemes of IHE ITI TF-3 §4.2.5 (checked against the DRIMbox and Direct Project
samples in ``data/xdm/``). ``parse_metadata`` reads it back into the same dataclasses.

Parsing is hostile-input safe: defusedxml's expat parser with any DTD, entity declaration or
external reference refused (``UnsafeXml`` reasons ``xml-dtd``, ``xml-entity``,
``xml-external-entity``), and bounded size, depth and element count (``xml-too-large``,
``xml-too-deep``, ``xml-too-many-elements``). Nothing is fetched, nothing is expanded.

Deviations seen in the wild (a SOAP envelope around the request, an ``HasMember`` association
type without its URN, a malformed or non-INS patient id…) are *warnings* in lenient mode and
*problems* in strict mode; what makes the metadata unusable is a problem in both modes.
Slot values are read with surrounding white space stripped; names and codes are kept verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, TreeBuilder, indent, tostring

from defusedxml.ElementTree import DefusedXMLParser

__all__ = [
    "DEFAULT_XML_LIMITS",
    "DOCUMENT_CODE_SCHEMES",
    "INS_NIA_OID",
    "INS_NIR_OID",
    "INS_OIDS",
    "INS_TEST_OID",
    "LCM_NS",
    "RIM_NS",
    "Association",
    "Author",
    "Code",
    "CodeChecker",
    "DocumentEntry",
    "Findings",
    "Metadata",
    "MetadataError",
    "Problem",
    "SubmissionSet",
    "UnsafeXml",
    "XmlLimits",
    "build_metadata",
    "format_dtm",
    "format_patient_id",
    "parse_metadata",
    "parse_patient_id",
    "safe_parse_xml",
]

LCM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_TEST_OID = "1.2.250.1.213.1.4.10"
INS_OIDS = frozenset({INS_NIR_OID, INS_NIA_OID, INS_TEST_OID})

# IHE ITI TF-3 §4.2.5 (Table 4.2.5-1 / -2)
STABLE_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
ENTRY_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
ENTRY_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
ENTRY_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SET_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SET_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SET_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SET_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
DOCUMENT_CODE_SCHEMES = {
    "classCode": "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
    "typeCode": "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
    "formatCode": "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
    "confidentialityCode": "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
    "healthcareFacilityTypeCode": "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
    "practiceSettingCode": "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
    "eventCodeList": "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4",
}
_REQUIRED_CODES = tuple(DOCUMENT_CODE_SCHEMES)[:-1]  # all but eventCodeList
_AUTHOR_SLOTS = ("authorInstitution", "authorRole", "authorSpecialty", "authorTelecommunication")
_REFERENCE_ID_LIST = "urn:ihe:iti:xds:2013:referenceIdList"
_KNOWN_SLOTS = {
    "creationTime",
    "languageCode",
    "legalAuthenticator",
    "serviceStartTime",
    "serviceStopTime",
    "sourcePatientId",
    "sourcePatientInfo",
    "hash",
    "size",
    "URI",
    _REFERENCE_ID_LIST,
}
_DTM = re.compile(r"[0-9]{4}(?:[0-9]{2}){0,5}")  # not \d: that takes any Unicode digit
_CX = re.compile(r"([^^&]+)\^\^\^&([0-9]+(?:\.[0-9]+)*)&ISO(?:\^[A-Za-z]*)?")
_CX_LOOSE = re.compile(r"([^^&]+)\^+&([0-9]+(?:\.[0-9]+)*)&ISO\b.*")
_BAD_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """One finding: ``code`` is stable (tests and MDN mapping), ``message`` is for humans."""

    code: str
    message: str
    where: str = ""


class MetadataError(ValueError):
    """The metadata cannot be used at all."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class UnsafeXml(MetadataError):
    """Hostile XML refused before anything was expanded or fetched."""


@dataclass(frozen=True)
class Code:
    code: str
    scheme: str  # the codingScheme slot, an OID in France
    display: str = ""


@dataclass(frozen=True)
class Author:
    person: str = ""  # XCN
    institutions: tuple[str, ...] = ()  # XON
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    telecoms: tuple[str, ...] = ()  # XTN, e.g. ^^Internet^bal@domaine.mssante.fr


@dataclass(frozen=True, kw_only=True)
class DocumentEntry:
    unique_id: str
    patient_id: str  # CX: <INS>^^^&<OID>&ISO
    mime_type: str
    class_code: Code | None
    type_code: Code | None
    format_code: Code | None
    confidentiality_codes: tuple[Code, ...]
    healthcare_facility_type_code: Code | None
    practice_setting_code: Code | None
    creation_time: str  # DTM, UTC
    entry_id: str = ""  # the builder names it Document01… when empty
    language_code: str = "fr-FR"
    title: str = ""
    comments: str = ""
    authors: tuple[Author, ...] = ()
    event_codes: tuple[Code, ...] = ()
    service_start_time: str | None = None
    service_stop_time: str | None = None
    source_patient_id: str | None = None
    source_patient_info: tuple[str, ...] = ()
    legal_authenticator: str | None = None
    reference_ids: tuple[str, ...] = ()
    hash: str | None = None  # SHA-1, lower-case hex; the XDM builder fills it in
    size: int | None = None  # the XDM builder fills it in
    uri: str | None = None  # relative to the subset folder; the XDM builder fills it in
    other_slots: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def codes(self) -> Iterator[tuple[str, Code]]:
        """Every code with its slot name (the names of ``DOCUMENT_CODE_SCHEMES``)."""
        for slot, code in (
            ("classCode", self.class_code),
            ("typeCode", self.type_code),
            ("formatCode", self.format_code),
            ("healthcareFacilityTypeCode", self.healthcare_facility_type_code),
            ("practiceSettingCode", self.practice_setting_code),
        ):
            if code is not None:
                yield slot, code
        yield from (("confidentialityCode", c) for c in self.confidentiality_codes)
        yield from (("eventCodeList", c) for c in self.event_codes)


@dataclass(frozen=True, kw_only=True)
class SubmissionSet:
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: str  # DTM, UTC
    content_type_code: Code | None
    authors: tuple[Author, ...] = ()
    title: str = ""
    comments: str = ""
    intended_recipients: tuple[str, ...] = ()
    entry_id: str = "SubmissionSet01"


@dataclass(frozen=True)
class Association:
    id: str
    type: str
    source: str
    target: str
    status: str = ""  # the SubmissionSetStatus slot


CodeChecker = Callable[[str, Code], str | None]
"""``checker(slot, code)`` returns why ``code`` is not allowed in ``slot``, or ``None``."""


@dataclass(frozen=True)
class Metadata:
    submission: SubmissionSet
    documents: tuple[DocumentEntry, ...]
    associations: tuple[Association, ...]
    warnings: tuple[Problem, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class XmlLimits:
    max_bytes: int = 20 * _MIB
    max_depth: int = 64
    max_elements: int = 200_000


DEFAULT_XML_LIMITS = XmlLimits()


def format_dtm(moment: datetime) -> str:
    """An HL7 DTM in UTC to the second (``YYYYMMDDhhmmss``), as XDS expects."""
    m = moment.astimezone(UTC)  # not strftime: %Y gives "999", not "0999", for year 999
    return f"{m.year:04d}{m.month:02d}{m.day:02d}{m.hour:02d}{m.minute:02d}{m.second:02d}"


def format_patient_id(ins: str, oid: str = INS_NIR_OID) -> str:
    """The XDS patientId of an INS: ``<INS>^^^&<OID>&ISO``."""
    return f"{ins}^^^&{oid}&ISO"


def parse_patient_id(cx: str, *, strict: bool = True) -> tuple[str, str] | None:
    """``(identifier, assigning authority OID)`` of a CX patient id, or ``None``.

    A trailing identifier type (``^NH``, used by the CI-SIS and the DRIMbox sample) is
    accepted; ``strict=False`` also accepts a wrong number of ``^`` before the authority.
    """
    match = (_CX if strict else _CX_LOOSE).fullmatch(cx.strip())
    return (match[1], match[2]) if match else None


# ----------------------------------------------------------------------------- safe parsing


class _LimitedBuilder:
    def __init__(self, limits: XmlLimits) -> None:
        self._builder = TreeBuilder()
        self._limits = limits
        self._depth = 0
        self._count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self._depth += 1
        self._count += 1
        if self._depth > self._limits.max_depth:
            raise UnsafeXml("xml-too-deep", f"elements nested deeper than {self._limits.max_depth}")
        if self._count > self._limits.max_elements:
            raise UnsafeXml("xml-too-many-elements", f"more than {self._limits.max_elements}")
        return self._builder.start(tag, attrs)

    def end(self, tag: str) -> Element:
        self._depth -= 1
        return self._builder.end(tag)

    def data(self, text: str) -> None:
        self._builder.data(text)

    def close(self) -> Element:
        return self._builder.close()


class _GuardedParser(DefusedXMLParser):  # type: ignore[misc]
    """defusedxml's parser, telling apart the kinds of DTD abuse and refusing every DTD."""

    def __init__(self, limits: XmlLimits) -> None:
        super().__init__(target=_LimitedBuilder(limits), forbid_dtd=True)
        self.parser.EndDoctypeDeclHandler = self._end_doctype

    def defused_start_doctype_decl(self, name: str, sysid: Any, pubid: Any, internal: Any) -> None:
        if not internal:
            raise UnsafeXml("xml-dtd", f"DOCTYPE {name} (external DTD {sysid or pubid!r})")

    def _end_doctype(self) -> None:
        raise UnsafeXml("xml-dtd", "a DOCTYPE with an internal subset")

    def defused_entity_decl(
        self, name: str, _p: Any, _v: Any, _b: Any, sysid: Any, pubid: Any, _n: Any
    ) -> None:
        if sysid or pubid:
            raise UnsafeXml("xml-external-entity", f"external entity {name} -> {sysid or pubid}")
        raise UnsafeXml("xml-entity", f"entity declaration {name} (entity expansion)")

    def defused_unparsed_entity_decl(self, name: str, *_: Any) -> None:
        raise UnsafeXml("xml-external-entity", f"unparsed external entity {name}")

    def defused_external_entity_ref_handler(self, _c: Any, _b: Any, sysid: Any, _p: Any) -> None:
        raise UnsafeXml("xml-external-entity", f"external reference {sysid}")


def safe_parse_xml(data: bytes, limits: XmlLimits = DEFAULT_XML_LIMITS) -> Element:
    """Parse untrusted XML; ``UnsafeXml`` on abuse, ``MetadataError('malformed-xml')``."""
    if len(data) > limits.max_bytes:
        raise UnsafeXml("xml-too-large", f"{len(data)} bytes (limit {limits.max_bytes})")
    parser = _GuardedParser(limits)
    try:
        parser.feed(data)
        root: Element = parser.close()
    except (ParseError, LookupError, UnicodeError) as exc:  # LookupError: unknown encoding
        raise MetadataError("malformed-xml", str(exc)) from exc
    return root


# ----------------------------------------------------------------------------- building


def _text_ok(value: str, what: str, *, line: bool = True) -> str:
    if _BAD_XML_CHARS.search(value) or (line and re.search(r"[\r\n\t]", value)):
        raise ValueError(f"{what}: character not allowed in {value!r}")
    return value


class _Writer:
    def __init__(self) -> None:
        self.root = Element("lcm:SubmitObjectsRequest", {"xmlns:lcm": LCM_NS, "xmlns:rim": RIM_NS})
        self.objects = SubElement(self.root, "rim:RegistryObjectList")
        self._ids = 0

    def new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids:02d}"

    def slot(self, parent: Element, name: str, values: Iterable[str | None]) -> None:
        if kept := [v for v in values if v is not None]:
            slot = SubElement(parent, "rim:Slot", name=_text_ok(name, "slot name"))
            value_list = SubElement(slot, "rim:ValueList")
            for value in kept:
                SubElement(value_list, "rim:Value").text = _text_ok(value, name)

    def named(self, parent: Element, tag: str, text: str) -> None:
        if text:
            holder = SubElement(parent, tag)
            SubElement(holder, "rim:LocalizedString", value=_text_ok(text, tag, line=False))

    def author(self, parent: Element, scheme: str, owner: str, author: Author) -> None:
        c = self._classification(parent, scheme, owner, "")
        self.slot(c, "authorPerson", [author.person or None])
        for name, values in zip(_AUTHOR_SLOTS, astuple(author)[1:], strict=True):
            self.slot(c, name, values)

    def code(self, parent: Element, scheme: str, owner: str, code: Code) -> None:
        c = self._classification(parent, scheme, owner, _text_ok(code.code, "code"))
        self.slot(c, "codingScheme", [code.scheme])
        self.named(c, "rim:Name", code.display)

    def _classification(self, parent: Element, scheme: str, owner: str, node: str) -> Element:
        return SubElement(
            parent,
            "rim:Classification",
            id=self.new_id("cl"),
            classificationScheme=scheme,
            classifiedObject=owner,
            nodeRepresentation=node,
        )

    def ident(self, parent: Element, scheme: str, owner: str, value: str, label: str) -> None:
        ei = SubElement(
            parent,
            "rim:ExternalIdentifier",
            id=self.new_id("ei"),
            identificationScheme=scheme,
            registryObject=owner,
            value=_text_ok(value, label),
        )
        self.named(ei, "rim:Name", label)


def _dtm_ok(*values: tuple[str, str | None]) -> None:
    for what, value in values:
        if value is not None and not _DTM.fullmatch(value):
            raise ValueError(f"{what} {value!r} is not an HL7 DTM (YYYYMMDDhhmmss)")


def _required_codes(entry: DocumentEntry) -> list[tuple[str, Code]]:
    codes = list(entry.codes())
    present = {slot for slot, _ in codes}
    if missing := [slot for slot in _REQUIRED_CODES if slot not in present]:
        raise ValueError(f"{entry.entry_id}: {', '.join(missing)} required")
    return codes


def build_metadata(submission: SubmissionSet, entries: Iterable[DocumentEntry]) -> bytes:
    """The ``METADATA.XML`` bytes (UTF-8) of a submission set and its document entries.

    ``ValueError`` on a missing required code, an empty or repeated id, a time that is not an
    HL7 DTM, or a character that XML cannot carry (control characters; line breaks outside
    titles, comments and displays).
    """
    w = _Writer()
    ss_id = submission.entry_id
    members: list[str] = []
    for entry in entries:
        eid = entry.entry_id
        if not eid or eid in members or eid == ss_id:
            raise ValueError(f"document entry id {eid!r} is empty or not unique")
        members.append(_text_ok(eid, "id"))
        codes = _required_codes(entry)
        _dtm_ok(
            ("creationTime", entry.creation_time),
            ("serviceStartTime", entry.service_start_time),
            ("serviceStopTime", entry.service_stop_time),
        )
        mime = _text_ok(entry.mime_type, "mimeType")
        eo = SubElement(
            w.objects, "rim:ExtrinsicObject", id=eid, mimeType=mime, objectType=STABLE_ENTRY
        )
        size = None if entry.size is None else str(entry.size)
        slots: list[tuple[str, Iterable[str | None]]] = [
            ("creationTime", [entry.creation_time]),
            ("languageCode", [entry.language_code]),
            ("legalAuthenticator", [entry.legal_authenticator]),
            ("serviceStartTime", [entry.service_start_time]),
            ("serviceStopTime", [entry.service_stop_time]),
            ("sourcePatientId", [entry.source_patient_id]),
            ("sourcePatientInfo", entry.source_patient_info),
            ("hash", [entry.hash]),
            ("size", [size]),
            ("URI", [entry.uri]),
            (_REFERENCE_ID_LIST, entry.reference_ids),
            *entry.other_slots,
        ]
        for name, values in slots:
            w.slot(eo, name, values)
        w.named(eo, "rim:Name", entry.title)
        w.named(eo, "rim:Description", entry.comments)
        for author in entry.authors:
            w.author(eo, ENTRY_AUTHOR, eid, author)
        for slot, code in codes:
            w.code(eo, DOCUMENT_CODE_SCHEMES[slot], eid, code)
        w.ident(eo, ENTRY_PATIENT_ID, eid, entry.patient_id, "XDSDocumentEntry.patientId")
        w.ident(eo, ENTRY_UNIQUE_ID, eid, entry.unique_id, "XDSDocumentEntry.uniqueId")
    _dtm_ok(("submissionTime", submission.submission_time))
    rp = SubElement(w.objects, "rim:RegistryPackage", id=_text_ok(ss_id, "id"))
    w.slot(rp, "submissionTime", [submission.submission_time])
    w.slot(rp, "intendedRecipient", submission.intended_recipients)
    w.named(rp, "rim:Name", submission.title)
    w.named(rp, "rim:Description", submission.comments)
    for author in submission.authors:
        w.author(rp, SET_AUTHOR, ss_id, author)
    if submission.content_type_code is not None:
        w.code(rp, SET_CONTENT_TYPE, ss_id, submission.content_type_code)
    w.ident(rp, SET_UNIQUE_ID, ss_id, submission.unique_id, "XDSSubmissionSet.uniqueId")
    w.ident(rp, SET_SOURCE_ID, ss_id, submission.source_id, "XDSSubmissionSet.sourceId")
    w.ident(rp, SET_PATIENT_ID, ss_id, submission.patient_id, "XDSSubmissionSet.patientId")
    SubElement(
        w.objects,
        "rim:Classification",
        id=w.new_id("cl"),
        classifiedObject=ss_id,
        classificationNode=SUBMISSION_SET_NODE,
    )
    for eid in members:
        a = SubElement(
            w.objects,
            "rim:Association",
            id=w.new_id("as"),
            associationType=HAS_MEMBER,
            sourceObject=ss_id,
            targetObject=eid,
        )
        w.slot(a, "SubmissionSetStatus", ["Original"])
    indent(w.root)
    xml: bytes = tostring(w.root, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


# ----------------------------------------------------------------------------- parsing


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _kids(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def _slots(element: Element) -> dict[str, list[str]]:
    slots: dict[str, list[str]] = {}
    for slot in _kids(element, "Slot"):
        values = slots.setdefault(slot.get("name", ""), [])
        for value_list in _kids(slot, "ValueList"):
            values.extend((v.text or "").strip() for v in _kids(value_list, "Value"))
    return slots


def _name(element: Element, tag: str = "Name") -> str:
    for holder in _kids(element, tag):
        for string in _kids(holder, "LocalizedString"):
            return string.get("value", "")
    return ""


@dataclass
class Findings:
    """Collects warnings and problems; ``deviation`` is a warning when lenient, else a problem."""

    lenient: bool
    warnings: list[Problem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def deviation(self, code: str, message: str, where: str = "") -> None:
        (self.warnings if self.lenient else self.problems).append(Problem(code, message, where))

    def warn(self, code: str, message: str, where: str = "") -> None:
        self.warnings.append(Problem(code, message, where))

    def problem(self, code: str, message: str, where: str = "") -> None:
        self.problems.append(Problem(code, message, where))


def _author(c: Element) -> Author:
    s = _slots(c)
    person = (s.get("authorPerson") or [""])[0]
    return Author(person, *(tuple(s.get(name, [])) for name in _AUTHOR_SLOTS))


def _code(c: Element, r: Findings, where: str, slot: str) -> Code:
    schemes = _slots(c).get("codingScheme") or [""]
    code = Code(c.get("nodeRepresentation", ""), schemes[0], _name(c))
    if not code.code:
        r.problem("bad-code", f"{slot} without nodeRepresentation", where)
    if not code.scheme:
        r.deviation("missing-coding-scheme", f"{slot} {code.code} has no codingScheme", where)
    return code


def _one_value(slots: dict[str, list[str]], name: str) -> str | None:
    values = slots.get(name)
    return values[0] if values else None


def _time(value: str | None, slot: str, r: Findings, where: str) -> str | None:
    if value is not None and not _DTM.fullmatch(value):
        r.deviation("bad-time", f"{slot} {value!r} is not an HL7 DTM", where)
    return value


def _patient(cx: str, r: Findings, where: str) -> tuple[str, str] | None:
    if not cx:
        r.problem("missing-patient-id", "no patientId", where)
        return None
    pid = parse_patient_id(cx)
    if pid is None:
        pid = parse_patient_id(cx, strict=False)
        if pid is None:
            r.problem("bad-patient-id", f"patientId {cx!r} is not <id>^^^&<OID>&ISO", where)
            return None
        r.deviation("bad-patient-id", f"patientId {cx!r} is malformed (read as {pid})", where)
    if pid[1] not in INS_OIDS:
        r.deviation("patient-id-not-ins", f"patientId authority {pid[1]} is not an INS OID", where)
    return pid


def _idents(obj: Element, known: dict[str, str], r: Findings, where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for ei in _kids(obj, "ExternalIdentifier"):
        scheme = ei.get("identificationScheme", "")
        if scheme in known:
            found[known[scheme]] = ei.get("value", "").strip()
        else:
            r.deviation("unknown-external-identifier", f"identificationScheme {scheme!r}", where)
    return found


def _entry(eo: Element, cls: list[Element], r: Findings) -> DocumentEntry:
    eid = eo.get("id", "")
    s = _slots(eo)
    if eo.get("objectType") != STABLE_ENTRY:
        r.deviation("object-type", f"objectType {eo.get('objectType')!r}", eid)
    codes: dict[str, list[Code]] = {slot: [] for slot in DOCUMENT_CODE_SCHEMES}
    by_scheme = {uuid: slot for slot, uuid in DOCUMENT_CODE_SCHEMES.items()}
    authors: list[Author] = []
    for c in cls:
        scheme = c.get("classificationScheme", "")
        if scheme == ENTRY_AUTHOR:
            authors.append(_author(c))
        elif scheme in by_scheme:
            codes[by_scheme[scheme]].append(_code(c, r, eid, by_scheme[scheme]))
        else:
            r.warn("unknown-classification", f"classification {scheme!r} ignored", eid)
    for slot in _REQUIRED_CODES:
        if not codes[slot]:
            r.problem("missing-code", f"no {slot}", eid)
        elif len(codes[slot]) > 1 and slot != "confidentialityCode":
            r.problem("multiple-codes", f"{len(codes[slot])} {slot} classifications", eid)
    single = {slot: found[0] if found else None for slot, found in codes.items()}
    ids = _idents(eo, {ENTRY_PATIENT_ID: "patient", ENTRY_UNIQUE_ID: "unique"}, r, eid)
    if not ids.get("unique"):
        r.problem("missing-unique-id", "no XDSDocumentEntry.uniqueId", eid)
    if not eo.get("mimeType"):
        r.problem("missing-mime-type", "no mimeType", eid)
    for slot in ("creationTime", "languageCode"):
        if slot not in s:
            r.deviation("missing-slot", f"no {slot} slot", eid)
    for slot in ("sourcePatientId", "sourcePatientInfo"):
        if slot not in s:
            r.warn("missing-optional-slot", f"no {slot} slot", eid)
    if not authors:
        r.warn("missing-optional-slot", "no author", eid)
    size = _one_value(s, "size")
    good_size = size is not None and re.fullmatch("[0-9]{1,15}", size) is not None
    if size is not None and not good_size:
        r.problem("bad-size", f"size {size!r}", eid)
    return DocumentEntry(
        entry_id=eid,
        unique_id=ids.get("unique", ""),
        patient_id=ids.get("patient", ""),
        mime_type=eo.get("mimeType", ""),
        class_code=single["classCode"],
        type_code=single["typeCode"],
        format_code=single["formatCode"],
        healthcare_facility_type_code=single["healthcareFacilityTypeCode"],
        practice_setting_code=single["practiceSettingCode"],
        confidentiality_codes=tuple(codes["confidentialityCode"]),
        creation_time=_time(_one_value(s, "creationTime"), "creationTime", r, eid) or "",
        language_code=_one_value(s, "languageCode") or "",
        title=_name(eo),
        comments=_name(eo, "Description"),
        authors=tuple(authors),
        event_codes=tuple(codes["eventCodeList"]),
        service_start_time=_time(_one_value(s, "serviceStartTime"), "serviceStartTime", r, eid),
        service_stop_time=_time(_one_value(s, "serviceStopTime"), "serviceStopTime", r, eid),
        source_patient_id=_one_value(s, "sourcePatientId"),
        source_patient_info=tuple(s.get("sourcePatientInfo", ())),
        legal_authenticator=_one_value(s, "legalAuthenticator"),
        reference_ids=tuple(s.get(_REFERENCE_ID_LIST, ())),
        hash=(_one_value(s, "hash") or "").lower() or None,
        size=int(size) if size is not None and good_size else None,
        uri=_one_value(s, "URI"),
        other_slots=tuple((k, tuple(v)) for k, v in s.items() if k not in _KNOWN_SLOTS),
    )


def _submission(rp: Element, cls: list[Element], r: Findings) -> SubmissionSet:
    sid = rp.get("id", "")
    s = _slots(rp)
    authors = [_author(c) for c in cls if c.get("classificationScheme") == SET_AUTHOR]
    content = [
        _code(c, r, sid, "contentTypeCode")
        for c in cls
        if c.get("classificationScheme") == SET_CONTENT_TYPE
    ]
    known = {SET_PATIENT_ID: "patient", SET_SOURCE_ID: "source", SET_UNIQUE_ID: "unique"}
    ids = _idents(rp, known, r, sid)
    for key, label in (("unique", "uniqueId"), ("source", "sourceId")):
        if not ids.get(key):
            r.problem(f"missing-{key}-id", f"no XDSSubmissionSet.{label}", sid)
    if "submissionTime" not in s:
        r.deviation("missing-slot", "no submissionTime slot", sid)
    if not content:
        r.deviation("missing-code", "no contentTypeCode", sid)
    if not authors:
        r.warn("missing-optional-slot", "no author", sid)
    return SubmissionSet(
        entry_id=sid,
        unique_id=ids.get("unique", ""),
        source_id=ids.get("source", ""),
        patient_id=ids.get("patient", ""),
        submission_time=_time(_one_value(s, "submissionTime"), "submissionTime", r, sid) or "",
        content_type_code=content[0] if content else None,
        authors=tuple(authors),
        title=_name(rp),
        comments=_name(rp, "Description"),
        intended_recipients=tuple(s.get("intendedRecipient", ())),
    )


def _find_request(root: Element, r: Findings) -> Element:
    if _local(root.tag) == "SubmitObjectsRequest":
        request = root
    else:
        found = next((e for e in root.iter() if _local(e.tag) == "SubmitObjectsRequest"), None)
        if found is None:
            raise MetadataError("no-submit-objects-request", f"root element {root.tag}")
        request = found
        kind = "soap-envelope" if _local(root.tag) == "Envelope" else "wrapped-request"
        r.deviation(kind, f"SubmitObjectsRequest wrapped in {_local(root.tag)}")
    if request.tag != f"{{{LCM_NS}}}SubmitObjectsRequest":
        r.deviation("namespace", f"{request.tag} is not in the lcm 3.0 namespace")
    lists = _kids(request, "RegistryObjectList")
    if not lists:
        raise MetadataError("no-registry-object-list", "SubmitObjectsRequest is empty")
    return lists[0]


def parse_metadata(
    data: bytes, *, lenient: bool = False, limits: XmlLimits = DEFAULT_XML_LIMITS
) -> Metadata:
    """Read ``METADATA.XML``. Raises ``UnsafeXml`` or ``MetadataError`` when unusable."""
    r = Findings(lenient)
    objects = list(_find_request(safe_parse_xml(data, limits), r))
    if any(o.tag.startswith("{") and not o.tag.startswith(f"{{{RIM_NS}}}") for o in objects):
        r.deviation("namespace", "registry objects outside the rim 3.0 namespace")
    cls: dict[str, list[Element]] = {}
    for o in objects:
        for c in _kids(o, "Classification"):
            cls.setdefault(o.get("id", ""), []).append(c)
    for c in (o for o in objects if _local(o.tag) == "Classification"):
        cls.setdefault(c.get("classifiedObject", ""), []).append(c)
    packages = [o for o in objects if _local(o.tag) == "RegistryPackage"]
    nodes = {
        p.get("id", ""): {c.get("classificationNode") for c in cls.get(p.get("id", ""), [])}
        for p in packages
    }
    sets = [p for p in packages if SUBMISSION_SET_NODE in nodes[p.get("id", "")]]
    for p in packages:
        if FOLDER_NODE in nodes[p.get("id", "")]:
            r.warn("folder-ignored", "XDS folder ignored", p.get("id", ""))
    if not sets and len(packages) == 1:
        r.deviation("submission-set-unclassified", "RegistryPackage not classified as a set")
        sets = packages
    if len(sets) != 1:
        raise MetadataError("no-submission-set", f"{len(sets)} submission sets")
    submission = _submission(sets[0], cls.get(sets[0].get("id", ""), []), r)
    entries = [
        _entry(o, cls.get(o.get("id", ""), []), r)
        for o in objects
        if _local(o.tag) == "ExtrinsicObject"
    ]
    set_pid = _patient(submission.patient_id, r, submission.entry_id)
    ids = [submission.entry_id, *(e.entry_id for e in entries)]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        r.problem("duplicate-id", f"id {dup!r} used more than once", dup)
    for e in entries:
        pid = _patient(e.patient_id, r, e.entry_id)
        if pid and set_pid and pid != set_pid:
            r.problem("patient-id-mismatch", f"{e.patient_id} is not the set's patient", e.entry_id)
    associations: list[Association] = []
    for a in (o for o in objects if _local(o.tag) == "Association"):
        kind = a.get("associationType", "")
        if kind == "HasMember":
            r.deviation(
                "association-type", "associationType 'HasMember' without its URN", a.get("id", "")
            )
            kind = HAS_MEMBER
        status = (_slots(a).get("SubmissionSetStatus") or [""])[0]
        source, target = a.get("sourceObject", ""), a.get("targetObject", "")
        associations.append(Association(a.get("id", ""), kind, source, target, status))
        if kind == HAS_MEMBER and source == submission.entry_id and target not in ids:
            r.problem(
                "association-target-unknown", f"HasMember targets {target!r}", a.get("id", "")
            )
    members = {a.target for a in associations if a.type == HAS_MEMBER and a.source == ids[0]}
    for e in entries:
        if e.entry_id not in members:
            r.deviation("missing-association", "no HasMember from the submission set", e.entry_id)
    return Metadata(
        submission, tuple(entries), tuple(associations), tuple(r.warnings), tuple(r.problems)
    )
