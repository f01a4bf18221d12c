"""XDM builder and reader (SPEC §7.1–7.2, R36–R38): build → read gives back the same package."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import replace
from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante.formats.safezip import is_archive, write_zip
from mssante.formats.xdm import (
    XdmDocumentInput,
    author_for_mailbox,
    build_xdm,
    document_file_name,
    find_xdm_attachment,
    read_xdm,
    validate_xdm,
)
from mssante.formats.xdm_metadata import (
    DOCUMENT_CODE_SCHEMES,
    INS_NIA_OID,
    INS_NIR_OID,
    INS_TEST_OID,
    Author,
    Code,
    DocumentEntry,
    SubmissionSet,
    build_metadata,
    format_dtm,
    format_patient_id,
    parse_metadata,
    parse_patient_id,
)

NAME_83 = re.compile(r"[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?")
XML_CONTROLS = "".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r")

# Slot values are read back stripped, so the generated ones carry no outer white space and
# no control character; names and displays (XML attributes) may hold anything XML can carry.
token = (
    st.text(
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn", "Zl", "Zp")),
        min_size=1,
        max_size=24,
    )
    .map(str.strip)
    .filter(bool)
)
free_text = st.text(
    st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cn"), exclude_characters=XML_CONTROLS + "\x7f"
    ),
    max_size=40,
)
oid = st.lists(st.integers(0, 99_999), min_size=2, max_size=9).map(
    lambda parts: ".".join(map(str, parts))
)
code = st.builds(Code, token, oid, free_text)
dtm = st.datetimes(timezones=st.just(UTC)).map(format_dtm)
ins = st.from_regex(r"[12][0-9]{14}", fullmatch=True)
patient = st.builds(
    format_patient_id, ins, st.sampled_from([INS_NIR_OID, INS_NIA_OID, INS_TEST_OID])
)
tokens = st.lists(token, max_size=3).map(tuple)
author = st.builds(
    Author,
    st.one_of(st.just(""), token),
    tokens,
    tokens,
    tokens,
    st.lists(token, max_size=2).map(tuple),
)
mime = st.sampled_from(
    [
        "text/xml",
        "application/pdf",
        "text/plain",
        "application/dicom",
        "image/jpeg",
        "application/x-other",
    ]
)
other_slots = st.dictionaries(
    st.from_regex(r"urn:example:[a-z]{1,10}", fullmatch=True),
    st.lists(token, min_size=1, max_size=3).map(tuple),
    max_size=2,
).map(lambda d: tuple(d.items()))

content = st.binary(max_size=3000).filter(lambda b: not is_archive(b))


@st.composite
def packages(draw: st.DrawFn) -> tuple[SubmissionSet, list[XdmDocumentInput]]:
    patient_id = draw(patient)
    submission = SubmissionSet(
        unique_id=draw(oid),
        source_id=draw(oid),
        patient_id=patient_id,
        submission_time=draw(dtm),
        content_type_code=draw(code),
        authors=tuple(draw(st.lists(author, min_size=1, max_size=2))),
        title=draw(free_text),
        comments=draw(free_text),
        intended_recipients=draw(tokens),
    )
    documents = []
    for index in range(draw(st.integers(1, 4))):
        entry = DocumentEntry(
            entry_id=draw(st.sampled_from(["", f"urn:uuid:00000000-0000-4000-8000-{index:012d}"])),
            unique_id=draw(oid),
            patient_id=patient_id,
            mime_type="to be replaced",
            class_code=draw(code),
            type_code=draw(code),
            format_code=draw(code),
            confidentiality_codes=tuple(draw(st.lists(code, min_size=1, max_size=3))),
            healthcare_facility_type_code=draw(code),
            practice_setting_code=draw(code),
            creation_time=draw(dtm),
            language_code=draw(token),
            title=draw(free_text),
            comments=draw(free_text),
            authors=tuple(draw(st.lists(author, min_size=1, max_size=2))),
            event_codes=tuple(draw(st.lists(code, max_size=2))),
            service_start_time=draw(st.none() | dtm),
            service_stop_time=draw(st.none() | dtm),
            source_patient_id=draw(st.none() | patient),
            source_patient_info=tuple(draw(st.lists(token, min_size=1, max_size=3))),
            legal_authenticator=draw(st.none() | token),
            reference_ids=draw(tokens),
            other_slots=draw(other_slots),
        )
        documents.append(XdmDocumentInput(draw(content), draw(mime), entry))
    return submission, documents


def build(submission: SubmissionSet, documents: list[XdmDocumentInput]) -> bytes:
    return build_xdm(
        submission, documents, sender_name="Dr Jean DUPONT", sender_software="mssante 0.1.0"
    )


def expected_entry(index: int, doc: XdmDocumentInput) -> DocumentEntry:
    return replace(
        doc.entry,
        entry_id=doc.entry.entry_id or f"Document{index:02d}",
        mime_type=doc.mime_type,
        hash=hashlib.sha1(doc.content).hexdigest(),
        size=len(doc.content),
        uri=document_file_name(index, doc.mime_type),
    )


@settings(max_examples=75, deadline=None)
@given(packages())
def test_build_then_read_gives_the_same_package(
    package: tuple[SubmissionSet, list[XdmDocumentInput]],
) -> None:
    submission, documents = package
    data = build(submission, documents)
    read = read_xdm(data)  # strict
    assert read.problems == []
    assert [w.message for w in read.warnings] == [
        "no sourcePatientId slot" for doc in documents if doc.entry.source_patient_id is None
    ]
    assert read.submission == submission
    assert [d.entry for d in read.documents] == [
        expected_entry(i, doc) for i, doc in enumerate(documents, start=1)
    ]
    assert [d.content for d in read.documents] == [doc.content for doc in documents]
    assert [d.path for d in read.documents] == [
        f"IHE_XDM/SUBSET01/{document_file_name(i, doc.mime_type)}"
        for i, doc in enumerate(documents, start=1)
    ]
    # hash and size computed from the bytes, 8.3 upper-case names everywhere (R37)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        for doc in read.documents:
            content = zf.read(doc.path)
            assert doc.entry.hash == hashlib.sha1(content).hexdigest()
            assert doc.entry.size == len(content)
    assert names[:3] == ["README.TXT", "INDEX.HTM", "IHE_XDM/SUBSET01/METADATA.XML"]
    assert all(NAME_83.fullmatch(part) for name in names for part in name.split("/"))
    assert build(submission, documents) == data  # deterministic


@settings(max_examples=30, deadline=None)
@given(packages())
def test_codes_are_checked_against_the_injected_value_sets(
    package: tuple[SubmissionSet, list[XdmDocumentInput]],
) -> None:
    submission, documents = package
    data = build(submission, documents)
    allowed = {(slot, c) for doc in documents for slot, c in doc.entry.codes()}
    allowed.add(("contentTypeCode", submission.content_type_code))

    def checker(slot: str, c: Code) -> str | None:
        return None if (slot, c) in allowed else "not in the value set"

    assert read_xdm(data, code_checker=checker).problems == []
    # R38: any other code is refused, slot by slot
    first = documents[0].entry
    assert first.type_code is not None
    allowed.discard(("typeCode", first.type_code))
    problems = read_xdm(data, code_checker=checker).problems
    assert problems
    assert {p.code for p in problems} == {"code-not-in-value-set"}
    assert all("typeCode" in p.message for p in problems)


def sample_submission() -> tuple[SubmissionSet, DocumentEntry]:
    patient_id = format_patient_id("295109912611193")
    sender = author_for_mailbox(
        "jean.dupont@hopital.mssante.fr",
        idnat_ps="810001234567",
        family="DUPONT",
        given="Jean",
        institution="Hôpital & Co",
        idnat_struct="1750000028",
    )
    submission = SubmissionSet(
        unique_id="1.2.250.1.999.1.1.1",
        source_id="1.2.250.1.999.1",
        patient_id=patient_id,
        submission_time="20240116151112",
        content_type_code=Code("04", "1.2.250.1.213.2.2", "Hospitalisation de jour"),
        authors=(sender,),
    )
    entry = DocumentEntry(
        unique_id="1.2.250.1.999.1.1.1.1",
        patient_id=patient_id,
        mime_type="text/xml",
        class_code=Code("11", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        type_code=Code("11490-0", "2.16.840.1.113883.6.1", "Lettre de liaison à la sortie"),
        format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "PDF"),
        confidentiality_codes=(Code("N", "2.16.840.1.113883.5.25", "Normal"),),
        healthcare_facility_type_code=Code("SA01", "1.2.250.1.71.4.2.4", "Etablissement"),
        practice_setting_code=Code("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement"),
        creation_time="20240116151112",
        title="<script>alert('lettre')</script>",
        authors=(sender,),
        source_patient_id=patient_id,
        source_patient_info=("PID-5|DUPONT^Marie^^^^^L", "PID-7|19950101", "PID-8|F"),
    )
    return submission, entry


def test_readme_index_and_metadata_follow_the_french_layout() -> None:
    submission, entry = sample_submission()
    data = build_xdm(
        submission,
        [XdmDocumentInput(b"<ClinicalDocument/>", "text/xml", entry)],
        sender_name="DR Jean DUPONT",
        sender_software="mssante",
        sender_organisation="Hôpital (1750000028)",
        software_version="0.1.0",
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        readme = zf.read("README.TXT").decode()
        index = zf.read("INDEX.HTM").decode()
        metadata = zf.read("IHE_XDM/SUBSET01/METADATA.XML")
        infos = zf.infolist()
    assert readme.startswith("Emetteur :\n=============\n    . Nom : DR Jean DUPONT\n")
    assert "    . Organisme : Hôpital (1750000028)\n" in readme
    assert "Application de l'emetteur :\n=========================\n    . Nom : mssante\n" in readme
    assert "\nInstructions :\n=============\n" in readme
    assert readme.endswith(
        "Arborescence :\n============\n     README.TXT\n     INDEX.HTM\n     IHE_XDM\n"
        "          SUBSET01\n               METADATA.XML\n               DOC0001.XML\n"
    )
    assert "<script>" not in index and "&lt;script&gt;" in index
    assert 'href="IHE_XDM/SUBSET01/DOC0001.XML"' in index
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos)
    # the IHE ITI TF-3 §4.2.5 identifiers, the INS patient id and the sending BAL as author
    text = metadata.decode()
    assert 'objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"' in text
    assert 'classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"' in text
    for uuid in DOCUMENT_CODE_SCHEMES.values():
        if uuid != DOCUMENT_CODE_SCHEMES["eventCodeList"]:
            assert f'classificationScheme="{uuid}"' in text
    assert "295109912611193^^^&amp;1.2.250.1.213.1.4.8&amp;ISO" in text
    assert "<rim:Value>^^Internet^jean.dupont@hopital.mssante.fr</rim:Value>" in text
    assert "810001234567^DUPONT^Jean^^^^^^&amp;1.2.250.1.71.4.2.1&amp;ISO^D^^^IDNPS" in text
    assert "Hôpital \\T\\ Co^^^^^&amp;1.2.250.1.71.4.2.2&amp;ISO^IDNST^^^1750000028" in text
    assert f"<rim:Value>{hashlib.sha1(b'<ClinicalDocument/>').hexdigest()}</rim:Value>" in text


def test_a_changed_document_is_a_hash_and_size_problem() -> None:
    submission, entry = sample_submission()
    data = build(submission, [XdmDocumentInput(b"<a/>", "text/xml", entry)])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members["IHE_XDM/SUBSET01/DOC0001.XML"] = b"<a>changed</a>"
    problems = validate_xdm(write_zip(members))
    assert [p.code for p in problems] == ["hash-mismatch", "size-mismatch"]
    del members["IHE_XDM/SUBSET01/DOC0001.XML"]
    assert [p.code for p in validate_xdm(write_zip(members))] == ["document-not-found"]
    del members["IHE_XDM/SUBSET01/METADATA.XML"]
    assert [p.code for p in validate_xdm(write_zip(members))] == ["missing-metadata"]


def test_builder_refusals() -> None:
    submission, entry = sample_submission()
    with pytest.raises(ValueError, match="at least one document"):
        build(submission, [])
    other = replace(entry, patient_id=format_patient_id("253072B07300470"))
    with pytest.raises(ValueError, match="patientId"):
        build(submission, [XdmDocumentInput(b"x", "text/xml", other)])
    with pytest.raises(ValueError, match="typeCode"):
        build(submission, [XdmDocumentInput(b"x", "text/xml", replace(entry, type_code=None))])
    with pytest.raises(ValueError, match="not allowed"):
        build(submission, [XdmDocumentInput(b"x", "text/xml", replace(entry, unique_id="1\x002"))])
    with pytest.raises(ValueError, match="archive"):
        build(submission, [XdmDocumentInput(b"PK\x03\x04rest", "application/zip", entry)])
    with pytest.raises(ValueError, match="DTM"):
        build(
            submission,
            [XdmDocumentInput(b"x", "text/xml", replace(entry, creation_time="2024-01-16"))],
        )
    us = replace(submission, patient_id="111111111^^^&2.16.840.1.113883.4.1&ISO")
    with pytest.raises(ValueError, match="INS"):
        build(us, [XdmDocumentInput(b"x", "text/xml", replace(entry, patient_id=us.patient_id))])
    twice = [XdmDocumentInput(b"x", "text/xml", replace(entry, entry_id="D"))] * 2
    with pytest.raises(ValueError, match="not unique"):
        build(submission, twice)


def test_document_names_are_8_3_upper_case() -> None:
    assert document_file_name(1, "text/xml") == "DOC0001.XML"
    assert document_file_name(12, "application/pdf; name=x.pdf") == "DOC0012.PDF"
    assert document_file_name(9999, "application/octet-stream") == "DOC9999.BIN"
    with pytest.raises(ValueError):
        document_file_name(10_000, "text/xml")


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("IHE_XDM.ZIP", True),
        ("IHE_XDM.zip", True),
        ("ihe_xdm.zip", True),
        ("Ihe_Xdm.Zip", True),
        ("IHE_XDM.ZIP.exe", False),
        ("IHE_XDM2.ZIP", False),
        ("xdm.zip", False),
        ("", False),
        (None, False),
    ],
)
def test_find_xdm_attachment_in_any_case(filename: str | None, expected: bool) -> None:
    assert find_xdm_attachment(filename) is expected


def test_patient_id_helpers() -> None:
    assert format_patient_id("295109912611193") == "295109912611193^^^&1.2.250.1.213.1.4.8&ISO"
    assert parse_patient_id("162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH") == (
        "162018885045327",
        INS_TEST_OID,
    )
    assert parse_patient_id("111^^&1.2.3&ISO") is None
    assert parse_patient_id("111^^&1.2.3&ISO", strict=False) == ("111", "1.2.3")


def test_metadata_round_trip_alone() -> None:
    submission, entry = sample_submission()
    entry = replace(entry, entry_id="Doc", hash="ab" * 20, size=3, uri="DOC0001.XML")
    metadata = parse_metadata(build_metadata(submission, [entry]))
    assert metadata.submission == submission
    assert metadata.documents == (entry,)
    assert [(a.source, a.target, a.status) for a in metadata.associations] == [
        ("SubmissionSet01", "Doc", "Original")
    ]
    assert metadata.problems == () and metadata.warnings == ()


def test_layout_departures_in_strict_and_lenient_mode() -> None:
    submission, entry = sample_submission()
    data = build(submission, [XdmDocumentInput(b"<a/>", "text/xml", entry)])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    del members["README.TXT"]
    members["IHE_XDM/SUBSET02/METADATA.XML"] = members["IHE_XDM/SUBSET01/METADATA.XML"]
    members["IHE_XDM/SUBSET01/NOTES.TXT"] = b"not in the metadata"
    members["EXTRA.BIN"] = b"outside the layout"
    strict = read_xdm(write_zip(members))
    assert [(p.code, p.where) for p in strict.problems] == [
        ("multiple-subsets", ""),
        ("missing-readme", "README.TXT"),
    ]
    assert [(w.code, w.where) for w in strict.warnings] == [
        ("unexpected-file", "IHE_XDM/SUBSET02/METADATA.XML"),
        ("unreferenced-file", "IHE_XDM/SUBSET01/NOTES.TXT"),
        ("unexpected-file", "EXTRA.BIN"),
    ]
    lenient = read_xdm(write_zip(members), lenient=True)
    assert [p.code for p in lenient.problems] == ["multiple-subsets"]  # documents left unread
    assert [d.path for d in lenient.documents] == ["IHE_XDM/SUBSET01/DOC0001.XML"]


def test_unicode_digits_are_not_hl7_digits() -> None:
    """``str.isdigit`` and ``\\d`` accept "²" or "٣"; sizes and DTM times must be ASCII digits."""
    submission, entry = sample_submission()
    entry = replace(entry, entry_id="Doc", size=3)
    xml = build_metadata(submission, [entry]).replace(b"<rim:Value>3<", "<rim:Value>³<".encode())
    xml = xml.replace(b"20240116151112", "٢٠٢٤٠١١٦١٥١١١٢".encode())
    metadata = parse_metadata(xml)
    assert metadata.documents[0].size is None
    assert {p.code for p in metadata.problems} == {"bad-size", "bad-time"}
