"""Document messages (issue 6): compose them, read them back, index them on delivery.

`compose_document_message` turns CDA R2 documents, or a PDF that is first wrapped into a CDA
level 1 document, into an MSSanté mail (SPEC §2, §7):

- the ``IHE_XDM.ZIP`` attachment built by `services.document_package.build_package`, its XDS
  metadata derived from the CDA headers, every code checked against its CI-SIS value set
  (R38; a wrong code is refused with a `RuleViolation` naming the slot);
- ``X-MSS-CODECDA`` (R39), ``X-MSS-INS`` (R40), ``X-MSS-NIL``, the subject
  ``XDM/1.0/DDM+<libellé> <NOM> <prénom> <JJ/MM/AAAA>`` (R41), a UTF-8 text part (R26),
  ``Message-ID`` and ``Date`` (R27), and the human PDF copy named by R42 when there is a PDF;
- the legal-recipients policy of the arrêté du 26 avril 2022 (`domain.legal_recipients`):
  French ``notices``, and ``allowed`` false under ``require`` when a mandatory recipient is
  missing. A use case (`domain.use_cases`) gives default facility and practice codes and a
  notice when a document type is not one of its own.

Receiving (`read_document_message`, `DocumentIndexer`, `integration_failure_mdn`) lives in
`services.document_intake` and is re-exported here. No SMTP, HTTP or database in this module.
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from mssante.domain.documents import SUBJECT_PREFIX, document_subject
from mssante.domain.errors import RuleViolation
from mssante.domain.legal_recipients import (
    Policy,
    apply_policy,
    missing_recipients,
    recipient_kinds,
)
from mssante.domain.use_cases import use_case as find_use_case
from mssante.formats.cda import hl7_date
from mssante.services.document_intake import (
    DocumentIndexer,
    ReceivedDocument,
    ReceivedDocuments,
    failure_report_target,
    has_xdm_attachment,
    integration_error_code,
    integration_failure_mdn,
    read_document_message,
)
from mssante.services.document_package import (
    ComposedDocument,
    Package,
    PatientIdentity,
    SenderIdentity,
    build_package,
)

__all__ = [
    "ComposedDocument",
    "ComposedMessage",
    "DocumentIndexer",
    "Package",
    "PatientIdentity",
    "ReceivedDocument",
    "ReceivedDocuments",
    "SenderIdentity",
    "build_package",
    "compose_document_message",
    "failure_report_target",
    "has_xdm_attachment",
    "integration_error_code",
    "integration_failure_mdn",
    "read_document_message",
]


@dataclass(frozen=True)
class ComposedMessage:
    data: bytes  # RFC 5322, CRLF, ready for DATA
    message_id: str
    subject: str
    package: Package
    headers: dict[str, str]  # every MSSanté header set (X-MSS-*)
    notices: tuple[str, ...]  # French, from the legal-recipients policy and the use case
    allowed: bool

    @property
    def documents(self) -> tuple[ComposedDocument, ...]:
        return self.package.documents


def _one_line(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise RuleViolation(f"{what}: line breaks are not allowed")
    return value.strip()


def compose_document_message(
    *,
    sender_address: str,
    sender_identity: SenderIdentity,
    recipients: Sequence[str],
    documents: Sequence[tuple[bytes, str]],
    nil: str,
    patient: PatientIdentity | None = None,
    type_code: str | None = None,
    title: str | None = None,
    confidentiality: str | None = None,
    healthcare_facility_type: str | None = None,
    practice_setting: str | None = None,
    text_body: str = "",
    use_case: str | None = None,
    legal_policy: Policy = "inform",
    gp: str | None = None,
    prescriber: str | None = None,
    has_prescriber: bool | None = None,
    patient_has_mes: bool = True,
    hospital_stay: bool = False,
    subject_label: str | None = None,
    reply_to: str | None = None,
    disposition_notification_to: str | None = None,
    now: datetime | None = None,
) -> ComposedMessage:
    """An MSSanté document message (SPEC §2, §7; R26, R27, R39–R42, R45): see the module."""
    now = now or datetime.now(UTC)
    if not recipients:
        raise RuleViolation("recipients: a message needs at least one recipient")
    nil = _one_line(nil, "X-MSS-NIL")
    if not nil:
        raise RuleViolation("X-MSS-NIL: the product reference is required on every message")
    notices: list[str] = []
    case = None
    if use_case is not None:
        try:
            case = find_use_case(use_case)
        except KeyError:
            raise RuleViolation(f"use_case: unknown use case {use_case!r}") from None
        party = next((p for p in case.senders if p.facility_type and p.practice_setting), None)
        if party is not None:
            healthcare_facility_type = healthcare_facility_type or party.facility_type
            practice_setting = practice_setting or party.practice_setting
    package = build_package(
        sender_address=sender_address,
        sender_identity=sender_identity,
        documents=documents,
        patient=patient,
        type_code=type_code,
        title=title,
        confidentiality=confidentiality,
        healthcare_facility_type=healthcare_facility_type,
        practice_setting=practice_setting,
        recipients=recipients,
        now=now,
    )
    types = list(dict.fromkeys(d.type_code for d in package.documents))
    if case is not None:
        notices += [
            f"Le type de document {t} n'est pas prévu pour le cas d'usage « {case.label} »."
            for t in types
            if t not in case.type_codes
        ]
    kinds = recipient_kinds(
        recipients,
        gp=gp,
        prescriber=prescriber,
        sender=sender_address,
        has_prescriber=prescriber is not None if has_prescriber is None else has_prescriber,
        patient_has_mes=patient_has_mes,
        hospital_stay=hospital_stay,
    )
    missing = [m for t in types for m in missing_recipients(t, kinds, on=now.date())]
    decision = apply_policy(legal_policy, missing)
    notices += decision.notices
    label = subject_label or package.documents[0].type_display or package.documents[0].title
    pat = package.patient
    birth = hl7_date(pat.birth_time)
    if pat.birth_family and birth is not None:
        subject = document_subject(label, pat.birth_family, pat.first_given or "", birth)
    else:
        subject = SUBJECT_PREFIX + " ".join(label.split())
    headers = {"X-MSS-NIL": nil, **{k: v for k, v in package.headers.items() if v}}
    domain = sender_address.rpartition("@")[2]
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = formataddr((_one_line(sender_identity.name, "sender name"), sender_address))
    msg["To"] = ", ".join(_one_line(r, "recipient") for r in recipients)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    message_id = make_msgid(domain=domain)
    msg["Message-ID"] = message_id
    if reply_to:
        msg["Reply-To"] = _one_line(reply_to, "Reply-To")
    if disposition_notification_to:
        msg["Disposition-Notification-To"] = _one_line(disposition_notification_to, "DNT")
    for name, value in headers.items():
        msg[name] = value
    body = text_body or (
        "Bonjour,\n\nVeuillez trouver ci-joint "
        + ("les documents" if len(package.documents) > 1 else "le document")
        + f" : {', '.join(d.title or d.type_display for d in package.documents)}.\n"
    )
    msg.set_content(body, charset="UTF-8", cte="quoted-printable")
    msg.add_attachment(package.xdm, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    for name, pdf in package.pdfs:
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
    return ComposedMessage(
        data=msg.as_bytes(),
        message_id=message_id,
        subject=subject,
        package=package,
        headers=headers,
        notices=tuple(notices),
        allowed=decision.allowed,
    )
