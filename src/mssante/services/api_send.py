"""Sending through the integration API (issue 7): compose, check, accept — like SMTP.

The use case follows the SMTP submission path on purpose: `DeliveryService.check_sender`
(the principal may send as the BAL, which accepts mail), `check_recipient` for each address
(local BAL, or a domain of the trust space, R4), then `accept` with ``Role.SUBMISSION`` and the
principal, so the Sent copy, the DSN requests (RFC 3461 NOTIFY), the traces and the relay
are exactly those of a message submitted on port 587.

Composition: a plain message is a UTF-8 text part (R26) with a ``Message-ID`` and ``Date``
(R27) and the attachments; with documents, `compose_document_message` builds the IHE XDM
package, the ``X-MSS-*`` headers and the ``XDM/1.0/DDM+…`` subject (R39–R41) under the
legal-recipients policy, and the attachments are added after it. ``read_receipt`` adds
``Disposition-Notification-To`` (RFC 8098 §2.1).

Size limits (R28, R29): the composed message must fit the limit of the sender's BAL kind,
and a message towards ``@patient.mssante.fr`` must not exceed 25 MiB; both are checked before
anything is stored or queued.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any, Protocol

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from mssante.domain.errors import DomainError, MessageTooLarge, RuleViolation
from mssante.domain.legal_recipients import PATIENT_DOMAIN, Policy
from mssante.domain.mailboxes import MailboxType, normalise_address
from mssante.formats.xdm_metadata import INS_NIR_OID
from mssante.services.delivery import DeliveryService
from mssante.services.document_package import PatientIdentity, SenderIdentity
from mssante.services.documents import compose_document_message
from mssante.services.idempotency import IdempotencyService
from mssante.services.mailboxes import Mailbox, MailboxService, Principal
from mssante.services.ports import AcceptedRecipient, IncomingMessage, Role
from mssante.storage.database import Database, as_utc
from mssante.storage.schema import deliveries, envelopes, professionals, structures

_CTYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_MSGID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,900}>")
_STATUS = {"queued": "queued", "delivered": "delivered", "relayed": "relayed", "failed": "failed"}


class Content(Protocol):
    """An attachment's bytes: in memory (JSON) or a spooled temporary file (multipart)."""

    def read_all(self) -> bytes: ...


@dataclass(frozen=True)
class OutgoingFile:
    filename: str
    content_type: str
    size: int
    sha256: str
    content: Content
    type_code: str | None = None  # documents only
    title: str | None = None


@dataclass(frozen=True)
class PatientData:
    ins: str
    ins_oid: str = INS_NIR_OID
    family: str = ""
    given: str = ""
    birth_date: date | None = None
    sex: str = ""


@dataclass(frozen=True)
class SendCommand:
    to: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str = ""
    in_reply_to: str | None = None
    attachments: list[OutgoingFile] = field(default_factory=list)
    documents: list[OutgoingFile] = field(default_factory=list)
    patient: PatientData | None = None
    use_case: str | None = None
    notify: list[str] | None = None  # success, failure, delay; [] = never
    read_receipt: bool = False
    nil: str | None = None
    healthcare_facility_type: str | None = None
    practice_setting: str | None = None
    confidentiality: str | None = None

    def recipients(self) -> list[str]:
        return list(dict.fromkeys(normalise_address(a) for a in self.to + self.cc + self.bcc))


@dataclass(frozen=True)
class SendLimits:
    per_kind: dict[str, int]  # PER/ORG/APP/CAB → bytes
    patient_max_bytes: int
    max_recipients: int
    nil: str
    legal_policy: Policy


@dataclass(frozen=True)
class SendResult:
    status_code: int
    answer: dict[str, Any]
    replayed: bool = False


class RecipientRefused(DomainError):
    """One recipient was refused: `cause` is the domain error of `check_recipient`."""

    code = "recipient-refused"

    def __init__(self, address: str, cause: DomainError) -> None:
        super().__init__(f"{address}: {cause.message}")
        self.address = address
        self.cause = cause


class PatientMessageTooLarge(MessageTooLarge):
    """R29: more than 25 MiB towards a @patient.mssante.fr address."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} octets towards a patient address; limit {limit}")
        self.size = size
        self.limit = limit


class SizeLimitExceeded(MessageTooLarge):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} octets; limit {limit}")
        self.size = size
        self.limit = limit


class LegalRecipientsMissing(RuleViolation):
    """Under the ``require`` policy a mandatory recipient is missing (French `notices`)."""

    def __init__(self, notices: Sequence[str]) -> None:
        super().__init__("legal recipients missing")
        self.notices = tuple(notices)


class IdempotencyConflict(DomainError):
    """The key was used with another request."""

    code = "idempotency-conflict"


def is_patient(address: str) -> bool:
    return address.rpartition("@")[2].lower() == PATIENT_DOMAIN


def _line(value: str, what: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise RuleViolation(f"{what}: line breaks are not allowed")
    return value.strip()


def _ctype(value: str) -> tuple[str, str]:
    kind = value.split(";")[0].strip().lower()
    kind = kind if _CTYPE.fullmatch(kind) else "application/octet-stream"
    main, _, sub = kind.partition("/")
    return main, sub


class ApiSendService:
    def __init__(
        self,
        db: Database,
        mailboxes: MailboxService,
        delivery: DeliveryService,
        idempotency: IdempotencyService,
        limits: SendLimits,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.mailboxes = mailboxes
        self.delivery = delivery
        self.idempotency = idempotency
        self.limits = limits
        self.wake = wake

    def limit_for(self, box_type: str, recipients: Sequence[str]) -> tuple[int, bool]:
        """(bytes, towards a patient?) for a message of this BAL kind to `recipients`."""
        limit = self.limits.per_kind.get(box_type, min(self.limits.per_kind.values()))
        if any(is_patient(r) for r in recipients):
            return min(limit, self.limits.patient_max_bytes), True
        return limit, False

    def replay(self, mailbox: str, key: str, digest: str) -> SendResult | None:
        stored = self.idempotency.lookup(mailbox, key)
        if stored is None:
            return None
        if stored.request_digest != digest:
            raise IdempotencyConflict(f"key {key[:40]!r} was used for another request")
        return SendResult(stored.status_code, stored.answer, replayed=True)

    def send(
        self,
        principal: Principal,
        address: str,
        command: SendCommand,
        *,
        peer: str,
        key: str | None = None,
        digest: str = "",
    ) -> SendResult:
        """Send `command` as `address`; with `key`, at most once (see services.idempotency)."""
        if key is not None:
            replayed = self.replay(address, key, digest)
            if replayed is not None:
                return replayed
        self.delivery.check_sender(Role.SUBMISSION, address, principal, None)
        box = self.mailboxes.get(address)
        recipients = command.recipients()
        if not recipients:
            raise RuleViolation("to: at least one recipient is required")
        if len(recipients) > self.limits.max_recipients:
            raise RuleViolation(f"at most {self.limits.max_recipients} recipients")
        accepted = [self._recipient(r, command.notify) for r in recipients]
        if box.type is MailboxType.CAB and any(is_patient(r) for r in recipients):
            raise RuleViolation("R33: a CAB BAL cannot write to a patient")  # SPEC R33
        data, notices = self._compose(principal, box, command, recipients)
        limit, patient = self.limit_for(box.type.value, recipients)
        if len(data) > limit:
            if patient and limit == self.limits.patient_max_bytes:
                raise PatientMessageTooLarge(len(data), limit)
            raise SizeLimitExceeded(len(data), limit)
        message = IncomingMessage(
            role=Role.SUBMISSION,
            mail_from=address,
            recipients=accepted,
            data=data,
            peer=peer,
            helo="api",
            principal=principal,
        )

        def within(conn: Connection, queue_id: str, envelope_id: int) -> None:
            if key is not None:
                answer = self._answer(conn, address, queue_id, key, notices)
                self.idempotency.record(conn, address, key, digest, queue_id, 202, answer)

        try:
            queue_id = self.delivery.accept(message, within)
        except IntegrityError:
            # The same key committed concurrently (nothing of ours was recorded).
            if key is None:
                raise
            replayed = self.replay(address, key, digest)
            if replayed is None:
                raise
            return replayed
        if self.wake is not None:
            self.wake()
        with self.db.read() as conn:
            answer = self._answer(conn, address, queue_id, key, notices)
        return SendResult(202, answer)

    def _recipient(self, address: str, notify: list[str] | None) -> AcceptedRecipient:
        try:
            accepted = self.delivery.check_recipient(Role.SUBMISSION, address)
        except DomainError as exc:
            raise RecipientRefused(address, exc) from None
        if notify is None:
            return accepted
        value = ",".join(n.upper() for n in dict.fromkeys(notify)) if notify else "NEVER"
        return replace(accepted, notify=value)  # RFC 3461 §4.1

    @staticmethod
    def _answer(
        conn: Connection, address: str, queue_id: str, key: str | None, notices: Sequence[str]
    ) -> dict[str, Any]:
        """The MessageStatus of a send just accepted (the delivery status API's shape)."""
        envelope = conn.execute(
            select(envelopes.c.id, envelopes.c.message_id, envelopes.c.received_at).where(
                envelopes.c.queue_id == queue_id
            )
        ).one()
        rows = conn.execute(
            select(deliveries.c.recipient, deliveries.c.status, deliveries.c.updated_at)
            .where(deliveries.c.envelope_id == envelope.id)
            .order_by(deliveries.c.id)
        ).all()
        submitted = as_utc(envelope.received_at) or datetime.now(UTC)
        answer: dict[str, Any] = {
            "id": queue_id,
            "mailbox": address,
            "message_id": envelope.message_id,
            "submitted_at": submitted.isoformat().replace("+00:00", "Z"),
            "recipients": [
                {
                    "address": r.recipient,
                    "status": _STATUS.get(r.status, "queued"),
                    "updated_at": (as_utc(r.updated_at) or submitted)
                    .isoformat()
                    .replace("+00:00", "Z"),
                }
                for r in rows
            ],
            "notices": list(notices),
        }
        if key is not None:
            answer["idempotency_key"] = key
        return answer

    # -- composing ------------------------------------------------------------------------

    def _identity(self, principal: Principal, box: Mailbox) -> SenderIdentity:
        id_nat_ps = box.id_nat_ps or principal.id_nat_ps or ""
        with self.db.read() as conn:
            person = (
                conn.execute(
                    select(professionals).where(professionals.c.id_nat_ps == id_nat_ps)
                ).first()
                if id_nat_ps
                else None
            )
            org = (
                conn.execute(
                    select(structures.c.name).where(structures.c.id_nat_struct == box.id_nat_struct)
                ).scalar_one_or_none()
                if box.id_nat_struct
                else None
            )
        display = "" if box.type is MailboxType.PER else (box.description or org or "")
        return SenderIdentity(
            id_nat_ps=id_nat_ps if person is not None else "",
            family=person.family_name if person is not None else "",
            given=person.given_name if person is not None else "",
            id_nat_struct=box.id_nat_struct or "",
            organisation=org or "",
            display_name=display,
            software="mssante API",
        )

    def _compose(
        self, principal: Principal, box: Mailbox, command: SendCommand, recipients: list[str]
    ) -> tuple[bytes, tuple[str, ...]]:
        identity = self._identity(principal, box)
        notices: tuple[str, ...] = ()
        if command.documents:
            msg, notices = self._documents(identity, box, command, recipients)
        else:
            msg = EmailMessage(policy=email.policy.SMTP)
            msg["From"] = formataddr((_line(identity.name, "sender name"), box.address))
            msg["Subject"] = _line(command.subject, "subject")
            msg["Date"] = format_datetime(datetime.now(UTC))
            msg["Message-ID"] = make_msgid(domain=box.address.rpartition("@")[2])
            if command.read_receipt:  # RFC 8098 §2.1
                msg["Disposition-Notification-To"] = box.address
            msg.set_content(command.text, charset="UTF-8", cte="quoted-printable")  # R26
        del msg["To"]
        if command.to:
            msg["To"] = ", ".join(normalise_address(a) for a in command.to)
        else:
            msg["To"] = "undisclosed-recipients:;"
        if command.cc:
            msg["Cc"] = ", ".join(normalise_address(a) for a in command.cc)
        if command.in_reply_to:  # R27: replies carry In-Reply-To and References
            ref = command.in_reply_to.strip()
            if not _MSGID.fullmatch(ref):
                raise RuleViolation("in_reply_to: not a Message-ID <…>")
            msg["In-Reply-To"] = ref
            msg["References"] = ref
        for item in command.attachments:
            main, sub = _ctype(item.content_type)
            name = _line(item.filename, "filename") or "piece-jointe"
            msg.add_attachment(item.content.read_all(), maintype=main, subtype=sub, filename=name)
        return msg.as_bytes(), notices

    def _documents(
        self,
        identity: SenderIdentity,
        box: Mailbox,
        command: SendCommand,
        recipients: list[str],
    ) -> tuple[EmailMessage, tuple[str, ...]]:
        patient = command.patient
        types = {d.type_code for d in command.documents if d.type_code}
        titles = {d.title for d in command.documents if d.title}
        composed = compose_document_message(
            sender_address=box.address,
            sender_identity=identity,
            recipients=recipients,
            documents=[(d.content.read_all(), d.content_type) for d in command.documents],
            nil=command.nil or self.limits.nil,
            patient=PatientIdentity(
                ins=patient.ins,
                ins_oid=patient.ins_oid,
                birth_family=patient.family,
                first_given=patient.given,
                birth_date=patient.birth_date,
                sex=patient.sex,
            )
            if patient is not None
            else None,
            type_code=types.pop() if len(types) == 1 else None,
            title=titles.pop() if len(titles) == 1 else None,
            confidentiality=command.confidentiality,
            healthcare_facility_type=command.healthcare_facility_type,
            practice_setting=command.practice_setting,
            text_body=command.text,
            use_case=command.use_case,
            legal_policy=self.limits.legal_policy,
            disposition_notification_to=box.address if command.read_receipt else None,
        )
        if not composed.allowed:
            raise LegalRecipientsMissing(composed.notices)
        parsed = email.message_from_bytes(composed.data, policy=email.policy.SMTP)
        assert isinstance(parsed, EmailMessage)
        return parsed, composed.notices
