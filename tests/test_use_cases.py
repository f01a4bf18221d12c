"""The six ESSMS flows of DESIGN.md as data."""

from __future__ import annotations

from datetime import date

import pytest

from mssante.domain.documents import SUBJECT_PREFIX, Code, strip_subject_prefix, value_sets
from mssante.domain.legal_recipients import RecipientKinds, missing_recipients
from mssante.domain.mailboxes import MailboxType
from mssante.domain.use_cases import BAL_TYPES, all_use_cases, channels, use_case

IDS = [
    "ehpad-pharmacie",
    "dac-ssiad",
    "pcpe-mdph",
    "ime-information-preoccupante",
    "professionnel-dac-signalement",
    "hopital-lettre-liaison-sortie",
]


def test_six_flows_in_design_order() -> None:
    assert [u.id for u in all_use_cases()] == IDS
    assert all(u.label and u.senders and u.recipients and u.documents for u in all_use_cases())


@pytest.mark.parametrize("case_id", IDS)
def test_document_types_are_in_j07(case_id: str) -> None:
    case = use_case(case_id)
    for code in case.type_codes:
        concept = value_sets().lookup("J07", code)
        assert concept is not None, f"{case_id}: {code} not in JDV_J07"
    assert sum(d.principal for d in case.documents) == 1
    assert case.principal_type_code == case.documents[0].type_code


@pytest.mark.parametrize("case_id", IDS)
def test_parties_are_well_formed(case_id: str) -> None:
    case = use_case(case_id)
    known_channels = set(channels())
    assert set(case.channels) <= known_channels and case.channels
    for party in case.senders + case.recipients:
        assert party.bal_type in BAL_TYPES and party.structure and party.label
    for sender in case.senders:
        assert sender.bal_type in {t.value for t in MailboxType}  # patients never initiate
        assert sender.facility_type and sender.practice_setting
        facility = value_sets().lookup("J02", sender.facility_type)
        assert (
            facility is not None
            and value_sets().check("healthcareFacilityTypeCode", facility) is None
        )
        setting = value_sets().lookup("J04", sender.practice_setting)
        assert setting is not None and value_sets().check("practiceSettingCode", setting) is None


def test_the_flows_of_design() -> None:
    ehpad = use_case("ehpad-pharmacie")
    assert ehpad.principal_type_code == "57833-6"
    assert (ehpad.senders[0].bal_type, ehpad.senders[0].structure) == ("ORG", "EHPAD")
    assert (ehpad.recipients[0].bal_type, ehpad.recipients[0].structure) == (
        "PER",
        "PHARMACIE_OFFICINE",
    )
    assert use_case("dac-ssiad").senders[0].structure == "DAC"
    assert use_case("dac-ssiad").recipients[0].structure == "SSIAD"
    assert use_case("pcpe-mdph").recipients[0].structure == "MDPH"
    assert (
        use_case("ime-information-preoccupante").recipients[0].structure == "CONSEIL_DEPARTEMENTAL"
    )
    assert use_case("professionnel-dac-signalement").senders[0].bal_type == "PER"
    hospital = use_case("hopital-lettre-liaison-sortie")
    assert hospital.principal_type_code == "11490-0"
    kinds = {(p.bal_type, p.role or p.structure) for p in hospital.recipients}
    assert kinds == {("PER", "medecin_traitant"), ("ORG", "EHPAD"), ("MES", "patient")}


def test_essms_document_types_are_used() -> None:
    used = {code for case in all_use_cases() for code in case.type_codes}
    # prescription, médico-social document, ESMS lettres de liaison, DLU return form (FLUDR)
    assert {"57833-6", "28653-4", "88348-8", "83981-1", "11490-0", "60280-5"} <= used
    # the DLU itself (CDA example DLU-EHPAD-FLUDT) and its transfer form are J07 codes too
    assert value_sets().lookup("J07", "74207-2") is not None
    assert value_sets().lookup("J07", "78341-5") is not None


def test_subject_follows_r41() -> None:
    case = use_case("ehpad-pharmacie")
    assert case.subject_template == "XDM/1.0/DDM+{libelle} {NOM} {prenom} {date_naissance}"
    subject = case.subject("Martin", "Jeanne", date(1931, 4, 5))
    assert subject == "XDM/1.0/DDM+Prescription de produits de santé MARTIN Jeanne 05/04/1931"
    assert strip_subject_prefix(subject).startswith("Prescription")
    custom = case.subject("Martin", "Jeanne", date(1931, 4, 5), libelle="Ordonnance")
    assert custom == "XDM/1.0/DDM+Ordonnance MARTIN Jeanne 05/04/1931"
    for item in all_use_cases():
        assert item.subject("X", "Y", date(2000, 1, 1)).startswith(SUBJECT_PREFIX)


def test_hospital_flow_meets_the_legal_recipients() -> None:
    hospital = use_case("hopital-lettre-liaison-sortie")
    roles = {p.role for p in hospital.recipients}
    kinds = RecipientKinds(
        gp="medecin_traitant" in roles, patient="patient" in roles, has_prescriber=False
    )
    assert missing_recipients(hospital.principal_type_code, kinds) == []


def test_principal_types_have_a_class_code() -> None:
    for case in all_use_cases():
        klass = value_sets().class_for_type(case.principal_type_code)
        assert isinstance(klass, Code) and value_sets().check("classCode", klass) is None


def test_unknown_use_case() -> None:
    with pytest.raises(KeyError, match="unknown use case"):
        use_case("nope")
