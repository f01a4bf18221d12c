"""Documents of the arrêté du 26 avril 2022 and their mandatory recipients (R45, §7.3)."""

from __future__ import annotations

from datetime import date

import pytest

from mssante.domain.documents import value_sets
from mssante.domain.legal_recipients import (
    POLICIES,
    Decision,
    MissingRecipient,
    RecipientKinds,
    apply_policy,
    legal_document,
    legal_documents,
    legal_type_codes,
    missing_recipients,
    recipient_kinds,
)

R45_CODES = [
    "11502-2",
    "18748-4",
    "57833-6",
    "34874-8",
    "PRESC-BIO",
    "55115-0",
    "11490-0",
    "18761-7",
]
EVERYONE = RecipientKinds(gp=True, prescriber=True, patient=True)


def test_r45_codes_are_covered() -> None:
    codes = legal_type_codes()
    assert set(R45_CODES) <= set(codes)
    assert {"CERT_DECL", "89601-9", "96349-6"} <= set(codes)  # certificates and letters
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("code", legal_type_codes())
def test_each_legal_type_code_resolves_in_j07(code: str) -> None:
    concept = value_sets().lookup("J07", code)
    assert concept is not None, f"{code} is not in JDV_J07"
    assert value_sets().check("typeCode", concept) is None


def test_table_rows() -> None:
    rows = {doc.id: doc for doc in legal_documents()}
    assert len(rows) == 12
    bio = rows["cr-biologie"]
    assert bio.type_codes == ("11502-2",) and bio.in_force == date(2022, 12, 31)
    assert bio.required == ("gp", "prescriber", "patient") and bio.dmp
    assert rows["cr-operatoire"].in_force == date(2023, 12, 31)
    assert rows["prescription-produits-sante"].required == ("gp", "patient")
    assert rows["ldl-sortie"].in_force is None  # already required before the arrêté
    assert not rows["certificats-declarations"].mapping_confirmed
    assert all(doc.required and doc.label for doc in rows.values())
    assert legal_document("11490-0") is rows["ldl-sortie"]
    assert legal_document("28653-4") is None


def test_missing_all_three() -> None:
    missing = missing_recipients("11502-2", RecipientKinds())
    assert [m.kind for m in missing] == ["gp", "prescriber", "patient"]
    assert all(isinstance(m, MissingRecipient) and m.document.id == "cr-biologie" for m in missing)
    assert "médecin traitant" in missing[0].label
    assert "Mon espace santé" in missing[2].label


def test_nothing_missing() -> None:
    assert missing_recipients("11502-2", EVERYONE) == []
    assert missing_recipients("28653-4", RecipientKinds()) == []  # not in the arrêté
    assert missing_recipients("nope", RecipientKinds()) == []


def test_prescriptions_do_not_need_the_prescriber() -> None:
    for code in ("57833-6", "PRESC-BIO", "55115-0"):
        kinds = [m.kind for m in missing_recipients(code, RecipientKinds())]
        assert kinds == ["gp", "patient"], code


def test_sender_and_context_satisfy_obligations() -> None:
    assert (
        missing_recipients(
            "11502-2", RecipientKinds(patient=True, sender_is_gp=True, sender_is_prescriber=True)
        )
        == []
    )
    only_patient = missing_recipients("11502-2", RecipientKinds(gp=True, has_prescriber=False))
    assert [m.kind for m in only_patient] == ["patient"]
    assert (
        missing_recipients(
            "18748-4", RecipientKinds(gp=True, prescriber=True, patient_has_mes=False)
        )
        == []
    )


def test_hospital_stay_and_entry_into_force() -> None:
    stay = RecipientKinds(hospital_stay=True)
    assert missing_recipients("11502-2", stay) == []  # "hors séjour hospitalier"
    assert len(missing_recipients("34874-8", stay)) == 3  # CR opératoire: no such exclusion
    assert len(missing_recipients("11490-0", stay)) == 3  # the LDL de sortie is hospital's
    assert missing_recipients("34874-8", RecipientKinds(), on=date(2023, 12, 30)) == []
    assert len(missing_recipients("34874-8", RecipientKinds(), on=date(2023, 12, 31))) == 3
    assert len(missing_recipients("11490-0", RecipientKinds(), on=date(2000, 1, 1))) == 3


def test_recipient_kinds_from_addresses() -> None:
    kinds = recipient_kinds(
        ["<Dr.Gp@cabinet.mssante.fr>", "146026322000196@PATIENT.mssante.fr"],
        gp="dr.gp@cabinet.mssante.fr",
        prescriber="labo@bio.mssante.fr",
        sender="labo@bio.mssante.fr",
    )
    assert kinds.gp and kinds.patient and not kinds.prescriber
    assert kinds.sender_is_prescriber and not kinds.sender_is_gp
    assert missing_recipients("11502-2", kinds) == []
    bare = recipient_kinds(["someone@ch.mssante.fr"])
    assert not (bare.gp or bare.prescriber or bare.patient or bare.sender_is_gp)
    assert recipient_kinds([], hospital_stay=True, patient_has_mes=False).hospital_stay


def test_policy_inform_and_warn_allow_with_french_notices() -> None:
    missing = missing_recipients("57833-6", RecipientKinds(gp=True))
    inform = apply_policy("inform", missing)
    assert inform.allowed and inform.notices[0].startswith("Pour information : ")
    assert "arrêté du 26 avril 2022" in inform.notices[0]
    assert (
        "le patient (messagerie de Mon espace santé) doit en être destinataire" in inform.notices[0]
    )
    warn = apply_policy("warn", missing)
    assert warn.allowed and warn.notices[0].startswith("Attention : ")


def test_policy_require_blocks() -> None:
    missing = missing_recipients("11502-2", RecipientKinds(gp=True))
    decision = apply_policy("require", missing)
    assert decision == Decision(False, decision.notices)
    assert len(decision.notices) == 1
    notice = decision.notices[0]
    assert notice.startswith("Envoi bloqué : ") and "doivent en être destinataires" in notice
    assert "le médecin prescripteur" in notice and " et le patient" in notice


def test_policy_without_missing_recipients() -> None:
    for policy in POLICIES:
        assert apply_policy(policy, []) == Decision(True, [])  # type: ignore[arg-type]


def test_one_notice_per_document() -> None:
    missing = missing_recipients("11502-2", RecipientKinds()) + missing_recipients(
        "34874-8", RecipientKinds(gp=True, prescriber=True)
    )
    decision = apply_policy("warn", missing)
    assert len(decision.notices) == 2
    assert "opératoire" in decision.notices[1]


def test_unknown_policy() -> None:
    with pytest.raises(ValueError, match="policy"):
        apply_policy("ignore", [])  # type: ignore[arg-type]
