"""Per-recipient delivery status of the messages our BALs send (issue 7 item 3).

The queue knows ``queued``, ``relayed``, ``delivered`` (local) and ``failed``
(``deliveries.status``). What comes back afterwards refines it, in ``recipient_status``:

* a DSN (RFC 3464; RFC 3461 §6.3 for success) delivered to the sender's BAL:
  ``delivered`` or ``failed`` with the Diagnostic-Code as reason and the Status as code;
* a MDN (RFC 8098) delivered to the sender's BAL: ``read`` (``displayed``), ``processed``,
  or ``processed_with_error`` with the MSSanté integration code 900–906 (SPEC §2 "PFI",
  R44: ``processed/Error: <code>^<label>`` or the subject ``[KO Intégration système !]
  [<code>]``).

Statuses only move forward along :data:`RANK`: a late ``relayed`` never hides the
``delivered`` of a DSN that raced it, a ``read`` never goes back to ``delivered``, and a
``failed`` gives way only to a later success. Every function here runs inside the caller's
transaction; each change emits one ``message.status`` webhook event for the sender's BAL
(services/webhooks.py), delivered after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from mssante.formats.dsn import parse_dsn, split_typed
from mssante.formats.mdn import INTEGRATION_ERRORS, parse_mdn
from mssante.formats.mime import header_section, header_value, message_id_of
from mssante.services import webhooks
from mssante.services.message_summary import message_summary, rfc3339
from mssante.services.ports import BlobStore
from mssante.storage.database import utcnow
from mssante.storage.schema import deliveries, envelopes, folders, messages
from mssante.storage.schema_api import api_idempotency
from mssante.storage.schema_webhooks import recipient_status
from mssante.storage.upsert import dialect_insert

log = logging.getLogger("mssante.delivery_status")

RANK: dict[str, int] = {
    "queued": 0,
    "relayed": 1,
    "failed": 2,
    "delivered": 3,
    "read": 4,
    "processed": 5,
    "processed_with_error": 6,
}
STATUSES = tuple(RANK)


@dataclass(frozen=True)
class StatusChange:
    delivery_id: int
    status: str
    reason: str | None = None
    code: str | None = None


def may_replace(current: str | None, new: str) -> bool:
    """Whether `new` may replace `current` (forward only along :data:`RANK`)."""
    return current is None or RANK[new] > RANK.get(current, -1)


def _clip(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value[:limit] or None


def record(conn: Connection, envelope_id: int, change: StatusChange) -> bool:
    """Store one recipient's new status if it moves forward; True when it changed.

    One upsert guarded by the rank: two transactions reporting on the same recipient at
    once (a DSN racing the relay result) serialise on the row and the higher rank wins.
    """
    base = dialect_insert(conn, recipient_status).values(
        delivery_id=change.delivery_id,
        envelope_id=envelope_id,
        status=change.status,
        rank=RANK[change.status],
        reason=_clip(change.reason, 1000),
        code=_clip(change.code, 16),
        updated_at=utcnow(),
    )
    excluded = base.excluded
    stmt = base.on_conflict_do_update(
        index_elements=[recipient_status.c.delivery_id],
        set_={
            "status": excluded.status,
            "rank": excluded.rank,
            "reason": excluded.reason,
            "code": excluded.code,
            "updated_at": excluded.updated_at,
        },
        where=recipient_status.c.rank < excluded.rank,
    ).returning(recipient_status.c.delivery_id)
    return conn.execute(stmt).first() is not None


def apply(conn: Connection, envelope_id: int, changes: Iterable[StatusChange]) -> bool:
    """Record several changes of one envelope and emit one ``message.status`` event if any
    moved forward."""
    changes = list(changes)
    if not changes:
        return False
    # One writer per message at a time (PostgreSQL; SQLite serialises writers anyway): the
    # MessageStatus of each event then includes every change committed before it, and the
    # events of a message get their sequence numbers in commit order.
    conn.execute(
        select(envelopes.c.id).where(envelopes.c.id == envelope_id).with_for_update()
    ).first()
    changed = False
    for change in changes:
        changed |= record(conn, envelope_id, change)
    if changed:
        emit_status(conn, envelope_id)
    return changed


def emit_status(
    conn: Connection, envelope_id: int, sender: str | None = None, queue_id: str | None = None
) -> None:
    """The ``message.status`` event of an envelope sent from one of our BALs (`sender` and
    `queue_id` save a query when the caller knows the envelope is a submission)."""
    if sender is None or queue_id is None:
        env = conn.execute(
            select(envelopes.c.queue_id, envelopes.c.mail_from, envelopes.c.origin).where(
                envelopes.c.id == envelope_id
            )
        ).first()
        if env is None or env.origin != "submission" or not env.mail_from:
            return
        sender, queue_id = env.mail_from, env.queue_id
    webhooks.emit(
        conn,
        sender,
        "message.status",
        f"sent:{queue_id}",
        lambda: message_status(conn, envelope_id),
    )


# -- reading ---------------------------------------------------------------------------


def find_sent(conn: Connection, mailbox: str, send_id: str) -> int | None:
    """The envelope id of the message `send_id` (its queue id) sent from `mailbox`."""
    row = conn.execute(
        select(envelopes.c.id, envelopes.c.mail_from, envelopes.c.origin).where(
            envelopes.c.queue_id == send_id
        )
    ).first()
    if row is None or row.origin != "submission" or row.mail_from.lower() != mailbox.lower():
        return None
    return int(row.id)


def message_status(conn: Connection, envelope_id: int) -> dict[str, Any]:
    """``MessageStatus`` of the contract (docs/api.md, "Statut de remise")."""
    env = conn.execute(select(envelopes).where(envelopes.c.id == envelope_id)).one()
    rows = conn.execute(
        select(
            deliveries.c.id,
            deliveries.c.recipient,
            deliveries.c.status,
            deliveries.c.last_error,
            deliveries.c.updated_at,
            recipient_status.c.status.label("reported"),
            recipient_status.c.reason,
            recipient_status.c.code,
            recipient_status.c.updated_at.label("reported_at"),
        )
        .outerjoin(recipient_status, recipient_status.c.delivery_id == deliveries.c.id)
        .where(deliveries.c.envelope_id == envelope_id)
        .order_by(deliveries.c.id)
    ).all()
    recipients = []
    for row in rows:
        item: dict[str, Any] = {"address": row.recipient}
        if row.reported is not None:
            item["status"] = row.reported
            reason, code, updated = row.reason, row.code, row.reported_at
        else:
            item["status"] = row.status
            reason = row.last_error if row.status in ("queued", "failed") else None
            code, updated = None, row.updated_at
        if reason:
            item["reason"] = _clip(reason, 1000)
        if code:
            item["code"] = code
        item["updated_at"] = rfc3339(updated)
        recipients.append(item)
    status: dict[str, Any] = {
        "id": env.queue_id,
        "mailbox": env.mail_from.lower(),
        "message_id": env.message_id,
        "submitted_at": rfc3339(env.received_at),
    }
    key = conn.execute(
        select(api_idempotency.c.key).where(api_idempotency.c.queue_id == env.queue_id).limit(1)
    ).scalar()
    if key:
        status["idempotency_key"] = key
    status["recipients"] = recipients
    return status


# -- hooks of the delivery service (inside its transaction) ------------------------------


def after_inbox_delivery(
    conn: Connection,
    blobs: BlobStore,
    mailbox_id: int,
    address: str,
    uid: int,
    digest: str,
    raw: bytes | None,
) -> None:
    """A message was appended to the INBOX of `address`: a report (DSN, MDN) in it updates
    the message it speaks of; then ``message.received`` for the BAL's subscribers."""
    if raw is not None:
        report_delivered(conn, address, raw)

    def summary() -> dict[str, Any]:
        row = conn.execute(
            select(messages, folders.c.name.label("folder_name"))
            .join(folders, folders.c.id == messages.c.folder_id)
            .where(
                folders.c.mailbox_id == mailbox_id,
                folders.c.name == "INBOX",
                messages.c.uid == uid,
            )
        ).one()
        content = raw if raw is not None else blobs.get(digest)
        return message_summary(conn, row, content, row.folder_name)

    webhooks.emit(conn, address, "message.received", f"msg:{mailbox_id}:INBOX:{uid}", summary)


def report_delivered(conn: Connection, address: str, raw: bytes) -> None:
    """:func:`on_report_delivered` in a savepoint: a report that cannot be read or matched
    is only logged, and the message stays delivered."""
    if not is_report(raw):
        return
    try:
        with conn.begin_nested():
            on_report_delivered(conn, address, raw)
    except Exception:
        log.warning("report delivered to %s not applied", address, exc_info=True)


# -- reports delivered to our BALs -----------------------------------------------------


def is_report(raw: bytes) -> bool:
    """Cheap test: is this a ``multipart/report`` (RFC 6522)?"""
    value = header_value(header_section(raw), "Content-Type") or ""
    return value.strip().lower().startswith("multipart/report")


def on_report_delivered(conn: Connection, mailbox: str, raw: bytes) -> bool:
    """A ``multipart/report`` was delivered to `mailbox`: if it is a DSN or MDN about a
    message `mailbox` sent, update that message's recipients. Never raises on bad input
    (the caller runs it in a savepoint); returns whether a status changed."""
    content_type = (header_value(header_section(raw), "Content-Type") or "").lower()
    if "delivery-status" in content_type:
        return _on_dsn(conn, mailbox, raw)
    if "disposition-notification" in content_type:
        return _on_mdn(conn, mailbox, raw)
    return False


def _sent_envelope(
    conn: Connection, mailbox: str, message_ids: Iterable[str | None], envid: str | None = None
) -> int | None:
    """The envelope `mailbox` sent with one of these Message-IDs (indexed), preferring the
    one whose ENVID (RFC 3461 §4.4) matches when the report carries one."""
    for message_id in message_ids:
        if not message_id:
            continue
        rows = conn.execute(
            select(envelopes.c.id, envelopes.c.mail_from, envelopes.c.origin, envelopes.c.envid)
            .where(envelopes.c.message_id == message_id.strip())
            .order_by(envelopes.c.id.desc())
            .limit(20)
        ).all()
        mine = [
            r for r in rows if r.origin == "submission" and r.mail_from.lower() == mailbox.lower()
        ]
        if envid:
            mine = [r for r in mine if r.envid == envid] or mine
        if mine:
            return int(mine[0].id)
    return None


def _delivery_of(
    conn: Connection, envelope_id: int, final: str | None, original: str | None
) -> int | None:
    rows = conn.execute(
        select(deliveries.c.id, deliveries.c.recipient, deliveries.c.orcpt).where(
            deliveries.c.envelope_id == envelope_id
        )
    ).all()
    wanted = [a.strip().lower() for a in (final, original) if a]
    for address in wanted:
        for row in rows:
            if row.recipient.lower() == address:
                return int(row.id)
    for address in wanted:  # ORCPT (RFC 3461 §4.2) as the sender gave it
        for row in rows:
            if row.orcpt and split_typed(row.orcpt)[1].strip().lower() == address:
                return int(row.id)
    return None


def _on_dsn(conn: Connection, mailbox: str, raw: bytes) -> bool:
    try:
        report = parse_dsn(raw)
    except ValueError as exc:
        log.info("report to %s is not a readable DSN: %s", mailbox, str(exc)[:120])
        return False
    returned_id = message_id_of(report.returned_content) if report.returned_content else None
    in_reply_to = header_value(header_section(raw), "In-Reply-To")
    envelope_id = _sent_envelope(
        conn, mailbox, (in_reply_to, returned_id), envid=report.original_envelope_id
    )
    if envelope_id is None:
        return False
    changes = []
    for block in report.recipients:
        action = block.get("action", "")
        status = {"delivered": "delivered", "expanded": "delivered", "relayed": "relayed"}.get(
            action, "failed" if action == "failed" else ""
        )
        if not status:
            continue  # delayed: still on its way (RFC 3464 §2.3.3)
        final = split_typed(block.get("final-recipient", ""))[1]
        orcpt = block.get("original-recipient")
        original = split_typed(orcpt)[1] if orcpt else None
        delivery_id = _delivery_of(conn, envelope_id, final, original)
        if delivery_id is None:
            continue
        reason = block.get("diagnostic-code") if status == "failed" else None
        changes.append(StatusChange(delivery_id, status, reason, block.get("status")))
    return apply(conn, envelope_id, changes)


def _on_mdn(conn: Connection, mailbox: str, raw: bytes) -> bool:
    try:
        report = parse_mdn(raw)
    except ValueError as exc:
        log.info("report to %s is not a readable MDN: %s", mailbox, str(exc)[:120])
        return False
    headers = header_section(raw)
    returned_id = message_id_of(report.returned_content) if report.returned_content else None
    envelope_id = _sent_envelope(
        conn,
        mailbox,
        (report.original_message_id, header_value(headers, "In-Reply-To"), returned_id),
    )
    if envelope_id is None:
        return False
    kind = report.disposition_type
    code = report.error_code or report.subject_error_code
    if kind == "displayed":
        status = "read"
    elif kind == "processed":
        status = "processed_with_error" if (code or report.is_error) else "processed"
    else:
        return False  # deleted / dispatched say nothing about integration
    original = split_typed(report.original_recipient)[1] if report.original_recipient else None
    delivery_id = _delivery_of(conn, envelope_id, report.final_recipient_address, original)
    if delivery_id is None:
        count = conn.execute(
            select(func.count()).where(deliveries.c.envelope_id == envelope_id)
        ).scalar_one()
        if count != 1:
            return False
        delivery_id = conn.execute(
            select(deliveries.c.id).where(deliveries.c.envelope_id == envelope_id)
        ).scalar_one()
    reason = None
    if status == "processed_with_error":
        reason = report.error_label or INTEGRATION_ERRORS.get(code or "")
    else:
        code = None
    return apply(conn, envelope_id, [StatusChange(int(delivery_id), status, reason, code)])
