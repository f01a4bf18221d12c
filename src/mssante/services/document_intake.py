"""Receiving document messages (issue 6): read, index, and report integration failures.

- `read_document_message` finds the ``IHE_XDM.ZIP`` attachment in any case (R36), reads it in
  lenient mode through `formats.xdm` (hostile archives and XML are refused there, as a whole),
  validates each CDA with the XSD and the volet schematron when a `CdaValidator` is given,
  extracts the CDA headers and checks the MSSanté headers (R21: anomalies are listed, never
  fatal). The patient is the ``patientId`` of METADATA.XML, never the subject (R43). It never
  raises on what the message holds: a refused package is reported with its reason.
- `DocumentIndexer` writes one ``documents`` row per received document at local delivery time
  (patient INS, type, date…), so a mailbox can be searched by patient.
- `integration_failure_mdn` (R44): the MDN ``processed/Error: <code>^<label>`` when the
  original asked for one (``Disposition-Notification-To``), otherwise a standard mail; both
  with the subject ``[KO Intégration système !][<code>] XDM/1.0/DDM+…`` and the original
  ``IHE_XDM.ZIP``/PDF attached again. An APP mailbox answers so when it receives a document
  message it cannot integrate; `integration_error_code` maps the problems to 900–906.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import json
import logging
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage, Message
from email.utils import format_datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from mssante.domain.documents import (
    SLOT_VALUE_SETS,
    Anomaly,
    check_received_headers,
    parse_codecda,
    strip_subject_prefix,
    value_sets,
)
from mssante.formats.cda import CdaError, CdaHeader, extract_header, has_ins_with_traits, parse_cda
from mssante.formats.cda_validation import CdaValidator, SchematronError
from mssante.formats.mdn import (
    KO_PREFIX,
    build_mdn,
    document_attachments,
    integration_error,
    should_send_mdn,
)
from mssante.formats.mime import header_section, header_value
from mssante.formats.xdm import REFUSALS, XdmPackage, find_xdm_attachment, read_xdm
from mssante.formats.xdm_metadata import Code as XdsCode
from mssante.formats.xdm_metadata import Problem, parse_patient_id
from mssante.storage.database import utcnow
from mssante.storage.schema import documents, envelopes, folders, mailboxes, messages

log = logging.getLogger("mssante.documents")
_XDM_NAME = re.compile(rb"(?i)ihe_xdm\.zip")
_XML_TYPES = ("text/xml", "application/xml", "application/hl7-v3+xml", "application/hl7-cda+xml")
_TS = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(?:\.\d+)?([+-]\d{4})?$")
# Problem codes → integration error codes of HL7-LPS (SPEC §2, R44); the rest is 906.
_NO_INS = {"missing-patient-id", "bad-patient-id", "patient-id-not-ins", "cda-no-ins"}
_INS_MISMATCH = {"patient-id-mismatch", "ins-mismatch"}
_INS_INCOMPLETE = {"ins-incomplete"}


@dataclass(frozen=True)
class ReceivedDocument:
    """One document of a received package, with its XDS metadata and CDA header."""

    entry_id: str
    path: str
    mime_type: str
    type_code: str | None
    type_display: str
    title: str
    format_code: str | None
    creation_time: str
    header: CdaHeader | None = None
    problems: tuple[Problem, ...] = ()

    @property
    def document_date(self) -> datetime | None:
        """The CDA ``effectiveTime``, else the XDS ``creationTime``, as a UTC datetime."""
        ts = self.header.effective_time if self.header else None
        return hl7_datetime(ts) or hl7_datetime(self.creation_time)


@dataclass(frozen=True)
class ReceivedDocuments:
    """What a received message carries: ``has_xdm`` false for an ordinary message."""

    has_xdm: bool
    subject: str = ""  # as shown to users (R41: without the XDM/1.0/DDM+ prefix)
    attachment_name: str | None = None
    patient_ins: str | None = None
    patient_oid: str | None = None
    documents: tuple[ReceivedDocument, ...] = ()
    warnings: tuple[Problem, ...] = ()
    problems: tuple[Problem, ...] = ()
    refused: Problem | None = None
    anomalies: tuple[Anomaly, ...] = ()
    package: XdmPackage | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.has_xdm and self.refused is None and not self.problems


def hl7_datetime(ts: str | None) -> datetime | None:
    """An HL7 TS / XDS DTM (``YYYYMMDD[HHMM[SS]][±ZZZZ]``) as a UTC datetime; None if bad.
    Without an offset the time is read as UTC (XDS DTM values are UTC)."""
    match = _TS.match((ts or "").strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    zone = UTC
    if offset:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:])))
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError:
        return None
    return moment.replace(tzinfo=zone).astimezone(UTC)


def has_xdm_attachment(raw: bytes) -> bool:
    """Cheap test before any parsing: does ``IHE_XDM.ZIP`` appear anywhere, in any case?"""
    return _XDM_NAME.search(raw) is not None


def check_code(slot: str, code: XdsCode) -> str | None:
    """R38 code checker for `read_xdm`: the CI-SIS value set of the slot (other slots, such as
    ``contentTypeCode`` or ``eventCodeList``, have none published here and pass)."""
    return value_sets().check(slot, code) if slot in SLOT_VALUE_SETS else None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, UnicodeError):  # malformed RFC 2231 parameters
        return None
    return str(name) if name is not None else None


def _check_cda(
    doc: ReceivedDocument, content: bytes, ins: str | None, validator: CdaValidator | None
) -> tuple[ReceivedDocument, list[Problem]]:
    """Parse, validate and compare with the metadata patient one CDA; (document, warnings)."""
    where, problems, warnings = doc.entry_id, list[Problem](), list[Problem]()
    try:
        root = parse_cda(content)
        header = extract_header(root)
    except CdaError as exc:
        return replace(doc, problems=(Problem("cda-refused", str(exc), where),)), []
    patient = header.patient
    if patient is None or not patient.ins:
        problems.append(Problem("cda-no-ins", "no INS in recordTarget/patientRole", where))
    elif ins is not None and patient.ins != ins:
        problems.append(Problem("ins-mismatch", "the CDA INS is not the patientId's", where))
    elif not has_ins_with_traits(header):
        problems.append(Problem("ins-incomplete", "INS without its four traits", where))
    if doc.type_code and header.code and header.code.code != doc.type_code:
        problems.append(
            Problem("type-code-mismatch", f"CDA code {header.code.code} ≠ {doc.type_code}", where)
        )
    if validator is not None:
        try:
            for issue in validator.validate_xsd(root):
                kind = "cda-xsd" if issue.severity == "error" else "cda-xsd-warning"
                target = problems if issue.severity == "error" else warnings
                target.append(Problem(kind, f"{issue.location}: {issue.message}", where))
            report = validator.check_schematron(root)
            for issue in report.issues:
                target = problems if issue.severity == "error" else warnings
                target.append(Problem("cda-schematron", f"{issue.rule_id}: {issue.message}", where))
        except (SchematronError, OSError) as exc:
            warnings.append(Problem("validation-unavailable", str(exc), where))
    return replace(doc, header=header, problems=tuple(problems)), warnings


def _header_anomalies(msg: Message, docs: list[ReceivedDocument]) -> list[Anomaly]:
    anomalies = check_received_headers(msg)
    headers = [h for h in (d.header for d in docs) if h is not None]
    codecda = msg.get("X-MSS-CODECDA")
    codes = [h.code.code for h in headers if h.code]
    if codecda is not None and codes and parse_codecda(str(codecda)) != codes:
        reason = f"X-MSS-CODECDA does not list the CDA codes {','.join(codes)} (R39)"
        anomalies.append(Anomaly("X-MSS-CODECDA", str(codecda), reason))
    ins = msg.get("X-MSS-INS")
    expected = "O" if any(has_ins_with_traits(h) for h in headers) else "N"
    if ins is not None and headers and str(ins).strip() in ("O", "N") and ins != expected:
        anomalies.append(Anomaly("X-MSS-INS", str(ins), f"the documents give {expected} (R40)"))
    return anomalies


def read_document_message(
    raw: bytes, *, validator: CdaValidator | None = None, lenient: bool = True
) -> ReceivedDocuments:
    """The documents of a received message (R36, R43, R21); never raises on its content."""
    try:
        return _read(raw, validator, lenient)
    except Exception as exc:  # noqa: BLE001 - hostile input must be reported, not raised
        reason = Problem("unreadable-message", f"{type(exc).__name__}: {exc}"[:300])
        return ReceivedDocuments(has_xdm=True, refused=reason, problems=(reason,))


def _read(raw: bytes, validator: CdaValidator | None, lenient: bool) -> ReceivedDocuments:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    subject = strip_subject_prefix(_decoded(msg.get("Subject")))
    parts = [p for p in msg.walk() if not p.is_multipart() and find_xdm_attachment(_filename(p))]
    if not parts:
        return ReceivedDocuments(has_xdm=False, subject=subject)
    warnings: list[Problem] = []
    if len(parts) > 1:
        warnings.append(Problem("multiple-xdm", f"{len(parts)} IHE_XDM.ZIP; the first is read"))
    base: dict[str, Any] = {
        "has_xdm": True,
        "subject": subject,
        "attachment_name": _filename(parts[0]),
    }
    payload = parts[0].get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        refused = Problem("empty-attachment", "the IHE_XDM.ZIP attachment has no content")
        anomalies = tuple(check_received_headers(msg))
        return ReceivedDocuments(**base, refused=refused, problems=(refused,), anomalies=anomalies)
    try:
        package = read_xdm(payload, lenient=lenient, code_checker=check_code)
    except REFUSALS as exc:
        refused = Problem(exc.reason_code, exc.message, getattr(exc, "member", None) or "")
        anomalies = tuple(check_received_headers(msg))
        return ReceivedDocuments(**base, refused=refused, problems=(refused,), anomalies=anomalies)
    warnings += package.warnings
    problems = list(package.problems)
    pid = parse_patient_id(package.submission.patient_id) or parse_patient_id(
        package.submission.patient_id, strict=False
    )
    ins, oid = pid if pid else (None, None)
    if not package.documents:
        problems.append(Problem("no-document", "the package holds no readable document"))
    docs: list[ReceivedDocument] = []
    for item in package.documents:
        entry = item.entry
        doc = ReceivedDocument(
            entry_id=entry.entry_id,
            path=item.path,
            mime_type=entry.mime_type,
            type_code=entry.type_code.code if entry.type_code else None,
            type_display=entry.type_code.display if entry.type_code else "",
            title=entry.title,
            format_code=entry.format_code.code if entry.format_code else None,
            creation_time=entry.creation_time,
        )
        mime = entry.mime_type.split(";")[0].strip().lower()
        if mime in _XML_TYPES or item.content.lstrip()[:1] == b"<":
            doc, found = _check_cda(doc, item.content, ins, validator)
            warnings += found
            problems += doc.problems
        docs.append(doc)
    return ReceivedDocuments(
        **base,
        patient_ins=ins,
        patient_oid=oid,
        documents=tuple(docs),
        warnings=tuple(warnings),
        problems=tuple(problems),
        anomalies=tuple(_header_anomalies(msg, docs)),
        package=package,
    )


def _decoded(value: object) -> str:
    if value is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        text = str(value)
    return " ".join(text.split())


def integration_error_code(received: ReceivedDocuments) -> str | None:
    """The HL7-LPS integration error (900–906, R44) a consumer answers, or None if none."""
    if not received.has_xdm:
        return None
    if received.refused is not None:
        return "906"
    found = {p.code for p in (*received.problems, *received.warnings)}
    for codes, error in ((_NO_INS, "903"), (_INS_MISMATCH, "904"), (_INS_INCOMPLETE, "905")):
        if found & codes:
            return error
    return "906" if received.problems else None


def failure_report_target(original: bytes, envelope_sender: str | None) -> str | None:
    """Where an integration failure goes: the ``Disposition-Notification-To`` address when
    the original asks for a MDN, else the envelope sender; None for automatic messages
    (``Auto-Submitted``, reports, null sender: RFC 3834 §2, RFC 8098 §2.1)."""
    headers = header_section(original)
    auto = (header_value(headers, "Auto-Submitted") or "no").strip().lower()
    kind = (header_value(headers, "Content-Type") or "").strip().lower()
    if auto != "no" or kind.startswith("multipart/report") or not envelope_sender:
        return None
    decision = should_send_mdn(headers)
    return decision.to[0] if decision.send and len(decision.to) == 1 else envelope_sender


def integration_failure_mdn(
    original: bytes,
    code: int | str,
    final_recipient: str,
    *,
    message_id_domain: str,
    reporting_ua: str = "mssante",
    to_address: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """R44: the report of a document message that could not be integrated (code 900–906).

    A MDN (``processed/Error: <code>^<label>``) when the original has
    ``Disposition-Notification-To``, else a standard mail to `to_address`; both with the
    subject ``[KO Intégration système !][<code>] …`` and the documents attached again.
    """
    error = integration_error(code)
    headers = header_section(original)
    attachments = document_attachments(original)
    if should_send_mdn(headers).to:
        return build_mdn(
            headers,
            reporting_ua=reporting_ua,
            final_recipient=final_recipient,
            message_id_domain=message_id_domain,
            error=error,
            to_address=to_address,
            attachments=attachments,
            now=now,
        )
    if to_address is None:
        raise ValueError("no Disposition-Notification-To: pass to_address")
    now = now or datetime.now(UTC)
    subject = _decoded(header_value(headers, "Subject"))
    original_id = (header_value(headers, "Message-ID") or "").strip()
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = final_recipient
    msg["To"] = to_address
    msg["Subject"] = f"{KO_PREFIX}[{error[0]}] {subject}".strip()
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<ko.{int(now.timestamp())}.{secrets.token_hex(12)}@{message_id_domain}>"
    if re.fullmatch(r"<[^<>\s]{1,900}>", original_id):
        msg["In-Reply-To"] = original_id
        msg["References"] = original_id
    msg["Auto-Submitted"] = "auto-replied"
    text = (
        "Bonjour,\n\nLe message ci-dessous n'a pas pu être intégré automatiquement dans le "
        f"logiciel du destinataire ({final_recipient}).\n\n"
        f"Code d'erreur : {error[0]}\nMotif : {error[1]}\n"
        + (f"Objet du message : {subject}\n" if subject else "")
        + (f"Identifiant du message : {original_id}\n" if original_id else "")
        + "\nLes pièces jointes du message d'origine sont renvoyées avec ce courriel.\n"
    )
    msg.set_content(text, charset="UTF-8", cte="quoted-printable")
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=item.filename)
    return msg.as_bytes()


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def _problems_json(items: tuple[Problem, ...] | list[Problem]) -> str:
    return json.dumps(
        [{"code": p.code, "message": p.message[:500], "where": p.where[:200]} for p in items][:50],
        ensure_ascii=False,
    )


class DocumentIndexer:
    """Indexes the documents of messages delivered to local mailboxes (table ``documents``)."""

    def __init__(
        self,
        *,
        message_id_domain: str,
        reporting_ua: str = "mssante",
        validator: CdaValidator | None = None,
    ) -> None:
        self.message_id_domain = message_id_domain
        self.reporting_ua = reporting_ua
        self.validator = validator
        self._last: tuple[bytes, ReceivedDocuments] | None = None

    def read(self, raw: bytes) -> ReceivedDocuments:
        """`read_document_message`, once per message even with several local recipients."""
        last = self._last
        if last is not None and last[0] is raw:
            return last[1]
        received = read_document_message(raw, validator=self.validator)
        self._last = (raw, received)
        return received

    def index_message(self, conn: Connection, message_row_id: int, raw: bytes) -> ReceivedDocuments:
        """Write the ``documents`` rows of one stored message (none without XDM)."""
        received = self.read(raw)
        if not received.has_xdm:
            return received
        place = conn.execute(
            select(messages.c.folder_id, folders.c.mailbox_id)
            .join(folders, folders.c.id == messages.c.folder_id)
            .where(messages.c.id == message_row_id)
        ).one()
        common = {
            "message_id": message_row_id,
            "folder_id": place.folder_id,
            "mailbox_id": place.mailbox_id,
            "patient_ins": _clip(received.patient_ins, 32),
            "patient_oid": _clip(received.patient_oid, 64),
            "indexed_at": utcnow(),
        }
        package_problems = [p for p in received.problems if not p.where] + (
            [received.refused]
            if received.refused and received.refused not in received.problems
            else []
        )
        rows = [
            {
                **common,
                "type_code": _clip(doc.type_code, 64),
                "type_display": _clip(doc.type_display, 255),
                "document_date": doc.document_date,
                "title": _clip(doc.title, 500),
                "format_code": _clip(doc.format_code, 255),
                "problems": _problems_json(
                    package_problems + [p for p in received.problems if p.where == doc.entry_id]
                ),
            }
            for doc in received.documents
        ] or [  # a refused package: one row tells the mailbox why nothing was indexed
            {
                **common,
                "type_code": None,
                "type_display": None,
                "document_date": None,
                "title": None,
                "format_code": None,
                "problems": _problems_json(list(received.problems)),
            }
        ]
        conn.execute(insert(documents), rows)
        for anomaly in received.anomalies:  # R21: logged, never rejected
            log.warning(
                "MSSanté header anomaly %s=%r: %s",
                anomaly.header,
                anomaly.value[:80],
                anomaly.reason,
            )
        return received

    def on_local_delivery(
        self,
        conn: Connection,
        *,
        mailbox_id: int,
        folder: str,
        uid: int,
        raw: bytes,
        envelope_id: int | None,
        recipient: str,
    ) -> tuple[str, bytes] | None:
        """Index a message just appended to a local folder. For an APP mailbox that cannot
        integrate the package (R44), return the failure report to send: ``(to, data)``."""
        row_id = conn.execute(
            select(messages.c.id)
            .join(folders, folders.c.id == messages.c.folder_id)
            .where(
                folders.c.mailbox_id == mailbox_id,
                folders.c.name == folder,
                messages.c.uid == uid,
            )
        ).scalar_one()
        received = self.index_message(conn, int(row_id), raw)
        code = integration_error_code(received)
        if code is None:
            return None
        box_type = conn.execute(
            select(mailboxes.c.type).where(mailboxes.c.id == mailbox_id)
        ).scalar_one()
        if box_type != "APP":
            return None
        sender = None
        if envelope_id is not None:
            sender = conn.execute(
                select(envelopes.c.mail_from).where(envelopes.c.id == envelope_id)
            ).scalar_one_or_none()
        target = failure_report_target(raw, sender)
        if target is None:
            return None
        data = integration_failure_mdn(
            raw,
            code,
            recipient,
            message_id_domain=self.message_id_domain,
            reporting_ua=self.reporting_ua,
            to_address=target,
        )
        return target, data
