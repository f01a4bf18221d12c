"""PDF → CDA R2 level 1 wrapping, embedded PDF extraction, and refusal of hostile XML."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mssante.formats.cda import (
    CdaError,
    Code,
    InstanceId,
    WrapRequest,
    extract_embedded_pdf,
    extract_header,
    has_ins_with_traits,
    parse_cda,
    wrap_pdf,
)
from mssante.formats.cda_validation import CdaValidator

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
CDA_DIR = SHARED_DATA / "cda"
needs_data = pytest.mark.skipif(not CDA_DIR.is_dir(), reason=f"no shared data at {CDA_DIR}")

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)

REQUEST = WrapRequest(
    code=Code(
        "11490-0",
        "2.16.840.1.113883.6.1",
        "Lettre de liaison à la sortie d'un établissement de soins",
    ),
    title="Lettre de liaison <sortie> & suites",
    ins="279035121518989",
    ins_oid="1.2.250.1.213.1.4.10",
    birth_family="PAT-TROIS",
    first_given="DOMINIQUE",
    given_names="DOMINIQUE MARIE-LOUISE",
    birth_date=date(1979, 3, 28),
    sex="F",
    author_id_nat_ps="801234567897",
    author_family="DAVID",
    author_given="Charles",
    organisation_id_nat_struct="1750803447",
    organisation_name="Hôpital Européen Georges Pompidou",
    healthcare_facility_code=Code("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé"),
    practice_setting_code=Code("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement de santé"),
    author_role=Code("10", "1.2.250.1.71.1.2.7", "Médecin"),
    patient_ids=(InstanceId("1.2.250.1.999", "IPP-42"),),
    effective_time=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
)


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    return CdaValidator(
        CDA_DIR / "schemas",
        CDA_DIR / "schematrons",
        cache_dir=tmp_path_factory.mktemp("schematron-cache"),
    )


@needs_data
def test_wrapped_pdf_is_xsd_valid_and_has_no_volet(validator: CdaValidator) -> None:
    cda = wrap_pdf(PDF, REQUEST)
    assert validator.validate_xsd(cda) == []
    # CDA level 1 with the XDS-SD templateId: no volet schematron applies.
    assert validator.schematron_for(cda) == (None, None)
    assert validator.validate(cda) == []


@needs_data
def test_wrap_follows_the_ans_level1_example() -> None:
    example = extract_header(
        (CDA_DIR / "examples" / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
    )
    ours = extract_header(wrap_pdf(PDF, REQUEST))
    assert ours.template_ids == example.template_ids
    assert ours.structured is example.structured is False
    root = parse_cda(wrap_pdf(PDF, REQUEST))
    text = root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody/{urn:hl7-org:v3}text")
    assert text is not None
    assert (text.get("mediaType"), text.get("representation")) == ("application/pdf", "B64")


def test_header_round_trip() -> None:
    header = extract_header(wrap_pdf(PDF, REQUEST))
    assert header.code == REQUEST.code
    assert header.title == "Lettre de liaison <sortie> & suites"
    assert header.effective_time == "20240506070809+0000"
    assert header.language_code == "fr-FR" and header.version_number == 1
    assert header.confidentiality_code is not None and header.confidentiality_code.code == "N"
    assert header.document_id is not None and header.document_id.root.startswith("2.25.")
    assert header.set_id is not None and header.set_id != header.document_id
    patient = header.patient
    assert patient is not None
    assert (patient.ins, patient.ins_oid) == ("279035121518989", "1.2.250.1.213.1.4.10")
    assert (patient.birth_family, patient.first_given, patient.birth_time, patient.sex) == (
        "PAT-TROIS",
        "DOMINIQUE",
        "19790328",
        "F",
    )
    assert patient.given_names == ("DOMINIQUE MARIE-LOUISE",)
    assert InstanceId("1.2.250.1.999", "IPP-42") in patient.ids
    assert has_ins_with_traits(header)
    author = header.author
    assert author is not None
    assert (author.id_nat_ps, author.given, author.family) == ("801234567897", "Charles", "DAVID")
    assert author.organisation is not None
    assert author.organisation.id == InstanceId("1.2.250.1.71.4.2.2", "1750803447")
    assert header.custodian == author.organisation
    assert header.legal_authenticator is not None
    assert header.legal_authenticator.id_nat_ps == "801234567897"
    assert header.service_start == header.encounter_start == "20240506070809+0000"


def test_explicit_ids_are_kept() -> None:
    request = replace(
        REQUEST,
        document_id=InstanceId("1.2.3", "doc-2"),
        set_id=InstanceId("1.2.3", "set"),
        version_number=2,
    )
    header = extract_header(wrap_pdf(PDF, request))
    assert (header.document_id, header.set_id, header.version_number) == (
        InstanceId("1.2.3", "doc-2"),
        InstanceId("1.2.3", "set"),
        2,
    )


def test_extract_embedded_pdf_gives_the_same_bytes() -> None:
    assert extract_embedded_pdf(wrap_pdf(PDF, REQUEST)) == PDF
    big = PDF + os.urandom(300_000)
    assert extract_embedded_pdf(wrap_pdf(big, REQUEST)) == big


@needs_data
@pytest.mark.parametrize(
    ("name", "has_pdf"),
    [
        ("DOC_NON_STRUCTURE_CDA-R2-N1.xml", True),
        ("BIO-CR-BIO_2024.01_TSH_1.xml", True),  # "FR-Document-PDF-copie" observationMedia
        ("LDL-SES_2022.01.xml", False),
    ],
)
def test_extract_embedded_pdf_from_examples(name: str, has_pdf: bool) -> None:
    pdf = extract_embedded_pdf((CDA_DIR / "examples" / name).read_bytes())
    assert (pdf is not None and pdf.startswith(b"%PDF-")) is has_pdf


def test_wrap_refuses_non_pdf_and_non_ins() -> None:
    with pytest.raises(CdaError, match="PDF"):
        wrap_pdf(b"<html>", REQUEST)
    with pytest.raises(CdaError, match="INS OID"):
        wrap_pdf(PDF, replace(REQUEST, ins_oid="1.2.250.1.213.1.4.2"))


def test_ins_traits_are_all_required() -> None:
    header = extract_header(wrap_pdf(PDF, REQUEST))
    assert header.patient is not None
    base = header.patient
    for patient in (
        replace(base, ins=None),
        replace(base, birth_family=None),
        replace(base, first_given=None),
        replace(base, birth_time=None),
        replace(base, sex=None),
    ):
        assert not has_ins_with_traits(replace(header, patient=patient)), patient
    other_oid = replace(header.patient, ins_oid="1.2.250.1.213.1.4.2")
    assert not has_ins_with_traits(replace(header, patient=other_oid))
    bad_date = replace(header.patient, birth_time="19791328")
    assert not has_ins_with_traits(replace(header, patient=bad_date))
    assert not has_ins_with_traits(replace(header, patient=None))


# --------------------------------------------------------------------- hostile documents ----

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % ext SYSTEM "http://127.0.0.1:1/x.dtd"> %ext;]>
<ClinicalDocument xmlns="urn:hl7-org:v3"/>"""


@pytest.mark.parametrize(
    "data",
    [
        XXE,
        BILLION_LAUGHS,
        PARAMETER_ENTITY,
        # the DOCTYPE hidden after a long comment, beyond the quick pre-scan
        b"<?xml version='1.0'?><!--" + b"x" * 100_000 + b"-->" + XXE.split(b"?>", 1)[1],
        XXE.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"),
    ],
    ids=["xxe", "billion-laughs", "parameter-entity", "late-doctype", "utf16-doctype"],
)
def test_entities_and_doctype_are_refused(data: bytes) -> None:
    with pytest.raises(CdaError, match="DOCTYPE"):
        parse_cda(data)
    with pytest.raises(CdaError):
        extract_header(data)
    with pytest.raises(CdaError):
        extract_embedded_pdf(data)


@needs_data
def test_validator_refuses_hostile_bytes(validator: CdaValidator) -> None:
    with pytest.raises(CdaError):
        validator.validate(BILLION_LAUGHS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'>", "well-formed"),
        (b"<html xmlns='urn:hl7-org:v3'/>", "not a CDA"),
        (b"<ClinicalDocument/>", "not a CDA"),  # no HL7 v3 namespace
        (
            b"<ClinicalDocument xmlns='urn:hl7-org:v3'>"
            + b"<a>" * 300
            + b"</a>" * 300
            + b"</ClinicalDocument>",
            "well-formed",
        ),  # nesting beyond libxml2's 256
    ],
)
def test_malformed_documents_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CdaError, match=message):
        parse_cda(data)


def test_size_limit() -> None:
    cda = wrap_pdf(PDF + b"\0" * 50_000, REQUEST)
    assert parse_cda(cda, max_bytes=len(cda)) is not None
    with pytest.raises(CdaError, match="too large"):
        parse_cda(cda, max_bytes=len(cda) - 1)
