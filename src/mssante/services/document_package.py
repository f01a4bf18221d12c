"""Building the ``IHE_XDM.ZIP`` of a document message from CDA documents or PDFs (issue 6).

The XDS metadata is derived from each CDA header (SPEC §7.4; CI-SIS annex "lien entre
l'en-tête CDA et les métadonnées XDS"): typeCode = ``ClinicalDocument/code`` (JDV_J07),
classCode through ASS_X04 (J06), formatCode from the templateIds through ASS_A11 (J10),
confidentialityCode (J08), healthcareFacilityTypeCode (J02) and practiceSettingCode (J04) from
the caller or else from the CDA (``healthCareFacility/code``, ``standardIndustryClassCode``),
creation and service times, the patient INS with its OID, and the author from the sending BAL.
Every code is checked against its value set (R38): a wrong one raises `RuleViolation` naming
the slot. A PDF is first wrapped into a CDA level 1 document (`formats.cda.wrap_pdf`) and kept
as the human copy named by R42, like the PDF embedded in a level 1 CDA.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from lxml import etree

from mssante.domain.documents import Code, UnmappedCode, mss_codecda, mss_ins, pdf_copy_name
from mssante.domain.documents import value_sets as _value_sets
from mssante.domain.errors import RuleViolation
from mssante.formats import cda
from mssante.formats.xdm import XdmDocumentInput, author_for_mailbox, build_xdm
from mssante.formats.xdm_metadata import (
    INS_NIR_OID,
    Author,
    DocumentEntry,
    SubmissionSet,
    format_dtm,
    format_patient_id,
)
from mssante.formats.xdm_metadata import Code as XdsCode
from mssante.services.document_intake import hl7_datetime

__all__ = [
    "CDA_TYPES",
    "PDF",
    "ComposedDocument",
    "Package",
    "PatientIdentity",
    "SenderIdentity",
    "build_package",
]

PDF = "application/pdf"
CDA_TYPES = frozenset(
    {"text/xml", "application/xml", "application/hl7-v3+xml", "application/hl7-cda+xml"}
)
_NS = {"cda": cda.CDA_NS}
_FACILITY = "cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility/cda:code"
_ORG_CLASS = "cda:representedOrganization/cda:standardIndustryClassCode"
_PRACTICE = (
    f"cda:documentationOf/cda:serviceEvent/cda:performer/cda:assignedEntity/{_ORG_CLASS}",
    f"cda:legalAuthenticator/cda:assignedEntity/{_ORG_CLASS}",
    f"cda:author/cda:assignedAuthor/{_ORG_CLASS}",
)


@dataclass(frozen=True)
class SenderIdentity:
    """Who sends: the professional (idNat_PS and names) and/or the structure (idNat_Struct)."""

    id_nat_ps: str = ""
    family: str = ""
    given: str = ""
    id_nat_struct: str = ""
    organisation: str = ""
    display_name: str = ""  # the From display name; defaults to "Prénom NOM" or the structure
    software: str = "mssante"

    @property
    def name(self) -> str:
        person = " ".join(p for p in (self.given, self.family.upper()) if p)
        return self.display_name or person or self.organisation


@dataclass(frozen=True)
class PatientIdentity:
    """The patient of a PDF to wrap (INS and its four traits), or the expected INS of CDAs."""

    ins: str
    ins_oid: str = INS_NIR_OID
    birth_family: str = ""
    first_given: str = ""
    birth_date: date | None = None
    sex: str = ""  # M, F or U
    given_names: str = ""
    dossier: str = ""  # numéro de dossier, the optional end of the PDF copy name (R42)


@dataclass(frozen=True)
class ComposedDocument:
    type_code: str
    type_display: str
    title: str
    class_code: str
    format_code: str
    file_name: str  # inside the package: DOC0001.XML…
    cda: bytes
    pdf_name: str | None = None  # the human copy attached beside the package (R42)


@dataclass(frozen=True)
class Package:
    xdm: bytes
    documents: tuple[ComposedDocument, ...]
    headers: dict[str, str]  # X-MSS-CODECDA (R39) and X-MSS-INS (R40)
    patient: cda.Patient
    pdfs: tuple[tuple[str, bytes], ...]  # (R42 name, PDF)


@dataclass(frozen=True)
class _Options:
    now: datetime
    type_code: str | None
    title: str | None
    confidentiality: Code | None
    facility: Code | None
    practice: Code | None
    patient: PatientIdentity | None


def _coded(slot: str, key: str, code: str) -> Code:
    found = _value_sets().lookup(key, code)
    if found is None:
        info = _value_sets().info(key)
        raise RuleViolation(f"{slot} {code!r} is not in {info.name} ({info.oid})")
    return found


def _checked(slot: str, code: Code, on: date, display: str = "") -> XdsCode:
    why = _value_sets().check(slot, code, on=on)
    if why is not None:
        raise RuleViolation(why)
    return XdsCode(code.code, code.system, display or code.display)


def _cda_code(root: etree._Element, *paths: str) -> Code | None:
    for path in paths:
        el = root.find(path, _NS)
        if el is not None and el.get("code"):
            return Code(el.get("code", ""), el.get("codeSystem", ""), el.get("displayName") or "")
    return None


def _dtm(ts: str | None, fallback: datetime) -> str:
    return format_dtm(hl7_datetime(ts) or fallback)


def _xcn(person: cda.Author | None) -> str | None:
    if person is None or not person.id_nat_ps:
        return None
    family, given = (person.family or "").replace("^", " "), (person.given or "").replace("^", " ")
    return f"{person.id_nat_ps}^{family}^{given}^^^^^^&{cda.OID_IDNAT_PS}&ISO^D^^^IDNPS"


def _as_cda(code: Code) -> cda.Code:
    return cda.Code(code.code, code.system, code.display)


def _wrap(pdf: bytes, sender: SenderIdentity, opts: _Options) -> bytes:
    patient = opts.patient
    if patient is None or not (patient.birth_family and patient.first_given):
        raise RuleViolation("patientId: a PDF needs the patient INS and its four traits")
    if patient.birth_date is None or patient.sex not in ("M", "F", "U"):
        raise RuleViolation("patientId: a PDF needs the birth date and sex (M, F or U)")
    if not opts.type_code:
        raise RuleViolation("typeCode: a PDF needs a document type (JDV_J07)")
    if not (sender.id_nat_ps and sender.id_nat_struct and opts.facility and opts.practice):
        raise RuleViolation(
            "authorPerson: a PDF is wrapped with its author (idNat_PS), structure (idNat_Struct),"
            " healthcareFacilityTypeCode and practiceSettingCode"
        )
    kind = _coded("typeCode", "J07", opts.type_code)
    request = cda.WrapRequest(
        code=_as_cda(kind),
        title=opts.title or kind.display or kind.code,
        ins=patient.ins,
        ins_oid=patient.ins_oid,
        birth_family=patient.birth_family,
        first_given=patient.first_given,
        given_names=patient.given_names or None,
        birth_date=patient.birth_date,
        sex=patient.sex,
        author_id_nat_ps=sender.id_nat_ps,
        author_family=sender.family,
        author_given=sender.given,
        organisation_id_nat_struct=sender.id_nat_struct,
        organisation_name=sender.organisation,
        healthcare_facility_code=_as_cda(opts.facility),
        practice_setting_code=_as_cda(opts.practice),
        confidentiality=_as_cda(opts.confidentiality or _coded("confidentialityCode", "J08", "N")),
        effective_time=opts.now,
    )
    try:
        return cda.wrap_pdf(pdf, request)
    except cda.CdaError as exc:
        raise RuleViolation(f"document: {exc}") from None


@dataclass(frozen=True)
class _Described:
    entry: DocumentEntry
    header: cda.CdaHeader
    patient: cda.Patient
    pdf: bytes | None


def _describe(index: int, content: bytes, opts: _Options, author: Author) -> _Described:
    """The XDS DocumentEntry of one CDA, every code checked (R38)."""
    sets, today = _value_sets(), opts.now.date()
    try:
        root = cda.parse_cda(content)
        header = cda.extract_header(root)
    except cda.CdaError as exc:
        raise RuleViolation(f"document {index}: {exc}") from None
    if header.code is None:
        raise RuleViolation(f"typeCode: document {index} has no ClinicalDocument/code")
    if opts.type_code and header.code.code != opts.type_code:
        raise RuleViolation(
            f"typeCode: document {index} is {header.code.code}, not {opts.type_code}"
        )
    known = sets.lookup("J07", header.code.code)
    system = header.code.code_system or (known.system if known else "")
    kind = _checked(
        "typeCode", Code(header.code.code, system), today, known.display if known else ""
    )
    try:
        class_code = _checked("classCode", sets.class_for_type(kind.code), today)
        body = root.find("cda:component/cda:nonXMLBody/cda:text", _NS)
        fmt = sets.format_for_templates(
            header.template_roots, body.get("mediaType") if body is not None else None
        )
    except UnmappedCode as exc:
        slot = "classCode" if "ASS_X04" in str(exc) else "formatCode"
        raise RuleViolation(f"{slot}: {exc}") from None
    if fmt is None:
        raise RuleViolation(f"formatCode: no templateId of document {index} is in ASS_A11")
    conf = opts.confidentiality or _coded("confidentialityCode", "J08", "N")
    if opts.confidentiality is None and header.confidentiality_code is not None:
        conf = Code(header.confidentiality_code.code, header.confidentiality_code.code_system or "")
    facility = opts.facility or _cda_code(root, _FACILITY)
    practice = opts.practice or _cda_code(root, *_PRACTICE)
    if facility is None:
        raise RuleViolation("healthcareFacilityTypeCode: none given and none in the CDA")
    if practice is None:
        raise RuleViolation("practiceSettingCode: none given and none in the CDA")
    target = header.patient
    if target is None or not target.ins or target.ins_oid not in cda.INS_OIDS:
        raise RuleViolation(f"patientId: document {index} has no INS with an INS OID")
    if opts.patient is not None and opts.patient.ins != target.ins:
        raise RuleViolation(f"patientId: document {index} is not about INS {opts.patient.ins}")
    doc_id = header.document_id
    unique_id = f"2.25.{uuid.uuid4().int}"
    if doc_id is not None:
        unique_id = f"{doc_id.root}^{doc_id.extension}" if doc_id.extension else doc_id.root
    info = [f"PID-5|{target.birth_family or ''}^{target.first_given or ''}^^^^^L"]
    info += [f"PID-7|{target.birth_time}"] if target.birth_time else []
    info += [f"PID-8|{target.sex}"] if target.sex else []
    patient_id = format_patient_id(target.ins, target.ins_oid or INS_NIR_OID)
    entry = DocumentEntry(
        unique_id=unique_id,
        patient_id=patient_id,
        mime_type="text/xml",
        class_code=class_code,
        type_code=kind,
        format_code=_checked("formatCode", fmt, today),
        confidentiality_codes=(_checked("confidentialityCode", conf, today),),
        healthcare_facility_type_code=_checked("healthcareFacilityTypeCode", facility, today),
        practice_setting_code=_checked("practiceSettingCode", practice, today),
        creation_time=_dtm(header.effective_time, opts.now),
        language_code=header.language_code or "fr-FR",
        title=header.title,
        authors=(author,),
        service_start_time=_dtm(header.service_start, opts.now) if header.service_start else None,
        service_stop_time=_dtm(header.service_end, opts.now) if header.service_end else None,
        source_patient_id=patient_id,
        source_patient_info=tuple(info),
        legal_authenticator=_xcn(header.legal_authenticator),
    )
    return _Described(entry, header, target, cda.extract_embedded_pdf(root))


def _unique(name: str, taken: list[str]) -> str:
    stem, n = name.removesuffix(".pdf"), 2
    while name in taken:
        name, n = f"{stem}_{n}.pdf", n + 1
    return name


def build_package(
    *,
    sender_address: str,
    sender_identity: SenderIdentity,
    documents: Sequence[tuple[bytes, str]],
    patient: PatientIdentity | None = None,
    type_code: str | None = None,
    title: str | None = None,
    confidentiality: str | None = None,
    healthcare_facility_type: str | None = None,
    practice_setting: str | None = None,
    recipients: Sequence[str] = (),
    source_id: str | None = None,
    now: datetime | None = None,
) -> Package:
    """The ``IHE_XDM.ZIP`` of CDA documents and/or PDFs (wrapped first), its MSSanté headers
    and the PDF copies. `documents` are ``(content, media type)`` pairs; codes are JDV codes
    (``"N"``, ``"SA01"``, ``"ETABLISSEMENT"``…); `RuleViolation` names any invalid slot."""
    now = now or datetime.now(UTC)
    if not documents:
        raise RuleViolation("documents: a document message needs at least one document")
    opts = _Options(
        now,
        type_code,
        title,
        _coded("confidentialityCode", "J08", confidentiality) if confidentiality else None,
        _coded("healthcareFacilityTypeCode", "J02", healthcare_facility_type)
        if healthcare_facility_type
        else None,
        _coded("practiceSettingCode", "J04", practice_setting) if practice_setting else None,
        patient,
    )
    author = author_for_mailbox(
        sender_address,
        idnat_ps=sender_identity.id_nat_ps,
        family=sender_identity.family,
        given=sender_identity.given,
        institution=sender_identity.organisation,
        idnat_struct=sender_identity.id_nat_struct,
    )
    described: list[tuple[bytes, _Described]] = []
    for index, (content, media_type) in enumerate(documents, start=1):
        media = media_type.split(";")[0].strip().lower()
        if media == PDF:
            wrapped = _wrap(content, sender_identity, opts)  # its PDF is the human copy
            described.append((wrapped, _describe(index, wrapped, opts, author)))
        elif media in CDA_TYPES:
            described.append((content, _describe(index, content, opts, author)))
        else:
            raise RuleViolation(f"document: {media_type!r} is neither a CDA R2 document nor a PDF")
    first = described[0][1].patient
    if any((d.patient.ins, d.patient.ins_oid) != (first.ins, first.ins_oid) for _, d in described):
        raise RuleViolation("patientId: the documents are not about the same patient")
    composed: list[ComposedDocument] = []
    pdfs: list[tuple[str, bytes]] = []
    for index, (content, doc) in enumerate(described, start=1):
        name = None
        if doc.pdf is not None:
            kind = doc.entry.type_code
            act = cda.hl7_date(doc.header.service_start or doc.header.effective_time)
            label = (kind.display or kind.code) if kind else "Document"
            name = pdf_copy_name(
                act or now.date(),
                label,
                first.birth_family or "PATIENT",
                first.first_given or "",
                patient.dossier if patient else None,
            )
            name = _unique(name, [n for n, _ in pdfs])
            pdfs.append((name, doc.pdf))
        entry = doc.entry
        composed.append(
            ComposedDocument(
                entry.type_code.code if entry.type_code else "",
                entry.type_code.display if entry.type_code else "",
                entry.title,
                entry.class_code.code if entry.class_code else "",
                entry.format_code.code if entry.format_code else "",
                f"DOC{index:04d}.XML",
                content,
                name,
            )
        )
    domain = sender_address.rpartition("@")[2]
    submission = SubmissionSet(
        unique_id=f"2.25.{uuid.uuid4().int}",
        source_id=source_id or f"2.25.{uuid.uuid5(uuid.NAMESPACE_DNS, domain).int}",
        patient_id=described[0][1].entry.patient_id,
        submission_time=format_dtm(now),
        # SPEC §7.2 names no CI-SIS value set for contentTypeCode: the first document's type.
        content_type_code=described[0][1].entry.type_code,
        authors=(author,),
        title=composed[0].title,
        intended_recipients=tuple(f"|^^Internet^{r}" for r in recipients),
    )
    inputs = [XdmDocumentInput(content, "text/xml", d.entry) for content, d in described]
    try:
        xdm = build_xdm(
            submission,
            inputs,
            sender_name=sender_identity.name,
            sender_software=sender_identity.software,
            sender_organisation=sender_identity.organisation,
            sender_address=sender_address,
        )
    except ValueError as exc:
        raise RuleViolation(f"package: {exc}") from None
    headers = {
        "X-MSS-CODECDA": mss_codecda([c.type_code for c in composed]) or "",
        "X-MSS-INS": mss_ins([cda.has_ins_with_traits(d.header) for _, d in described]) or "",
    }
    return Package(xdm, tuple(composed), headers, first, tuple(pdfs))
