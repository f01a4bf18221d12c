"""Receiving mail: the checks of the sender and recipient stages, and durable acceptance.

`accept` is the heart of "a message is never lost": the body is written to the blob store
and fsynced, then one database transaction records the envelope, delivers to local
mailboxes, queues remote recipients, files the Sent copy, writes the trace events and any
success DSN (RFC 3461 §5.2.2), or failure DSN for a local BAL closed since RCPT. Only after
that commit does the SMTP layer answer 250.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import Connection, bindparam, insert, select, update

from mssante.domain.errors import (
    NotAMember,
    NotInTrustSpace,
    PeerNotAuthorised,
    RelayDenied,
    UnknownMailbox,
)
from mssante.domain.mailboxes import MailboxStatus, check_accepts_mail, normalise_address
from mssante.formats.dsn import RecipientStatus, build_dsn
from mssante.formats.mime import (
    ensure_submission_fields,
    header_section,
    header_value,
    message_id_of,
    received_field,
)
from mssante.services import delivery_status, traces
from mssante.services.changes import ChangeBus
from mssante.services.document_intake import DocumentIndexer, has_xdm_attachment
from mssante.services.mailboxes import MailboxService, Principal
from mssante.services.ports import AcceptedRecipient, BlobStore, IncomingMessage, Role
from mssante.services.trust import TrustListService
from mssante.storage.database import Database, utcnow
from mssante.storage.schema import deliveries, envelopes, folders, mailboxes, messages
from mssante.storage.upsert import record_blob

# Statements built once: SQLAlchemy then reuses their compiled form on every message.
_INSERT_ENVELOPE = insert(envelopes)
_INSERT_DELIVERY = insert(deliveries)
_INSERT_MESSAGE = insert(messages)
_MAILBOX_STATUS = select(mailboxes.c.id, mailboxes.c.status).where(
    mailboxes.c.address == bindparam("b_address")
)
_ALLOCATE_UID = (
    update(folders)
    .where(folders.c.mailbox_id == bindparam("b_mailbox"), folders.c.name == bindparam("b_folder"))
    .values(uidnext=folders.c.uidnext + 1, highestmodseq=folders.c.highestmodseq + 1)
    .returning(folders.c.id, folders.c.uidnext, folders.c.highestmodseq)
)
log = logging.getLogger("mssante.delivery")


@dataclass(frozen=True)
class DeliverySettings:
    hostname: str
    primary_domain: str
    queue_lifetime: int = 5 * 86400
    file_sent: bool = True


def wants(notify: str | None, event: str) -> bool:
    """RFC 3461 §4.1: without NOTIFY, the default is FAILURE and DELAY."""
    if notify is None:
        return event in ("FAILURE", "DELAY")
    return event in notify.split(",")


class DeliveryService:
    def __init__(
        self,
        db: Database,
        blob_store: BlobStore,
        trust: TrustListService,
        mailbox_service: MailboxService,
        settings: DeliverySettings,
    ) -> None:
        self.db = db
        self.blobs = blob_store
        self.trust = trust
        self.mailboxes = mailbox_service
        self.settings = settings
        self.documents = DocumentIndexer(
            message_id_domain=settings.primary_domain, reporting_ua=settings.hostname
        )

    # -- stage checks -----------------------------------------------------------------

    def check_sender(
        self, role: Role, sender: str, principal: Principal | None, peer_dn: str | None
    ) -> None:
        if role is Role.SUBMISSION:
            if principal is None or not sender:
                raise NotAMember("an authenticated sender address is required")
            box = self.mailboxes.check_can_send_as(principal, sender)
            check_accepts_mail(box.address, box.status)
            return
        # Inbound from another operator (R5): the certificate must be the one the white
        # list names for the sender's domain; a null sender (a DSN) must come from a
        # listed operator.
        if peer_dn is None:
            raise PeerNotAuthorised("no client certificate")
        if not sender:
            if not self.trust.is_operator(peer_dn):
                raise PeerNotAuthorised(f"{peer_dn} is not an operator of the white list")
            return
        domain = sender.rpartition("@")[2]
        if not self.trust.sender_authorised(domain, peer_dn):
            raise PeerNotAuthorised(f"{peer_dn} is not the operator of {domain}")

    def check_recipient(self, role: Role, recipient: str) -> AcceptedRecipient:
        domain = recipient.rpartition("@")[2]
        if self.trust.is_local(domain):
            box = self.mailboxes.find(recipient)
            if box is None:
                raise UnknownMailbox(f"no mailbox {recipient}")
            check_accepts_mail(box.address, box.status)
            return AcceptedRecipient(box.address, local=True)
        if role is Role.INBOUND:
            raise RelayDenied(f"{domain} is not hosted here")
        if not self.trust.in_trust_space(domain):
            raise NotInTrustSpace(f"{domain} is not in the MSSanté white list")
        return AcceptedRecipient(recipient, local=False)

    def refused(self, role: Role, stage: str, reason: str, peer: str, address: str | None) -> None:
        with self.db.write() as conn:
            traces.record(
                conn,
                f"{role.value}.{stage}",
                "refused",
                mailbox=address,
                peer=peer,
                detail=reason,
            )

    # -- acceptance -------------------------------------------------------------------

    def accept(
        self,
        msg: IncomingMessage,
        within: Callable[[Connection, str, int], None] | None = None,
    ) -> str:
        """Record the message durably; `within(conn, queue_id, envelope_id)` runs last inside
        the same transaction (the API's idempotency key: known iff the message is)."""
        queue_id = secrets.token_hex(8)
        data = msg.data
        if msg.role is Role.SUBMISSION:
            data = ensure_submission_fields(data, msg.mail_from.rpartition("@")[2])
        single = msg.recipients[0].address if len(msg.recipients) == 1 else None
        data = (
            received_field(
                from_host=msg.helo,
                peer_ip=msg.peer,
                by_host=self.settings.hostname,
                protocol="ESMTPSA" if msg.principal else "ESMTPS",
                queue_id=queue_id,
                recipient=single,
                tls=msg.tls,
            )
            + data
        )
        message_id = message_id_of(data)
        ref = self.blobs.put(data)  # durable before the transaction commits
        now = utcnow()
        actor = msg.principal.login if msg.principal else None
        reports: list[RecipientStatus] = []
        with self.db.write() as conn:
            own = [msg.mail_from] if msg.role is Role.SUBMISSION else []
            self._lock_folders(conn, own + [r.address for r in msg.recipients if r.local])
            record_blob(conn, ref.digest, ref.size, ref.key_id)
            envelope_id = conn.execute(
                _INSERT_ENVELOPE,
                {
                    "queue_id": queue_id,
                    "received_at": now,
                    "origin": msg.role.value,
                    "mail_from": msg.mail_from,
                    "envid": msg.envid,
                    "ret": msg.ret,
                    "body_type": msg.body_type,
                    "smtputf8": msg.smtputf8,
                    "size": ref.size,
                    "blob_digest": ref.digest,
                    "message_id": message_id,
                    "peer": msg.peer,
                    "auth_login": actor,
                },
            ).inserted_primary_key[0]  # type: ignore[index]
            traces.record(
                conn,
                f"{msg.role.value}.accepted",
                mailbox=msg.mail_from or None,
                actor=actor,
                peer=msg.peer,
                message_id=message_id,
                size=ref.size,
                envelope_id=envelope_id,
                detail=f"queue {queue_id}, {len(msg.recipients)} recipient(s)",
            )
            for rcpt in msg.recipients:
                outcome = self._route(
                    conn, envelope_id, rcpt, ref.digest, ref.size, message_id, msg.peer, data
                )
                if outcome == "delivered" and wants(rcpt.notify, "SUCCESS"):
                    reports.append(
                        RecipientStatus(
                            final_recipient=rcpt.address,
                            action="delivered",
                            status="2.0.0",
                            original_recipient=rcpt.orcpt,
                        )
                    )
                elif outcome == "failed" and wants(rcpt.notify, "FAILURE"):
                    # Accepted at RCPT, unavailable now: 250 was a promise (RFC 5321 §6.1).
                    reports.append(
                        RecipientStatus(
                            final_recipient=rcpt.address,
                            action="failed",
                            status="5.2.1",
                            original_recipient=rcpt.orcpt,
                            diagnostic_code="smtp; 550 5.2.1 mailbox unavailable",
                        )
                    )
            if msg.role is Role.SUBMISSION and self.settings.file_sent:
                box = self.mailboxes.get_in(conn, msg.mail_from)
                self.append_to_folder(
                    conn, box.id, "Sent", ref.digest, ref.size, message_id, envelope_id, "\\Seen"
                )
            if reports and msg.mail_from:
                self.send_dsn(conn, envelope_id, msg.mail_from, reports, data, msg.ret, msg.envid)
            if msg.role is Role.SUBMISSION and msg.mail_from:  # issue 7: message.status
                delivery_status.emit_status(conn, envelope_id, msg.mail_from, queue_id)
            if within is not None:
                within(conn, queue_id, envelope_id)
        return queue_id

    def _route(
        self,
        conn: Connection,
        envelope_id: int,
        rcpt: AcceptedRecipient,
        digest: str,
        size: int,
        message_id: str | None,
        peer: str | None,
        data: bytes | None = None,
    ) -> Literal["delivered", "failed", "queued"]:
        """Deliver to a local BAL now, or queue for relay; return what happened. With the
        message `data`, a local delivery of an ``IHE_XDM.ZIP`` is indexed (issue 6)."""
        now = utcnow()
        domain = rcpt.address.rpartition("@")[2]
        base = {
            "envelope_id": envelope_id,
            "recipient": rcpt.address,
            "domain": domain,
            "orcpt": rcpt.orcpt,
            "notify": rcpt.notify,
            "expires_at": now + timedelta(seconds=self.settings.queue_lifetime),
            "updated_at": now,
            "attempts": 0,
        }
        if rcpt.local:
            row = conn.execute(_MAILBOX_STATUS, {"b_address": rcpt.address}).first()
            if row is None or row.status != MailboxStatus.ACTIVE.value:
                # Closed or removed between RCPT and DATA: recorded as failed.
                conn.execute(
                    _INSERT_DELIVERY,
                    {**base, "status": "failed", "last_error": "5.2.1 mailbox unavailable"},
                )
                traces.record(
                    conn,
                    "delivery.failed",
                    "failed",
                    mailbox=rcpt.address,
                    message_id=message_id,
                    envelope_id=envelope_id,
                    detail="mailbox unavailable",
                )
                return "failed"
            uid = self.append_to_folder(
                conn, row.id, "INBOX", digest, size, message_id, envelope_id
            )
            conn.execute(_INSERT_DELIVERY, {**base, "status": "delivered"})
            traces.record(
                conn,
                "delivery.delivered",
                mailbox=rcpt.address,
                peer=peer,
                message_id=message_id,
                size=size,
                envelope_id=envelope_id,
            )
            delivery_status.after_inbox_delivery(
                conn, self.blobs, row.id, rcpt.address, uid, digest, data
            )  # issue 7: reports update statuses; message.received
            if data is not None and has_xdm_attachment(data):
                self._index_documents(conn, row.id, uid, rcpt.address, data, envelope_id)
            return "delivered"
        conn.execute(_INSERT_DELIVERY, {**base, "status": "queued", "next_attempt_at": now})
        traces.record(
            conn,
            "delivery.queued",
            mailbox=rcpt.address,
            message_id=message_id,
            size=size,
            envelope_id=envelope_id,
        )
        return "queued"

    def _index_documents(
        self,
        conn: Connection,
        mailbox_id: int,
        uid: int,
        address: str,
        data: bytes,
        envelope_id: int,
    ) -> None:
        """Index the documents of a message delivered to INBOX (an APP mailbox that cannot
        integrate them answers, R44) in a savepoint: a failure is logged, never raised."""
        try:
            with conn.begin_nested():
                report = self.documents.on_local_delivery(
                    conn,
                    mailbox_id=mailbox_id,
                    folder="INBOX",
                    uid=uid,
                    raw=data,
                    envelope_id=envelope_id,
                    recipient=address,
                )
                if report is not None:
                    self.send_generated(conn, report[0], report[1], "mdn", envelope_id)
        except Exception:  # indexing must never lose the message
            error = secrets.token_hex(6)
            log.warning("document indexing failed for %s [error %s]", address, error, exc_info=True)

    @staticmethod
    def _lock_folders(conn: Connection, addresses: Sequence[str]) -> None:
        """Lock, in one stable order, the folders this transaction may append to.

        `append_to_folder` updates the folder row (UID allocation): concurrent acceptances
        for overlapping mailboxes would otherwise lock those rows in different orders and
        deadlock on PostgreSQL. SQLite serialises writers (it renders no FOR UPDATE).
        """
        wanted = sorted({normalise_address(a) for a in addresses if a})
        if not wanted:
            return
        conn.execute(
            select(folders.c.id)
            .join(mailboxes, mailboxes.c.id == folders.c.mailbox_id)
            .where(mailboxes.c.address.in_(wanted))
            .order_by(folders.c.id)
            .with_for_update(of=folders)
        ).all()

    @staticmethod
    def append_to_folder(
        conn: Connection,
        mailbox_id: int,
        folder: str,
        digest: str,
        size: int,
        message_id: str | None,
        envelope_id: int | None,
        flags: str = "",
    ) -> int:
        """Append a message to a folder, allocating its UID atomically."""
        row = conn.execute(_ALLOCATE_UID, {"b_mailbox": mailbox_id, "b_folder": folder}).one()
        ChangeBus.touched(conn, row.id)  # IDLE sessions hear of it after the commit
        conn.execute(
            _INSERT_MESSAGE,
            {
                "folder_id": row.id,
                "uid": row.uidnext - 1,
                "modseq": row.highestmodseq,
                "envelope_id": envelope_id,
                "blob_digest": digest,
                "size": size,
                "message_id": message_id,
                "internal_date": utcnow(),
                "flags": flags,
            },
        )
        return int(row.uidnext - 1)

    # -- generated messages (DSN, MDN) ------------------------------------------------

    def send_generated(
        self,
        conn: Connection,
        to: str,
        data: bytes,
        origin: str = "generated",
        envelope_id: int | None = None,
    ) -> bool:
        """Route a message the platform wrote (an integration MDN…) from the null sender to
        `to` in this transaction: a local mailbox or a domain of the trust space only."""
        domain = to.rpartition("@")[2]
        local = self.trust.is_local(domain)
        routable = (
            self.mailboxes.find(to) is not None if local else self.trust.in_trust_space(domain)
        )
        if not routable:
            traces.record(
                conn,
                f"{origin}.dropped",
                "failed",
                mailbox=to,
                envelope_id=envelope_id,
                detail="no mailbox here and not in the trust space",
            )
            return False
        ref = self.blobs.put(data)
        record_blob(conn, ref.digest, ref.size, ref.key_id)
        generated_id = message_id_of(data)
        generated = conn.execute(
            insert(envelopes).values(
                queue_id=secrets.token_hex(8),
                received_at=utcnow(),
                origin=origin,
                mail_from="",
                size=ref.size,
                blob_digest=ref.digest,
                message_id=generated_id,
                smtputf8=False,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        rcpt = AcceptedRecipient(to, local=local, notify="NEVER")
        self._route(conn, generated, rcpt, ref.digest, ref.size, generated_id, None)
        if local:  # issue 7: a MDN to a local sender updates its message's status
            delivery_status.report_delivered(conn, to, data)
        traces.record(
            conn, f"{origin}.sent", mailbox=to, message_id=generated_id, envelope_id=envelope_id
        )
        return True

    def send_dsn(
        self,
        conn: Connection,
        envelope_id: int,
        to: str,
        statuses: Sequence[RecipientStatus],
        original: bytes,
        ret: str | None,
        envid: str | None,
    ) -> None:
        """Build a DSN (RFC 3464) for `statuses` and route it to `to` in this transaction."""
        headers = header_section(original)
        data = build_dsn(
            reporting_mta=self.settings.hostname,
            from_address=f"MAILER-DAEMON@{self.settings.primary_domain}",
            to_address=to,
            recipients=statuses,
            original_headers=headers,
            original_message=original if ret == "FULL" else None,
            ret="FULL" if ret == "FULL" else "HDRS",
            envid=envid,
            arrival_date=utcnow(),
            original_message_id=message_id_of(original),
            original_subject=header_value(headers, "Subject"),
            message_id_domain=self.settings.primary_domain,
        )
        ref = self.blobs.put(data)
        record_blob(conn, ref.digest, ref.size, ref.key_id)
        queue_id = secrets.token_hex(8)
        dsn_message_id = message_id_of(data)
        dsn_envelope = conn.execute(
            insert(envelopes).values(
                queue_id=queue_id,
                received_at=utcnow(),
                origin="dsn",
                mail_from="",
                size=ref.size,
                blob_digest=ref.digest,
                message_id=dsn_message_id,
                smtputf8=False,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        domain = to.rpartition("@")[2]
        local = self.trust.is_local(domain)
        if local and self.mailboxes.find(to) is None:
            traces.record(
                conn,
                "dsn.dropped",
                "failed",
                mailbox=to,
                envelope_id=envelope_id,
                detail="DSN recipient has no mailbox here",
            )
            return
        self._route(
            conn,
            dsn_envelope,
            AcceptedRecipient(to, local=local, notify="NEVER"),
            ref.digest,
            ref.size,
            dsn_message_id,
            None,
        )
        traces.record(
            conn,
            "dsn.sent",
            mailbox=to,
            message_id=dsn_message_id,
            envelope_id=envelope_id,
            detail=",".join(f"{s.final_recipient}:{s.action}" for s in statuses),
        )
