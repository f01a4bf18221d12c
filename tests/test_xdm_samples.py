"""Real XDM packages from ``data/xdm/`` (SPEC §7.1, R36, R43): the French DRIMbox example and
the US Direct Project sample, read in lenient mode with their warnings, and in strict mode."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mssante.formats.safezip import write_zip
from mssante.formats.xdm import XdmPackage, read_xdm, validate_xdm
from mssante.formats.xdm_metadata import INS_TEST_OID, Code, Problem, parse_patient_id

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
FRENCH = SHARED_DATA / "xdm" / "drimbox-KA202401"
US = SHARED_DATA / "xdm" / "samplexdm.zip"

pytestmark = pytest.mark.skipif(not FRENCH.is_dir(), reason="shared data not available")


@pytest.fixture(scope="module")
def french_zip() -> bytes:
    """The published DRIMbox tree, zipped as it would be attached (it is not zipped upstream)."""
    files = sorted(p for p in FRENCH.rglob("*") if p.is_file())
    return write_zip([(p.relative_to(FRENCH).as_posix(), p.read_bytes()) for p in files])


def codes(findings: list[Problem]) -> list[tuple[str, str]]:
    return [(p.code, p.where) for p in findings]


FRENCH_DEVIATIONS = [
    ("subset-name", "SS000001"),
    ("soap-envelope", ""),  # ITI-41 SOAP envelope with SAML header around the request
    ("unknown-external-identifier", "DocumentKOS"),  # identificationScheme "1.2.3"
    ("uri-includes-subset", "DocumentKOS"),  # URI "SS000001/KOS_1_1.DCM"
    ("uri-includes-subset", "Signature01"),
]
FRENCH_NOTES = [
    ("missing-optional-slot", "Signature01"),  # no sourcePatientInfo
    ("unreferenced-file", "IHE_XDM/SS000001/CR.TXT"),
]
# The published SIGN_1.XML is not the file its metadata describes (3,212 bytes vs 6,102).
FRENCH_PROBLEMS = [("hash-mismatch", "Signature01"), ("size-mismatch", "Signature01")]


def test_french_sample_reads_in_lenient_mode_with_its_warnings(french_zip: bytes) -> None:
    package = read_xdm(french_zip, lenient=True)
    assert sorted(codes(package.warnings)) == sorted(FRENCH_DEVIATIONS + FRENCH_NOTES)
    assert codes(package.problems) == FRENCH_PROBLEMS
    assert package.subset_path == "IHE_XDM/SS000001"
    assert [d.path for d in package.documents] == [
        "IHE_XDM/SS000001/KOS_1_1.DCM",
        "IHE_XDM/SS000001/SIGN_1.XML",
    ]
    kos, signature = package.documents
    assert kos.content == (FRENCH / "IHE_XDM" / "SS000001" / "KOS_1_1.DCM").read_bytes()
    assert kos.entry.hash == hashlib.sha1(kos.content).hexdigest()
    assert kos.entry.size == len(kos.content) == 5164
    # R43: the patient is the INS of the metadata (here the test INS OID), with its ^NH type
    assert parse_patient_id(package.submission.patient_id) == ("162018885045327", INS_TEST_OID)
    assert kos.entry.type_code == Code(
        "IMG-KOS", "1.2.250.1.213.1.1.4.12", "Reference d'objets d'un examen d'imagerie"
    )
    assert kos.entry.class_code == Code("31", "1.2.250.1.213.1.1.4.1", "Imagerie médicale")
    assert kos.entry.format_code is not None
    assert kos.entry.format_code.code == "1.2.840.10008.5.1.4.1.1.88.59"
    assert kos.entry.healthcare_facility_type_code == Code(
        "SA25", "1.2.250.1.71.4.2.4", "Laboratoire de biologie médicale"
    )
    assert kos.entry.practice_setting_code == Code(
        "AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"
    )
    assert [c.code for c in signature.entry.confidentiality_codes] == [
        "N",
        "MASQUE_PS",
        "INVISIBLE_PATIENT",
    ]
    assert len(kos.entry.reference_ids) == 3
    assert package.submission.authors[0].person.startswith("899700367909^DOC0036790^KIT")
    signs = [a for a in package.associations if a.type.endswith(":signs")]
    assert [(a.source, a.target) for a in signs] == [("Signature01", "SubmissionSet01")]


def test_french_sample_in_strict_mode_lists_problems(french_zip: bytes) -> None:
    package = read_xdm(french_zip)
    assert sorted(codes(package.problems)) == sorted(FRENCH_DEVIATIONS + FRENCH_PROBLEMS)
    assert sorted(codes(package.warnings)) == sorted(FRENCH_NOTES)
    assert not package.ok
    assert validate_xdm(french_zip) == package.problems


US_DEVIATIONS = [
    ("top-folder", "samplexdm/"),
    ("patient-id-not-ins", "SubmissionSet01"),
    ("bad-patient-id", "Document01"),  # 111111111^^&2.16.840.1.113883.4.1&ISO: one ^ short
    ("patient-id-not-ins", "Document01"),
    ("association-type", "as01"),  # "HasMember" without its URN
    ("uri-missing", "Document01"),  # no URI slot: found by its id, Document01.xml
    ("size-missing", "Document01"),
    ("file-name", "samplexdm/IHE_XDM/SUBSET01/CCD.xsl"),
    ("file-name", "samplexdm/IHE_XDM/SUBSET01/Document01.xml"),
    ("file-name", "samplexdm/IHE_XDM/SUBSET01/METADATA.xml"),
    ("file-name", "samplexdm/INDEX.htm"),
    ("file-name", "samplexdm/README.txt"),
]
US_NOTES = [("unreferenced-file", "samplexdm/IHE_XDM/SUBSET01/CCD.xsl")]


def test_us_sample_reads_in_lenient_mode_with_its_warnings() -> None:
    package = read_xdm(US.read_bytes(), lenient=True)
    assert sorted(codes(package.warnings)) == sorted(US_DEVIATIONS + US_NOTES)
    assert package.problems == []
    assert package.ok
    (document,) = package.documents
    assert document.path == "samplexdm/IHE_XDM/SUBSET01/Document01.xml"
    assert len(document.content) == 68226
    assert document.entry.hash == hashlib.sha1(document.content).hexdigest()
    assert document.entry.type_code == Code(
        "34133-9", "LOINC", "Outpatient Evaluation And Management"
    )
    assert package.submission.intended_recipients == (
        "|beau@nologs.org^Smith^John^^^Dr^^^&1.3.6.1.4.1.21367.3100.1&ISO",
    )


def test_us_sample_in_strict_mode_lists_problems() -> None:
    package = read_xdm(US.read_bytes())
    assert sorted(codes(package.problems)) == sorted(US_DEVIATIONS)
    assert codes(package.warnings) == US_NOTES


def test_samples_against_a_french_value_set_checker(french_zip: bytes) -> None:
    """The reader asks the injected checker about every code (R38); the value sets themselves
    are another module's job, so a stand-in accepting only LOINC type codes is used here."""

    def only_loinc_types(slot: str, code: Code) -> str | None:
        if slot == "typeCode" and code.scheme != "2.16.840.1.113883.6.1":
            return "not in JDV_J07 (stand-in)"
        return None

    package = read_xdm(french_zip, lenient=True, code_checker=only_loinc_types)
    assert [(p.code, p.where) for p in package.problems if p.code.startswith("code")] == [
        ("code-not-in-value-set", "DocumentKOS"),
        ("code-not-in-value-set", "Signature01"),
    ]


def summary(package: XdmPackage) -> str:
    """What a person would be shown: one line per finding (kept here to eyeball the messages)."""
    return "\n".join(
        f"{p.code} [{p.where}] {p.message}" for p in package.warnings + package.problems
    )


def test_messages_name_the_culprit(french_zip: bytes) -> None:
    text = summary(read_xdm(french_zip, lenient=True))
    assert "SS000001/KOS_1_1.DCM" in text
    assert "646f2131f87c4ef6457e134b5041f517ca579d55" in text  # the real SHA-1 of SIGN_1.XML
    assert "3212 bytes, metadata says 6102" in text
