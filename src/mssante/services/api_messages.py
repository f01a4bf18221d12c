"""The mailbox side of the integration API (issue 7): list, read, flag, move, delete, MDN.

Everything goes through `MailStore` (the IMAP view): folder rights are checked against the
principal in the same transaction, ``\\Seen`` is per user on ORG/CAB BALs, and every change
bumps the folder's MODSEQ, so IMAP clients and the API always agree.

A message id is opaque to clients: base64url of ``<folder id>.<uid>``; it is only accepted
for a folder of the BAL in the path, which the principal may use. A list cursor is
base64url of ``<internal date>|<row id>`` (newest first, keyset pagination).

Reading a message (not ``peek``) marks it ``\\Seen`` and, when it asked for a read receipt
(``Disposition-Notification-To``) and the address agrees with the envelope sender (the
Return-Path, RFC 8098 §2.1), sends a MDN "displayed" (R25) from the BAL once: the
``$MDNSent`` keyword (RFC 3503) records that it was sent, for IMAP clients too. When the
addresses differ, the detail says ``read_receipt_requested`` and the client may send it
explicitly (`send_receipt`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sqlalchemy import and_, exists, insert, or_, select

from mssante.domain.errors import NotFound, RuleViolation
from mssante.formats import message_view
from mssante.formats.mdn import MANUAL, build_mdn, should_send_mdn
from mssante.formats.mime import header_section
from mssante.formats.xdm import XdmDocument
from mssante.services.api_views import (
    Detail,
    DocumentView,
    ReceiptAlreadySent,
    Row,
    Summary,
    ViewCache,
    check_flag,
    decode_cursor,
    decode_id,
    encode_cursor,
    encode_id,
)
from mssante.services.delivery import DeliveryService
from mssante.services.document_intake import ReceivedDocuments, read_document_message
from mssante.services.mailboxes import Principal
from mssante.services.mailstore import SEEN, Folder, MailStore
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import documents, envelopes, messages, user_seen

__all__ = [
    "MDN_SENT",
    "ApiMailboxService",
    "Detail",
    "DocumentView",
    "ReceiptAlreadySent",
    "Summary",
    "decode_cursor",
    "decode_id",
    "encode_cursor",
    "encode_id",
]

log = logging.getLogger("mssante.api")

MDN_SENT = "$MDNSent"  # RFC 3503 §3.1
FLAGGED = "\\Flagged"
AUTO_MODE = "manual-action/MDN-sent-automatically"  # RFC 8098 §3.2.6: user read, sent by config


class ApiMailboxService:
    def __init__(
        self,
        db: Database,
        mailstore: MailStore,
        delivery: DeliveryService,
        *,
        hostname: str,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.store = mailstore
        self.delivery = delivery
        self.hostname = hostname
        self.wake = wake
        self.cache = ViewCache()

    # -- folders and rows -----------------------------------------------------------------

    def folders(self, principal: Principal, address: str) -> list[Folder]:
        found = [f for f in self.store.folders_for(principal) if f.mailbox_address == address]
        if not found:
            raise NotFound("no such mailbox")  # not in the principal's rights any more
        return found

    def folder(self, principal: Principal, address: str, name: str) -> Folder:
        wanted = "INBOX" if name.upper() == "INBOX" else name
        for folder in self.folders(principal, address):
            if folder.name == wanted:
                return folder
        raise NotFound(f"no folder {name}")

    def _folder_by_id(self, principal: Principal, address: str, folder_id: int) -> Folder:
        for folder in self.folders(principal, address):
            if folder.id == folder_id:
                return folder
        raise NotFound("no such message")

    def _row(self, principal: Principal, folder: Folder, uid: int) -> Row:
        with self.db.read() as conn:
            row = conn.execute(
                select(messages).where(messages.c.folder_id == folder.id, messages.c.uid == uid)
            ).first()
            if row is None:
                raise NotFound("no such message")
            seen = None
            if folder.per_user_seen:
                seen = conn.execute(
                    select(user_seen.c.message_id).where(
                        user_seen.c.message_id == row.id, user_seen.c.user_id == principal.user_id
                    )
                ).first()
        return self._as_row(row, folder, seen is not None)

    @staticmethod
    def _as_row(row: object, folder: Folder, seen: bool) -> Row:
        flags = frozenset(f for f in row.flags.split(" ") if f)  # type: ignore[attr-defined]
        if folder.per_user_seen:
            flags = (flags - {SEEN}) | ({SEEN} if seen else set())
        return Row(
            id=int(row.id),  # type: ignore[attr-defined]
            uid=int(row.uid),  # type: ignore[attr-defined]
            modseq=int(row.modseq),  # type: ignore[attr-defined]
            flags=flags,
            size=int(row.size),  # type: ignore[attr-defined]
            internal_date=as_utc(row.internal_date) or utcnow(),  # type: ignore[attr-defined]
            blob_digest=row.blob_digest,  # type: ignore[attr-defined]
            envelope_id=row.envelope_id,  # type: ignore[attr-defined]
        )

    def locate(self, principal: Principal, address: str, message: str) -> tuple[Folder, Row]:
        folder_id, uid = decode_id(message)
        folder = self._folder_by_id(principal, address, folder_id)
        return folder, self._row(principal, folder, uid)

    def _summary(self, folder: Folder, row: Row, with_docs: bool | None = None) -> Summary:
        header = self.cache.get(row.blob_digest, lambda: self.store.blobs.get(row.blob_digest))
        return Summary(
            id=encode_id(folder.id, row.uid),
            folder=folder.name,
            message_id=header.message_id,
            sender=header.sender,
            to=header.to,
            cc=header.cc,
            subject=header.subject,
            date=header.date,
            received_at=row.internal_date,
            size=row.size,
            flags=sorted(row.flags),
            seen=SEEN in row.flags,
            has_documents=header.has_xdm if with_docs is None else with_docs,
            attachments_count=len(header.attachments),
        )

    # -- listing ----------------------------------------------------------------------------

    def list_messages(
        self,
        principal: Principal,
        address: str,
        *,
        folder: str = "INBOX",
        unread: bool | None = None,
        since: datetime | None = None,
        patient_ins: str | None = None,
        document_type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Summary], str | None]:
        box = self.folder(principal, address, folder)
        seen_here = exists().where(
            user_seen.c.message_id == messages.c.id, user_seen.c.user_id == principal.user_id
        )
        query = select(messages).where(messages.c.folder_id == box.id)
        if box.per_user_seen:
            query = query.add_columns(seen_here.label("seen_here"))
        if unread is not None:
            seen = (
                seen_here if box.per_user_seen else messages.c.flags.contains(SEEN, autoescape=True)
            )
            query = query.where(~seen if unread else seen)
        if since is not None:
            query = query.where(messages.c.internal_date >= since)
        doc = documents.c
        if patient_ins:
            query = query.where(
                exists().where(doc.message_id == messages.c.id, doc.patient_ins == patient_ins)
            )
        if document_type:
            query = query.where(
                exists().where(doc.message_id == messages.c.id, doc.type_code == document_type)
            )
        if cursor:
            moment, row_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    messages.c.internal_date < moment,
                    and_(messages.c.internal_date == moment, messages.c.id < row_id),
                )
            )
        query = query.order_by(messages.c.internal_date.desc(), messages.c.id.desc())
        with self.db.read() as conn:
            rows = conn.execute(query.limit(limit + 1)).all()
            ids = [r.id for r in rows[:limit]]
            with_docs = {
                r.message_id
                for r in conn.execute(
                    select(doc.message_id).where(
                        doc.message_id.in_(ids), doc.type_code.is_not(None)
                    )
                )
            }
        items = []
        for r in rows[:limit]:
            row = self._as_row(r, box, bool(getattr(r, "seen_here", False)))
            summary = self._summary(box, row)
            if r.id in with_docs and not summary.has_documents:
                summary = replace(summary, has_documents=True)
            items.append(summary)
        next_cursor = None
        if len(rows) > limit:
            last = self._as_row(rows[limit - 1], box, False)
            next_cursor = encode_cursor(last.internal_date, last.id)
        return items, next_cursor

    # -- reading ----------------------------------------------------------------------------

    def _documents(self, raw: bytes) -> tuple[ReceivedDocuments | None, list[DocumentView]]:
        if not message_view.view(raw, with_bodies=False).has_xdm:
            return None, []
        received = read_document_message(raw)
        views = [
            DocumentView(
                index=i,
                filename=d.path.rpartition("/")[2],
                mime_type=d.mime_type or "application/octet-stream",
                type_code=d.type_code,
                type_display=d.type_display,
                title=d.title,
                patient_ins=received.patient_ins,
                creation_time=d.creation_time,
                problems=[p.code for p in d.problems],
            )
            for i, d in enumerate(received.documents)
        ]
        return received, views

    def _return_path(self, row: Row) -> str | None:
        """The envelope sender of a stored message (its Return-Path, RFC 5321 §4.4)."""
        with self.db.read() as conn:
            query = select(envelopes.c.mail_from)
            if row.envelope_id is not None:
                query = query.where(envelopes.c.id == row.envelope_id)
            else:  # a copy or a moved message: the envelope of the same content
                query = query.where(envelopes.c.blob_digest == row.blob_digest).order_by(
                    envelopes.c.id.desc()
                )
            value = conn.execute(query.limit(1)).scalar_one_or_none()
        return str(value) if value is not None else None

    def _receipt_decision(
        self, folder: Folder, row: Row, raw: bytes, address: str
    ) -> tuple[bool, bool, tuple[str, ...]]:
        """(requested, may be sent automatically, to) for R25 / RFC 8098 §2.1."""
        if folder.special_use in ("\\Sent", "\\Drafts"):
            return False, False, ()
        headers = header_section(raw)
        return_path = self._return_path(row)
        if return_path is not None:
            headers = f"Return-Path: <{return_path}>\r\n".encode("ascii", "replace") + headers
        decision = should_send_mdn(headers)
        to = tuple(t for t in decision.to if t.lower() != address.lower())
        if not decision.send or not to:
            return False, False, ()
        return True, not decision.needs_confirmation, to

    def read(
        self, principal: Principal, address: str, message: str, *, peek: bool = False
    ) -> Detail:
        folder, row = self.locate(principal, address, message)
        raw = self.store.blobs.get(row.blob_digest)
        requested, automatic, to = self._receipt_decision(folder, row, raw, address)
        if not peek and SEEN not in row.flags:
            self.store.store_flags(principal, folder, [row.uid], "add", [SEEN])
            row = self._row(principal, folder, row.uid)
        if not peek and requested and automatic and MDN_SENT not in row.flags:
            if self._send_mdn(principal, address, folder, row, raw, to, AUTO_MODE):
                row = self._row(principal, folder, row.uid)
        shown = message_view.view(raw)
        _, docs = self._documents(raw)
        summary = self._summary(folder, row, with_docs=bool(docs) or shown.has_xdm)
        return Detail(
            summary=summary,
            headers=shown.headers,
            text=shown.text,
            html=shown.html,
            attachments=shown.attachments,
            documents=docs,
            read_receipt_requested=requested,
            read_receipt_sent=MDN_SENT in row.flags,
            problems=shown.problems,
        )

    def attachment(
        self, principal: Principal, address: str, message: str, index: int
    ) -> tuple[message_view.AttachmentInfo, bytes]:
        _, row = self.locate(principal, address, message)
        found = message_view.attachment(self.store.blobs.get(row.blob_digest), index)
        if found is None:
            raise NotFound("no such attachment")
        return found

    def document(
        self, principal: Principal, address: str, message: str, index: int
    ) -> tuple[DocumentView, bytes]:
        _, row = self.locate(principal, address, message)
        received, views = self._documents(self.store.blobs.get(row.blob_digest))
        if received is None or received.package is None or not 0 <= index < len(views):
            raise NotFound("no such document")
        item: XdmDocument = received.package.documents[index]
        return views[index], item.content

    # -- read receipts (R25) ------------------------------------------------------------------

    def _send_mdn(
        self,
        principal: Principal,
        address: str,
        folder: Folder,
        row: Row,
        raw: bytes,
        to: tuple[str, ...],
        mode: str,
    ) -> bool:
        # $MDNSent first, conditionally on the MODSEQ read: two readers never both send.
        changed, failed = self.store.store_flags(
            principal, folder, [row.uid], "add", [MDN_SENT], unchanged_since=row.modseq
        )
        if failed or not changed:
            return False
        domain = address.rpartition("@")[2]
        try:
            with self.db.write() as conn:
                for target in to:
                    data = build_mdn(
                        header_section(raw),
                        reporting_ua=f"{self.hostname}; mssante API",
                        final_recipient=address,
                        message_id_domain=domain,
                        disposition="displayed",
                        mode=mode,
                        to_address=target,
                    )
                    self.delivery.send_generated(conn, target, data, "mdn", row.envelope_id)
        except Exception:
            self.store.store_flags(principal, folder, [row.uid], "remove", [MDN_SENT])
            raise
        if self.wake is not None:
            self.wake()
        return True

    def send_receipt(self, principal: Principal, address: str, message: str) -> list[str]:
        """Send the MDN "displayed" explicitly (the user agreed, RFC 8098 §2.1)."""
        folder, row = self.locate(principal, address, message)
        raw = self.store.blobs.get(row.blob_digest)
        requested, _automatic, to = self._receipt_decision(folder, row, raw, address)
        if not requested:
            raise RuleViolation("no read receipt requested")
        if MDN_SENT in row.flags or not self._send_mdn(
            principal, address, folder, row, raw, to, MANUAL
        ):
            raise ReceiptAlreadySent("read receipt already sent")
        return list(to)

    # -- changing -------------------------------------------------------------------------

    def update(
        self,
        principal: Principal,
        address: str,
        message: str,
        *,
        add: set[str],
        remove: set[str],
        target: str | None,
    ) -> Summary:
        folder, row = self.locate(principal, address, message)
        add = {check_flag(f) for f in add}
        remove = {check_flag(f) for f in remove}
        if add:
            self.store.store_flags(principal, folder, [row.uid], "add", add)
        if remove:
            self.store.store_flags(principal, folder, [row.uid], "remove", remove)
        if target is not None:
            destination = self.folder(principal, address, target)
            if destination.id != folder.id:
                return self._move(principal, folder, row, destination)
        return self._summary(folder, self._row(principal, folder, row.uid))

    def _move(self, principal: Principal, source: Folder, row: Row, target: Folder) -> Summary:
        with self.db.read() as conn:
            indexed = [dict(r._mapping) for r in conn.execute(
                select(documents).where(documents.c.message_id == row.id)
            )]  # fmt: skip
        pairs = self.store.move(principal, source, [row.uid], target)
        if not pairs:
            raise NotFound("no such message")
        moved = self._row(principal, target, pairs[0][1])
        if indexed:  # the document index follows the message (patient / type filters)
            with self.db.write() as conn:
                conn.execute(
                    insert(documents),
                    [
                        {**{k: v for k, v in r.items() if k != "id"}, "message_id": moved.id,
                         "folder_id": target.id}
                        for r in indexed
                    ],
                )  # fmt: skip
        return self._summary(target, moved)

    def delete(self, principal: Principal, address: str, message: str) -> None:
        """To Trash; from Trash (or without one), removed for good."""
        folder, row = self.locate(principal, address, message)
        trash = next((f for f in self.folders(principal, address) if f.name == "Trash"), None)
        if trash is None or folder.id == trash.id:
            self.store.expunge(principal, folder, [row.uid], only_deleted=False)
            return
        self._move(principal, folder, row, trash)
