"""CDA R2 documents of the CI-SIS: safe parsing, header extraction, PDF wrapping (SPEC §7, R39–R42).

- Parsing: lxml with entities, DTD loading and network off, ``huge_tree`` off (libxml2 then
  refuses nesting deeper than 256 and text nodes above 10 MB), a size limit, and any DOCTYPE
  refused (so no internal entity, no billion laughs, no XXE). The root must be
  ``{urn:hl7-org:v3}ClinicalDocument``.
- Header (:class:`CdaHeader`): identification, volet templateIds, patient INS and the four INS
  traits (birth name = ``family[@qualifier~BR]`` or the first ``family``; first given name =
  ``given[@qualifier~BR]`` or the first word of the first non-``CL`` ``given``; birth date;
  administrative sex), author, custodian, legal authenticator, service event and encounter
  dates. Times stay in the HL7 TS form (``YYYYMMDD[HHMM[SS]][±ZZZZ]``); :func:`hl7_date`
  turns them into dates.
- :func:`wrap_pdf` builds a CDA R2 level 1 document (``nonXMLBody``, base64 PDF) following the
  ANS example ``DOC_NON_STRUCTURE_CDA-R2-N1.xml`` (CI-SIS header + IHE XDS-SD templateIds).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

from lxml import etree

__all__ = [
    "CDA_NS",
    "DEFAULT_MAX_BYTES",
    "INS_OIDS",
    "Author",
    "CdaError",
    "CdaHeader",
    "Code",
    "InstanceId",
    "Organisation",
    "Patient",
    "WrapRequest",
    "element_path",
    "extract_embedded_pdf",
    "extract_header",
    "has_ins_with_traits",
    "hl7_date",
    "parse_cda",
    "wrap_pdf",
]

CDA_NS: Final = "urn:hl7-org:v3"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024
#: INS matricule OIDs (ANS): NIR, NIA, and the NIR of test documents.
INS_OIDS: Final = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR de test",
}
OID_IDNAT_PS: Final = "1.2.250.1.71.4.2.1"
OID_IDNAT_STRUCT: Final = "1.2.250.1.71.4.2.2"
TEMPLATE_HL7_FRANCE: Final = "2.16.840.1.113883.2.8.2.1"
TEMPLATE_CI_SIS: Final = "1.2.250.1.213.1.1.1.1"
TEMPLATE_XDS_SD: Final = "1.3.6.1.4.1.19376.1.2.20"
_C = f"{{{CDA_NS}}}"
_NS = {"cda": CDA_NS}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


class CdaError(ValueError):
    """The bytes are not an acceptable CDA R2 document (refused, not parsed further)."""


@dataclass(frozen=True)
class InstanceId:
    root: str
    extension: str | None = None


@dataclass(frozen=True)
class Code:
    code: str
    code_system: str | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class Organisation:
    id: InstanceId | None = None
    name: str | None = None


@dataclass(frozen=True)
class Patient:
    ins: str | None = None
    ins_oid: str | None = None
    ids: tuple[InstanceId, ...] = ()
    birth_family: str | None = None
    first_given: str | None = None
    given_names: tuple[str, ...] = ()
    used_family: str | None = None
    used_given: str | None = None
    birth_time: str | None = None
    sex: str | None = None

    @property
    def ins_kind(self) -> str | None:
        return INS_OIDS.get(self.ins_oid or "")


@dataclass(frozen=True)
class Author:
    id_nat_ps: str | None = None
    ids: tuple[InstanceId, ...] = ()
    prefix: str | None = None
    given: str | None = None
    family: str | None = None
    suffix: str | None = None
    time: str | None = None
    device: str | None = None
    organisation: Organisation | None = None

    @property
    def display_name(self) -> str:
        parts = [self.prefix, self.given, self.family] if (self.given or self.family) else []
        return " ".join(p for p in parts if p) or (self.device or "")


@dataclass(frozen=True)
class CdaHeader:
    document_id: InstanceId | None
    code: Code | None
    title: str
    effective_time: str | None
    confidentiality_code: Code | None
    language_code: str | None
    template_ids: tuple[InstanceId, ...]
    set_id: InstanceId | None
    version_number: int | None
    patient: Patient | None
    authors: tuple[Author, ...] = ()
    custodian: Organisation | None = None
    legal_authenticator: Author | None = None
    service_start: str | None = None
    service_end: str | None = None
    encounter_start: str | None = None
    encounter_end: str | None = None
    structured: bool = False

    @property
    def author(self) -> Author | None:
        return self.authors[0] if self.authors else None

    @property
    def template_roots(self) -> tuple[str, ...]:
        return tuple(t.root for t in self.template_ids)


# ------------------------------------------------------------------------------ parsing ----


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        remove_blank_text=False,
    )


def parse_cda(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted bytes into the ``ClinicalDocument`` root element, or raise CdaError."""
    if not isinstance(data, bytes | bytearray):
        raise CdaError("a CDA document is parsed from bytes")
    if len(data) > max_bytes:
        raise CdaError(f"document too large ({len(data)} > {max_bytes} bytes)")
    head, _, _ = bytes(data[:65536]).partition(b"ClinicalDocument")
    if b"<!DOCTYPE" in head:
        raise CdaError("DOCTYPE declarations are refused")
    try:
        tree = etree.fromstring(bytes(data), _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise CdaError(f"not well-formed XML: {exc}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise CdaError("DOCTYPE declarations are refused")
    root = tree.getroot()
    if root.tag != _C + "ClinicalDocument":
        raise CdaError(f"root element is {root.tag!r}, not a CDA ClinicalDocument")
    for node in root.iter(etree.Entity):
        raise CdaError(f"entity reference {node.text!r} refused")
    return root


def element_path(node: etree._Element) -> str:
    """An XPath such as ``/cda:ClinicalDocument[1]/cda:recordTarget[1]`` for an element."""
    steps = []
    current: etree._Element | None = node
    while current is not None and isinstance(current.tag, str):
        qname = etree.QName(current)
        prefix = "cda:" if qname.namespace == CDA_NS else ""
        parent = current.getparent()
        index = 1
        if parent is not None:
            index = 1 + sum(1 for s in current.itersiblings(preceding=True) if s.tag == current.tag)
        steps.append(f"/{prefix}{qname.localname}[{index}]")
        current = parent
    return "".join(reversed(steps))


# ------------------------------------------------------------------------------- header ----


def _text(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    value = " ".join("".join(el.itertext()).split())
    return value or None


def _iid(el: etree._Element | None) -> InstanceId | None:
    if el is None or not el.get("root"):
        return None
    return InstanceId(el.get("root", ""), el.get("extension"))


def _code(el: etree._Element | None) -> Code | None:
    if el is None or not el.get("code"):
        return None
    return Code(el.get("code", ""), el.get("codeSystem"), el.get("displayName"))


def _qualifiers(el: etree._Element) -> set[str]:
    return set((el.get("qualifier") or "").split())


def _first(root: etree._Element, path: str) -> etree._Element | None:
    found = root.find(path, _NS)
    return found


def _patient(root: etree._Element) -> Patient | None:
    role = _first(root, "cda:recordTarget/cda:patientRole")
    if role is None:
        return None
    ids = tuple(i for i in (_iid(e) for e in role.findall("cda:id", _NS)) if i is not None)
    ins = next((i for i in ids if i.root in INS_OIDS and i.extension), None)
    person = role.find("cda:patient", _NS)
    name = person.find("cda:name", _NS) if person is not None else None
    families = name.findall("cda:family", _NS) if name is not None else []
    givens = name.findall("cda:given", _NS) if name is not None else []
    birth_family = next((_text(f) for f in families if "BR" in _qualifiers(f)), None)
    birth_family = birth_family or (_text(families[0]) if families else None)
    used_family = next((_text(f) for f in families if "CL" in _qualifiers(f)), None)
    first_given = next((_text(g) for g in givens if "BR" in _qualifiers(g)), None)
    plain = [t for t in (_text(g) for g in givens if not _qualifiers(g) & {"CL", "BR"}) if t]
    if first_given is None and plain:
        first_given = plain[0].split()[0]
    gender = person.find("cda:administrativeGenderCode", _NS) if person is not None else None
    birth = person.find("cda:birthTime", _NS) if person is not None else None
    return Patient(
        ins=ins.extension if ins else None,
        ins_oid=ins.root if ins else None,
        ids=ids,
        birth_family=birth_family,
        first_given=first_given,
        given_names=tuple(plain),
        used_family=used_family,
        used_given=next((_text(g) for g in givens if "CL" in _qualifiers(g)), None),
        birth_time=birth.get("value") if birth is not None else None,
        sex=gender.get("code") if gender is not None else None,
    )


def _organisation(el: etree._Element | None) -> Organisation | None:
    if el is None:
        return None
    return Organisation(_iid(el.find("cda:id", _NS)), _text(el.find("cda:name", _NS)))


def _person(entity: etree._Element | None, time: str | None) -> Author | None:
    if entity is None:
        return None
    ids = tuple(i for i in (_iid(e) for e in entity.findall("cda:id", _NS)) if i is not None)
    name = entity.find("cda:assignedPerson/cda:name", _NS)

    def part(tag: str) -> str | None:
        return _text(name.find(f"cda:{tag}", _NS)) if name is not None else None

    device = entity.find("cda:assignedAuthoringDevice", _NS)
    return Author(
        id_nat_ps=next((i.extension for i in ids if i.root == OID_IDNAT_PS), None),
        ids=ids,
        prefix=part("prefix"),
        given=part("given"),
        family=part("family"),
        suffix=part("suffix"),
        time=time,
        device=_text(device.find("cda:softwareName", _NS)) if device is not None else None,
        organisation=_organisation(entity.find("cda:representedOrganization", _NS)),
    )


def _time_value(el: etree._Element | None) -> str | None:
    return el.get("value") if el is not None else None


def extract_header(cda: bytes | etree._Element) -> CdaHeader:
    """Extract the CI-SIS header of a CDA document (bytes are parsed safely first)."""
    root = parse_cda(cda) if isinstance(cda, bytes | bytearray) else cda
    authors = []
    for author in root.findall("cda:author", _NS):
        person = _person(
            author.find("cda:assignedAuthor", _NS), _time_value(author.find("cda:time", _NS))
        )
        if person is not None:
            authors.append(person)
    legal = root.find("cda:legalAuthenticator", _NS)
    version = _first(root, "cda:versionNumber")
    service = _first(root, "cda:documentationOf/cda:serviceEvent/cda:effectiveTime")
    encounter = _first(root, "cda:componentOf/cda:encompassingEncounter/cda:effectiveTime")
    try:
        version_number = int(version.get("value", "")) if version is not None else None
    except ValueError:
        version_number = None
    return CdaHeader(
        document_id=_iid(_first(root, "cda:id")),
        code=_code(_first(root, "cda:code")),
        title=_text(_first(root, "cda:title")) or "",
        effective_time=_time_value(_first(root, "cda:effectiveTime")),
        confidentiality_code=_code(_first(root, "cda:confidentialityCode")),
        language_code=(
            lc.get("code") if (lc := _first(root, "cda:languageCode")) is not None else None
        ),
        template_ids=tuple(
            i for i in (_iid(e) for e in root.findall("cda:templateId", _NS)) if i is not None
        ),
        set_id=_iid(_first(root, "cda:setId")),
        version_number=version_number,
        patient=_patient(root),
        authors=tuple(authors),
        custodian=_organisation(
            _first(root, "cda:custodian/cda:assignedCustodian/cda:representedCustodianOrganization")
        ),
        legal_authenticator=_person(
            legal.find("cda:assignedEntity", _NS) if legal is not None else None,
            _time_value(legal.find("cda:time", _NS)) if legal is not None else None,
        ),
        service_start=_time_value(service.find("cda:low", _NS)) if service is not None else None,
        service_end=_time_value(service.find("cda:high", _NS)) if service is not None else None,
        encounter_start=(
            _time_value(encounter.find("cda:low", _NS)) if encounter is not None else None
        ),
        encounter_end=(
            _time_value(encounter.find("cda:high", _NS)) if encounter is not None else None
        ),
        structured=_first(root, "cda:component/cda:structuredBody") is not None,
    )


def has_ins_with_traits(header: CdaHeader) -> bool:
    """R40: an INS matricule with an INS OID and the four traits (birth name, first given
    name, birth date, administrative sex)."""
    patient = header.patient
    return bool(
        patient is not None
        and patient.ins
        and patient.ins_oid in INS_OIDS
        and patient.birth_family
        and patient.first_given
        and patient.birth_time
        and hl7_date(patient.birth_time) is not None
        and patient.sex
    )


def hl7_date(ts: str | None) -> date | None:
    """The calendar date of an HL7 TS value (``None`` when absent or malformed)."""
    match = _TS.match(ts or "")
    if match is None or match.group(2) is None or match.group(3) is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


# ------------------------------------------------------------------ PDF embedding / wrap ----


def _b64_payload(el: etree._Element, media_type: str) -> bytes | None:
    if el.get("mediaType") != media_type or el.get("representation") != "B64":
        return None
    if el.get("compression"):
        return None
    payload = "".join(el.itertext())
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def extract_embedded_pdf(cda: bytes | etree._Element) -> bytes | None:
    """The PDF of a level-1 document (``nonXMLBody``), or the first PDF ``observationMedia``
    of a structured one (e.g. the CR-BIO "copie PDF" section); ``None`` if there is none."""
    root = parse_cda(cda) if isinstance(cda, bytes | bytearray) else cda
    candidates = root.findall("cda:component/cda:nonXMLBody/cda:text", _NS)
    candidates += root.findall(".//cda:observationMedia/cda:value", _NS)
    for el in candidates:
        pdf = _b64_payload(el, "application/pdf")
        if pdf is not None and pdf.startswith(b"%PDF-"):
            return pdf
    return None


@dataclass(frozen=True)
class WrapRequest:
    """Header fields of a wrapped PDF (CI-SIS "structuration minimale")."""

    code: Code
    title: str
    ins: str
    ins_oid: str
    birth_family: str
    first_given: str
    birth_date: date
    sex: str  # M, F or U (administrativeGender)
    author_id_nat_ps: str
    author_family: str
    author_given: str
    organisation_id_nat_struct: str
    organisation_name: str
    healthcare_facility_code: Code
    practice_setting_code: Code
    given_names: str | None = None  # all birth given names; defaults to first_given
    author_role: Code | None = None
    patient_ids: tuple[InstanceId, ...] = ()
    document_id: InstanceId | None = None
    set_id: InstanceId | None = None
    version_number: int = 1
    effective_time: datetime | None = None
    confidentiality: Code = field(
        default_factory=lambda: Code("N", "2.16.840.1.113883.5.25", "Normal")
    )
    language_code: str = "fr-FR"
    service_start: datetime | None = None
    service_end: datetime | None = None


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.strftime("%Y%m%d%H%M%S%z")


def _iid_attrs(iid: InstanceId) -> dict[str, str]:
    return {"root": iid.root} | ({"extension": iid.extension} if iid.extension else {})


def _new_oid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def wrap_pdf(pdf: bytes, req: WrapRequest) -> bytes:
    """Wrap a PDF into a CDA R2 level 1 document (nonXMLBody, B64) with a CI-SIS header."""
    if not pdf.startswith(b"%PDF-"):
        raise CdaError("not a PDF (missing %PDF- signature)")
    if req.ins_oid not in INS_OIDS:
        raise CdaError(f"{req.ins_oid!r} is not an INS OID")
    now = req.effective_time or datetime.now(UTC)
    nsmap = {None: CDA_NS, "xsi": XSI_NS}
    root = etree.Element(_C + "ClinicalDocument", nsmap=nsmap)

    def sub(
        parent: etree._Element, tag: str, text: str | None = None, **attrs: str
    ) -> etree._Element:
        el = etree.SubElement(parent, _C + tag, {k: v for k, v in attrs.items()})
        if text is not None:
            el.text = text
        return el

    def code(parent: etree._Element, tag: str, value: Code) -> None:
        attrs = {"code": value.code}
        if value.display_name:
            attrs["displayName"] = value.display_name
        if value.code_system:
            attrs["codeSystem"] = value.code_system
        sub(parent, tag, **attrs)

    def org(parent: etree._Element, tag: str) -> etree._Element:
        el = sub(parent, tag)
        sub(el, "id", root=OID_IDNAT_STRUCT, extension=req.organisation_id_nat_struct)
        sub(el, "name", req.organisation_name)
        return el

    def person(parent: etree._Element, tag: str) -> None:
        name = sub(sub(parent, tag), "name")
        sub(name, "given", req.author_given)
        sub(name, "family", req.author_family)

    sub(root, "realmCode", code="FR")
    sub(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    for template in (TEMPLATE_HL7_FRANCE, TEMPLATE_CI_SIS, TEMPLATE_XDS_SD):
        sub(root, "templateId", root=template)
    doc_id = req.document_id or InstanceId(_new_oid())
    set_id = req.set_id or InstanceId(_new_oid())
    sub(root, "id", **_iid_attrs(doc_id))
    code(root, "code", req.code)
    sub(root, "title", req.title)
    sub(root, "effectiveTime", value=_ts(now))
    code(root, "confidentialityCode", req.confidentiality)
    sub(root, "languageCode", code=req.language_code)
    sub(root, "setId", **_iid_attrs(set_id))
    sub(root, "versionNumber", value=str(req.version_number))

    role = sub(sub(root, "recordTarget"), "patientRole")
    sub(role, "id", root=req.ins_oid, extension=req.ins)
    for other in req.patient_ids:
        sub(role, "id", **_iid_attrs(other))
    patient = sub(role, "patient", classCode="PSN")
    name = sub(patient, "name")
    sub(name, "family", req.birth_family, qualifier="BR")
    sub(name, "given", req.given_names or req.first_given)
    sub(name, "given", req.first_given, qualifier="BR")
    sub(patient, "administrativeGenderCode", code=req.sex, codeSystem="2.16.840.1.113883.5.1")
    sub(patient, "birthTime", value=req.birth_date.strftime("%Y%m%d"))

    author = sub(root, "author")
    sub(author, "time", value=_ts(now))
    assigned = sub(author, "assignedAuthor")
    sub(assigned, "id", root=OID_IDNAT_PS, extension=req.author_id_nat_ps)
    if req.author_role is not None:
        code(assigned, "code", req.author_role)
    person(assigned, "assignedPerson")
    org(assigned, "representedOrganization")

    custodian = sub(sub(root, "custodian"), "assignedCustodian")
    org(custodian, "representedCustodianOrganization")

    legal = sub(root, "legalAuthenticator")
    sub(legal, "time", value=_ts(now))
    sub(legal, "signatureCode", code="S")
    entity = sub(legal, "assignedEntity")
    sub(entity, "id", root=OID_IDNAT_PS, extension=req.author_id_nat_ps)
    person(entity, "assignedPerson")

    event = sub(sub(root, "documentationOf"), "serviceEvent")
    code(event, "code", req.code)
    times = sub(event, "effectiveTime")
    sub(times, "low", value=_ts(req.service_start or now))
    if req.service_end is not None:
        sub(times, "high", value=_ts(req.service_end))
    performer = sub(event, "performer", typeCode="PRF")
    performer_entity = sub(performer, "assignedEntity")
    sub(performer_entity, "id", root=OID_IDNAT_PS, extension=req.author_id_nat_ps)
    person(performer_entity, "assignedPerson")
    performer_org = org(performer_entity, "representedOrganization")
    code(performer_org, "standardIndustryClassCode", req.practice_setting_code)

    encounter = sub(sub(root, "componentOf"), "encompassingEncounter")
    sub(sub(encounter, "effectiveTime"), "low", value=_ts(req.service_start or now))
    facility = sub(sub(encounter, "location"), "healthCareFacility")
    code(facility, "code", req.healthcare_facility_code)

    body = sub(sub(root, "component"), "nonXMLBody")
    sub(
        body,
        "text",
        base64.b64encode(pdf).decode("ascii"),
        mediaType="application/pdf",
        representation="B64",
    )
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
