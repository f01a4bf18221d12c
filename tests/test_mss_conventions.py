"""MSSanté headers, subjects and PDF names (R21, R39–R42, SPEC §2)."""

from __future__ import annotations

import os
import re
from datetime import date
from email.message import Message
from pathlib import Path

import pytest
from defusedxml import ElementTree
from hypothesis import given
from hypothesis import strategies as st

from mssante.domain.documents import (
    SUBJECT_PREFIX,
    Anomaly,
    check_received_headers,
    document_subject,
    is_document_subject,
    mss_codecda,
    mss_ins,
    parse_codecda,
    pdf_copy_name,
    strip_subject_prefix,
)

SHARED = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
HL7 = "{urn:hl7-org:v3}"
LPS_SUBJECT = "XDM/1.0/DDM+ECHOGRAPHIE ABDOMINOPELVIENNE CORSE FIGATELLIX 12/10/1988"


# --- X-MSS-CODECDA (R39) and X-MSS-INS (R40) -----------------------------------------


def test_codecda_joins_codes_in_archive_order() -> None:
    assert mss_codecda(["34112-3", "PRESC-BIO", "15508-5"]) == "34112-3,PRESC-BIO,15508-5"
    assert mss_codecda([" 11502-2 "]) == "11502-2"
    assert mss_codecda(["11502-2", "11502-2"]) == "11502-2,11502-2"  # one per CDA file


def test_codecda_absent_without_cda() -> None:
    assert mss_codecda([]) is None


@pytest.mark.parametrize("bad", ["", "a,b", "11502 2", "é", "x\r\nBcc: evil@x"])
def test_codecda_rejects_codes_that_would_break_the_header(bad: str) -> None:
    with pytest.raises(ValueError):
        mss_codecda(["11502-2", bad])


def test_parse_codecda() -> None:
    assert parse_codecda("34112-3, PRESC-BIO,,15508-5 ") == ["34112-3", "PRESC-BIO", "15508-5"]


@pytest.mark.skipif(not (SHARED / "cda").is_dir(), reason="shared reference data not available")
def test_codecda_from_the_cda_examples() -> None:
    codes = []
    for name in ("LDL-SES_2022.01.xml", "BIO-CR-BIO_2024.01_TSH_1.xml", "VSM_1.4_2022.01.xml"):
        root = ElementTree.parse(SHARED / "cda" / "examples" / name, forbid_dtd=True).getroot()
        code = root.find(f"{HL7}code")
        assert code is not None
        codes.append(code.get("code", ""))
    value = mss_codecda(codes)
    assert value == "11490-0,11502-2,SYNTH"
    assert check_received_headers({"X-MSS-CODECDA": value, "X-MSS-INS": "O"}) == []


def test_ins_flag() -> None:
    assert mss_ins([]) is None
    assert mss_ins([False]) == "N"
    assert mss_ins([False, False]) == "N"
    assert mss_ins([False, True]) == "O"
    assert mss_ins([True]) == "O"


# --- Subject (R41) -------------------------------------------------------------------


def test_document_subject_matches_the_hl7_lps_example() -> None:
    subject = document_subject(
        "ECHOGRAPHIE ABDOMINOPELVIENNE", "Corse", "FIGATELLIX", date(1988, 10, 12)
    )
    assert subject == LPS_SUBJECT


def test_document_subject_upper_cases_the_family_name_only() -> None:
    subject = document_subject("Lettre de liaison", "de la Fontaine", "Élodie", date(1940, 1, 2))
    assert subject == "XDM/1.0/DDM+Lettre de liaison DE LA FONTAINE Élodie 02/01/1940"


def test_document_subject_is_one_line() -> None:
    subject = document_subject("CR\r\nBcc: x@y", "Dupont\n", "Jean\t", date(2000, 12, 31))
    assert "\r" not in subject and "\n" not in subject
    assert subject == "XDM/1.0/DDM+CR Bcc: x@y DUPONT Jean 31/12/2000"


def test_document_subject_needs_label_and_family() -> None:
    with pytest.raises(ValueError):
        document_subject("", "Dupont", "Jean", date(2000, 1, 1))
    with pytest.raises(ValueError):
        document_subject("CR", " ", "Jean", date(2000, 1, 1))


@pytest.mark.parametrize(
    ("subject", "shown"),
    [
        (LPS_SUBJECT, "ECHOGRAPHIE ABDOMINOPELVIENNE CORSE FIGATELLIX 12/10/1988"),
        (
            "[KO Intégration système !][902] XDM/1.0/DDM+CR X",
            "[KO Intégration système !][902] CR X",
        ),
        ("RE: XDM/1.0/DDM+CR X", "RE: CR X"),
        ("[Annule et remplace] xdm/1.0/ddm+CR X", "[Annule et remplace] CR X"),
        ("Compte rendu XDM/1.0/DDM+", "Compte rendu XDM/1.0/DDM+"),
        ("", ""),
    ],
)
def test_strip_subject_prefix(subject: str, shown: str) -> None:
    assert strip_subject_prefix(subject) == shown


def test_is_document_subject() -> None:
    assert is_document_subject(LPS_SUBJECT)
    assert is_document_subject("[KO Intégration système !][903] " + LPS_SUBJECT)
    assert not is_document_subject("Bonjour")


@given(st.text(max_size=60), st.text(max_size=30), st.text(max_size=30))
def test_subject_round_trip(label: str, family: str, given_name: str) -> None:
    try:
        subject = document_subject(label, family, given_name, date(1970, 5, 17))
    except ValueError:
        return
    assert subject.startswith(SUBJECT_PREFIX) and subject.endswith(" 17/05/1970")
    assert "\n" not in subject and "\r" not in subject
    assert strip_subject_prefix(subject) == subject[len(SUBJECT_PREFIX) :]


# --- PDF copy name (R42) ---------------------------------------------------------------


def test_pdf_name_matches_the_hl7_lps_example() -> None:
    name = pdf_copy_name(date(2022, 5, 31), "CR d'imagerie médicale", "Corse", "FIGATELLIX")
    assert name == "20220531_CR_d_imagerie_medicale_CORSE_FIGATELLIX.pdf"


def test_pdf_name_with_dossier_and_transliteration() -> None:
    name = pdf_copy_name(
        date(2024, 1, 9), "Lettre de liaison", "Œuvray-Müller", "Anaïs Zoé", dossier="D/2024 17"
    )
    assert name == "20240109_Lettre_de_liaison_OEUVRAY-MULLER_Anais_Zoe_D_2024_17.pdf"


def test_pdf_name_requires_type_and_family() -> None:
    with pytest.raises(ValueError):
        pdf_copy_name(date(2024, 1, 1), "???", "Dupont", "Jean")
    with pytest.raises(ValueError):
        pdf_copy_name(date(2024, 1, 1), "CR", "", "Jean")


@given(
    st.text(max_size=300),
    st.text(min_size=1, max_size=80),
    st.text(max_size=80),
    st.text(max_size=40),
)
def test_pdf_name_is_always_filesystem_safe(
    label: str, family: str, given_name: str, dossier: str
) -> None:
    try:
        name = pdf_copy_name(date(2023, 3, 4), label, family, given_name, dossier)
    except ValueError:
        return
    assert re.fullmatch(r"20230304_[A-Za-z0-9-][A-Za-z0-9_-]*\.pdf", name), name
    assert len(name) <= 200 and "__" not in name


# --- Received headers (R21) ------------------------------------------------------------


def test_well_formed_headers_have_no_anomaly() -> None:
    headers = {
        "X-MSS-NIL": "REF-12345",
        "X-MSS-CODECDA": "34112-3,PRESC-BIO",
        "x-mss-ins": "O",
        "X-Mss-Mes": "FIN",
        "Subject": "hello",
    }
    assert check_received_headers(headers) == []
    assert check_received_headers({}) == []
    assert check_received_headers({"X-MSS-CODECDA": "11502-2"}) == []


@pytest.mark.parametrize(
    ("headers", "header", "needle"),
    [
        ({"X-MSS-INS": "o", "X-MSS-CODECDA": "11502-2"}, "X-MSS-INS", "O or N"),
        ({"X-MSS-INS": "OUI", "X-MSS-CODECDA": "11502-2"}, "X-MSS-INS", "O or N"),
        ({"X-MSS-MES": "fin"}, "X-MSS-MES", "FIN"),
        ({"X-MSS-MES": "FIN DE L'ECHANGE"}, "X-MSS-MES", "FIN"),
        ({"X-MSS-CODECDA": "11502-2,12345-6"}, "X-MSS-CODECDA", "'12345-6'"),
        ({"X-MSS-CODECDA": "11502-2;34112-3"}, "X-MSS-CODECDA", "JDV_J07"),
        ({"X-MSS-CODECDA": "11502-2,,34112-3"}, "X-MSS-CODECDA", "empty item"),
        ({"X-MSS-CODECDA": " "}, "X-MSS-CODECDA", "empty"),
        ({"X-MSS-NIL": ""}, "X-MSS-NIL", "empty"),
        ({"X-MSS-INS": "N"}, "X-MSS-INS", "without X-MSS-CODECDA"),
    ],
)
def test_anomalies_are_listed(headers: dict[str, str], header: str, needle: str) -> None:
    anomalies = check_received_headers(headers)
    assert anomalies, headers
    assert all(isinstance(a, Anomaly) for a in anomalies)
    assert any(a.header == header and needle in a.reason for a in anomalies), anomalies


def test_repeated_headers_in_a_message() -> None:
    msg = Message()
    msg["X-MSS-INS"] = "O"
    msg["X-MSS-INS"] = "N"
    msg["X-MSS-CODECDA"] = "11502-2"
    anomalies = check_received_headers(msg)
    assert [a.header for a in anomalies] == ["X-MSS-INS"]
    assert "appears 2" in anomalies[0].reason


def test_folded_values_are_unfolded() -> None:
    assert check_received_headers({"X-MSS-CODECDA": "11502-2,\r\n 34112-3"}) == []


@given(
    st.dictionaries(
        st.sampled_from(["X-MSS-INS", "X-MSS-MES", "X-MSS-CODECDA", "X-MSS-NIL", "X"]), st.text()
    )
)
def test_check_never_raises(headers: dict[str, str]) -> None:
    for anomaly in check_received_headers(headers):
        assert anomaly.header.startswith("X-MSS-") and anomaly.reason
