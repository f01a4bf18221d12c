"""Values of the mailbox side of the integration API: summaries, details, opaque ids.

A message id is base64url of ``<folder id>.<uid>``; a list cursor is base64url of
``<internal date>|<row id>`` (keyset pagination, newest first). `ViewCache` keeps the
header view of recent blobs (content-addressed, hence immutable).
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mssante.domain.errors import NotFound, RuleViolation
from mssante.formats import message_view
from mssante.storage.database import as_utc

SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


@dataclass(frozen=True)
class Summary:
    id: str
    folder: str
    message_id: str | None
    sender: str
    to: list[str]
    cc: list[str]
    subject: str
    date: datetime | None
    received_at: datetime
    size: int
    flags: list[str]
    seen: bool
    has_documents: bool
    attachments_count: int


@dataclass(frozen=True)
class DocumentView:
    index: int
    filename: str
    mime_type: str
    type_code: str | None
    type_display: str
    title: str
    patient_ins: str | None
    creation_time: str
    problems: list[str]


@dataclass(frozen=True)
class Detail:
    summary: Summary
    headers: dict[str, list[str]]
    text: str
    html: str | None
    attachments: list[message_view.AttachmentInfo]
    documents: list[DocumentView]
    read_receipt_requested: bool
    read_receipt_sent: bool
    problems: list[str]


@dataclass(frozen=True)
class Row:
    id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    size: int
    internal_date: datetime
    blob_digest: str
    envelope_id: int | None


def encode_id(folder_id: int, uid: int) -> str:
    return base64.urlsafe_b64encode(f"{folder_id}.{uid}".encode()).decode().rstrip("=")


def decode_id(value: str) -> tuple[int, int]:
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        folder, uid = text.split(".")
        if not (folder.isdigit() and uid.isdigit()) or len(text) > 40:
            raise ValueError
        return int(folder), int(uid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise NotFound("no such message") from None


def encode_cursor(moment: datetime, row_id: int) -> str:
    text = f"{moment.isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, int]:
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        moment, row_id = text.split("|")
        parsed = as_utc(datetime.fromisoformat(moment))
        if parsed is None or not row_id.isdigit():
            raise ValueError
        return parsed, int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RuleViolation("cursor: not a cursor of this API") from None


class ViewCache:
    """Header views by blob digest (content-addressed, hence immutable): list pages do not
    decrypt and parse the same message again."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.items: OrderedDict[str, message_view.MessageView] = OrderedDict()

    def get(self, digest: str, load: Callable[[], bytes]) -> message_view.MessageView:
        found = self.items.get(digest)
        if found is not None:
            self.items.move_to_end(digest)
            return found
        made = message_view.view(load(), with_bodies=False)
        self.items[digest] = made
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return made


class ReceiptAlreadySent(RuleViolation):
    """The MDN of this message was already sent ($MDNSent)."""


def check_flag(flag: str) -> str:
    """A system flag of RFC 9051 §2.3.2 (not \\Recent), in its canonical case, or an IMAP
    atom keyword (§9 flag-keyword); else RuleViolation."""
    if flag.startswith("\\"):
        canonical = {f.lower(): f for f in SYSTEM_FLAGS}.get(flag.lower())
        if canonical is None:
            raise RuleViolation(f"flag {flag[:40]!r} is not a system flag")
        return canonical
    if not flag or len(flag) > 64 or any(c in '(){ %*"\\]' or not " " < c < "\x7f" for c in flag):
        raise RuleViolation(f"flag {flag[:40]!r} is not a valid keyword")
    return flag
