"""Mandatory recipients of the documents of the arrêté du 26 avril 2022 (R45, SPEC §7.3).

The arrêté (article 1 and annex) lists documents that must be put in the DMP and sent by
secure messaging to the médecin traitant, to the prescriber "s'il y a lieu", to any
relevant professional, and to the patient through Mon espace santé when it exists. The
table lives in ``mssante/data/legal_documents.json``; this module answers, for one
document, which of those recipients are missing, and turns that into a decision according
to the policy of the sending BAL:

- ``inform``: send, and tell the user what the arrêté expects;
- ``warn``: send, with a warning the user must see (the UI may ask to confirm);
- ``require``: refuse to send until the missing recipients are added.

Pure: no I/O except reading the packaged JSON. Notices are French (shown to users).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Any, Literal, get_args

RecipientKind = Literal["gp", "prescriber", "patient"]
Policy = Literal["inform", "warn", "require"]
POLICIES: tuple[str, ...] = get_args(Policy)
PATIENT_DOMAIN = "patient.mssante.fr"
RECIPIENT_LABELS: dict[str, str] = {
    "gp": "le médecin traitant",
    "prescriber": "le médecin prescripteur (ou le médecin qui a adressé le patient)",
    "patient": "le patient (messagerie de Mon espace santé)",
}


@dataclass(frozen=True)
class LegalDocument:
    """One row of the annex: its typeCodes (JDV_J07) and mandatory recipients."""

    id: str
    label: str
    type_codes: tuple[str, ...]
    in_force: date | None
    outside_hospital_stay: bool
    dmp: bool
    required: tuple[RecipientKind, ...]
    mapping_confirmed: bool


@dataclass(frozen=True)
class RecipientKinds:
    """Who a message goes to, and the context the obligations depend on.

    ``gp``/``prescriber``/``patient``: that recipient is among the addressees. The sender
    being the médecin traitant (or the prescriber) satisfies that obligation; without a
    distinct prescriber (``has_prescriber=False``) or without a Mon espace santé mailbox
    (``patient_has_mes=False``, patient opposed or account closed), it does not apply.
    Documents produced during a hospital stay (``hospital_stay=True``) are outside the
    rows marked "hors séjour hospitalier".
    """

    gp: bool = False
    prescriber: bool = False
    patient: bool = False
    sender_is_gp: bool = False
    sender_is_prescriber: bool = False
    has_prescriber: bool = True
    patient_has_mes: bool = True
    hospital_stay: bool = False


@dataclass(frozen=True)
class MissingRecipient:
    kind: RecipientKind
    label: str
    document: LegalDocument


@dataclass(frozen=True)
class Decision:
    """May the message go, and what to tell the user (French)."""

    allowed: bool
    notices: list[str] = field(default_factory=list)


def _parse(entry: dict[str, Any]) -> LegalDocument:
    recipients: dict[str, bool] = entry["recipients"]
    in_force = entry.get("in_force")
    return LegalDocument(
        id=str(entry["id"]),
        label=str(entry["label"]),
        type_codes=tuple(str(c) for c in entry["type_codes"]),
        in_force=date.fromisoformat(in_force) if in_force else None,
        outside_hospital_stay=bool(entry["outside_hospital_stay"]),
        dmp=bool(entry["dmp"]),
        required=tuple(k for k in get_args(RecipientKind) if recipients.get(k)),
        mapping_confirmed=bool(entry["mapping_confirmed"]),
    )


@functools.cache
def _table() -> tuple[tuple[LegalDocument, ...], dict[str, LegalDocument]]:
    text = resources.files("mssante.data").joinpath("legal_documents.json").read_text("utf-8")
    documents = tuple(_parse(e) for e in json.loads(text)["documents"])
    by_code: dict[str, LegalDocument] = {}
    for doc in documents:
        for code in doc.type_codes:
            if code in by_code:
                raise ValueError(f"legal_documents.json: typeCode {code!r} listed twice")
            by_code[code] = doc
    return documents, by_code


def legal_documents() -> list[LegalDocument]:
    """Every row of the table, in the order of the arrêté."""
    return list(_table()[0])


def legal_document(type_code: str) -> LegalDocument | None:
    """The row a typeCode belongs to, or None when the arrêté does not cover it."""
    return _table()[1].get(type_code)


def legal_type_codes() -> list[str]:
    return [code for doc in _table()[0] for code in doc.type_codes]


def missing_recipients(
    type_code: str, recipients: RecipientKinds, *, on: date | None = None
) -> list[MissingRecipient]:
    """Mandatory recipients of a document of type `type_code` that the message lacks.

    Empty when the type is not in the arrêté, when the obligation is not yet in force on
    `on` (if given), or when a hospital-stay document falls outside its row.
    """
    doc = legal_document(type_code)
    if doc is None:
        return []
    if on is not None and doc.in_force is not None and on < doc.in_force:
        return []
    if recipients.hospital_stay and doc.outside_hospital_stay:
        return []
    present = {
        "gp": recipients.gp or recipients.sender_is_gp,
        "prescriber": recipients.prescriber
        or recipients.sender_is_prescriber
        or not recipients.has_prescriber,
        "patient": recipients.patient or not recipients.patient_has_mes,
    }
    return [
        MissingRecipient(kind, RECIPIENT_LABELS[kind], doc)
        for kind in doc.required
        if not present[kind]
    ]


def recipient_kinds(
    addresses: Iterable[str],
    *,
    gp: str | None = None,
    prescriber: str | None = None,
    sender: str | None = None,
    has_prescriber: bool = True,
    patient_has_mes: bool = True,
    hospital_stay: bool = False,
) -> RecipientKinds:
    """`RecipientKinds` from the recipient addresses of a message and the known addresses
    of the médecin traitant and prescriber (compared case-insensitively). A recipient
    ``<INS>@patient.mssante.fr`` counts as the patient."""
    found = {a.strip().strip("<>").casefold() for a in addresses}
    norm = {k: (v or "").strip().strip("<>").casefold() for k, v in (("gp", gp), ("p", prescriber))}
    me = (sender or "").strip().strip("<>").casefold()
    return RecipientKinds(
        gp=bool(norm["gp"]) and norm["gp"] in found,
        prescriber=bool(norm["p"]) and norm["p"] in found,
        patient=any(a.rpartition("@")[2] == PATIENT_DOMAIN for a in found),
        sender_is_gp=bool(me) and me == norm["gp"],
        sender_is_prescriber=bool(me) and me == norm["p"],
        has_prescriber=has_prescriber,
        patient_has_mes=patient_has_mes,
        hospital_stay=hospital_stay,
    )


def _join(labels: Sequence[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " et " + labels[-1]


def apply_policy(policy: Policy, missing: Sequence[MissingRecipient]) -> Decision:
    """The decision for a BAL whose legal-recipients policy is `policy`."""
    if policy not in POLICIES:
        raise ValueError(f"unknown legal-recipients policy {policy!r}; expected {POLICIES}")
    if not missing:
        return Decision(True, [])
    by_doc: dict[str, list[MissingRecipient]] = {}
    for item in missing:
        by_doc.setdefault(item.document.id, []).append(item)
    notices: list[str] = []
    for items in by_doc.values():
        doc, who = items[0].document, _join([i.label for i in items])
        plural = len(items) > 1
        fact = (
            f"« {doc.label} » relève de l'arrêté du 26 avril 2022 : "
            f"{who} {'doivent' if plural else 'doit'} en être "
            f"{'destinataires' if plural else 'destinataire'}"
        )
        if policy == "inform":
            notices.append(f"Pour information : {fact}.")
        elif policy == "warn":
            notices.append(f"Attention : {fact}. L'envoi reste possible.")
        else:
            add = "ces destinataires" if plural else "ce destinataire"
            notices.append(
                f"Envoi bloqué : {fact}. Ajoutez {add} ou demandez à l'administrateur "
                "de la BAL de modifier sa politique."
            )
    return Decision(policy != "require", notices)
