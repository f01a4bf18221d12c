"""Reading what a mailbox holds (the IMAP server and the API build on this)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from mssante.domain.errors import NotFound
from mssante.domain.mailboxes import normalise_address
from mssante.services.ports import BlobStore
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import folders, mailboxes, messages


@dataclass(frozen=True)
class StoredMessage:
    uid: int
    message_id: str | None
    size: int
    flags: str
    internal_date: datetime
    blob_digest: str


class MessageStore:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def list(self, address: str, folder: str = "INBOX") -> list[StoredMessage]:
        with self.db.read() as conn:
            row = conn.execute(
                select(folders.c.id)
                .join(mailboxes, mailboxes.c.id == folders.c.mailbox_id)
                .where(mailboxes.c.address == normalise_address(address), folders.c.name == folder)
            ).first()
            if row is None:
                raise NotFound(f"no folder {folder} in {address}")
            return [
                StoredMessage(
                    uid=int(m.uid),
                    message_id=m.message_id,
                    size=int(m.size),
                    flags=m.flags,
                    internal_date=as_utc(m.internal_date) or utcnow(),
                    blob_digest=m.blob_digest,
                )
                for m in conn.execute(
                    select(messages).where(messages.c.folder_id == row.id).order_by(messages.c.uid)
                )
            ]

    def read(self, message: StoredMessage) -> bytes:
        return self.blobs.get(message.blob_digest)
