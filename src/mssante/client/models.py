"""Typed models of the integration API (docs/api.md): what the SDK returns and takes.

Every answer model has a ``from_json`` constructor that accepts the documented members and
ignores unknown ones (a newer operator may add members), and keeps the whole JSON object in
``raw`` for anything not modelled. Times are timezone-aware :class:`datetime.datetime`
(the API sends RFC 3339 UTC strings).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "FINAL_STATUSES",
    "AttachmentInfo",
    "Document",
    "DocumentInfo",
    "File",
    "Folder",
    "Me",
    "MessageDetail",
    "MessageStatus",
    "MessageSummary",
    "Page",
    "Patient",
    "RecipientStatus",
    "Subscription",
    "Suggestion",
    "WebhookDelivery",
    "WebhookEvent",
]

# Recipient statuses after which nothing changes without a reader (docs/api.md).
FINAL_STATUSES = frozenset({"delivered", "failed", "read", "processed", "processed_with_error"})


def _time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _strs(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _obj(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


# -- answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Me:
    """``GET /api/v1/me``: who the token speaks for and the BALs it may use."""

    login: str
    kind: str  # application | professional
    mailboxes: list[str]
    id_nat_ps: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Me:
        return cls(
            login=_str(data.get("login")),
            kind=_str(data.get("kind")),
            mailboxes=_strs(data.get("mailboxes")),
            id_nat_ps=_opt(data.get("id_nat_ps")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class MessageSummary:
    """One message of a listing (``GET …/messages``)."""

    id: str
    folder: str
    message_id: str
    from_: str
    to: list[str]
    cc: list[str]
    subject: str
    date: datetime | None
    received_at: datetime | None
    size: int
    flags: list[str]
    seen: bool
    has_documents: bool
    attachments_count: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def _fields(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": _str(data.get("id")),
            "folder": _str(data.get("folder")),
            "message_id": _str(data.get("message_id")),
            "from_": _str(data.get("from")),
            "to": _strs(data.get("to")),
            "cc": _strs(data.get("cc")),
            "subject": _str(data.get("subject")),
            "date": _time(data.get("date")),
            "received_at": _time(data.get("received_at")),
            "size": _int(data.get("size")),
            "flags": _strs(data.get("flags")),
            "seen": bool(data.get("seen")),
            "has_documents": bool(data.get("has_documents")),
            "attachments_count": _int(data.get("attachments_count")),
            "raw": dict(data),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MessageSummary:
        return cls(**cls._fields(data))


@dataclass(frozen=True)
class AttachmentInfo:
    index: int
    filename: str
    content_type: str
    size: int
    url: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttachmentInfo:
        return cls(
            index=_int(data.get("index")),
            filename=_str(data.get("filename")),
            content_type=_str(data.get("content_type")),
            size=_int(data.get("size")),
            url=_str(data.get("url")),
        )


@dataclass(frozen=True)
class DocumentInfo:
    """A document of the message's IHE XDM package, with its XDS metadata."""

    index: int
    filename: str
    type_code: str | None
    title: str | None
    patient_ins: str | None
    url: str
    mime_type: str = ""
    type_display: str = ""
    problems: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DocumentInfo:
        return cls(
            index=_int(data.get("index")),
            filename=_str(data.get("filename")),
            type_code=_opt(data.get("type_code")),
            title=_opt(data.get("title")),
            patient_ins=_opt(data.get("patient_ins")),
            url=_str(data.get("url")),
            mime_type=_str(data.get("mime_type") or data.get("content_type")),
            type_display=_str(data.get("type_display")),
            problems=_strs(data.get("problems")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class MessageDetail(MessageSummary):
    """One message read whole (``GET …/messages/{id}``)."""

    headers: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""
    html: str | None = None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    documents: list[DocumentInfo] = field(default_factory=list)
    read_receipt_requested: bool = False
    read_receipt_sent: bool = False
    problems: list[str] = field(default_factory=list)  # what could not be read

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MessageDetail:
        headers = {str(k): _strs(v) for k, v in _obj(data.get("headers")).items()}
        return cls(
            **cls._fields(data),
            headers=headers,
            text=_str(data.get("text")),
            html=_opt(data.get("html")),
            attachments=[AttachmentInfo.from_json(a) for a in data.get("attachments") or []],
            documents=[DocumentInfo.from_json(d) for d in data.get("documents") or []],
            read_receipt_requested=bool(data.get("read_receipt_requested")),
            read_receipt_sent=bool(data.get("read_receipt_sent")),
            problems=_strs(data.get("problems")),
        )


@dataclass(frozen=True)
class Page:
    """One page of a listing and the cursor of the next one (None on the last page)."""

    items: list[MessageSummary]
    next_cursor: str | None


@dataclass(frozen=True)
class Folder:
    name: str
    special_use: str | None
    total: int
    unseen: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Folder:
        return cls(
            name=_str(data.get("name")),
            special_use=_opt(data.get("special_use")),
            total=_int(data.get("total")),
            unseen=_int(data.get("unseen")),
        )


@dataclass(frozen=True)
class RecipientStatus:
    """Where a sent message stands for one recipient.

    ``status`` is one of queued, relayed, delivered, failed, read, processed,
    processed_with_error; ``code`` is the MDN error code (900–906) of processed_with_error.
    """

    address: str
    status: str
    reason: str | None
    code: int | str | None
    updated_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecipientStatus:
        code = data.get("code")
        return cls(
            address=_str(data.get("address")),
            status=_str(data.get("status")),
            reason=_opt(data.get("reason")),
            code=code if isinstance(code, int | str) and not isinstance(code, bool) else None,
            updated_at=_time(data.get("updated_at")),
        )


@dataclass(frozen=True)
class MessageStatus:
    """A sent message (``POST …/messages`` answer, ``GET …/sent/{send_id}``)."""

    id: str
    message_id: str
    submitted_at: datetime | None
    recipients: list[RecipientStatus]
    idempotency_key: str | None = None
    notices: list[str] = field(default_factory=list)  # e.g. legal recipients not included
    location: str | None = None  # the status URL (Location header of the 202)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def final(self) -> bool:
        """Every recipient has a final status (nothing is queued or on its way)."""
        return all(r.final for r in self.recipients)

    def recipient(self, address: str) -> RecipientStatus:
        wanted = address.lower()
        for r in self.recipients:
            if r.address.lower() == wanted:
                return r
        raise KeyError(address)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], location: str | None = None) -> MessageStatus:
        return cls(
            id=_str(data.get("id")),
            message_id=_str(data.get("message_id")),
            submitted_at=_time(data.get("submitted_at")),
            recipients=[RecipientStatus.from_json(r) for r in data.get("recipients") or []],
            idempotency_key=_opt(data.get("idempotency_key")),
            notices=_strs(data.get("notices")),
            location=location,
            raw=dict(data),
        )


@dataclass(frozen=True)
class Subscription:
    """A webhook subscription; ``secret`` is only set in the answer that created it."""

    id: str
    url: str
    events: list[str]
    created_at: datetime | None
    secret: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subscription:
        return cls(
            id=_str(data.get("id")),
            url=_str(data.get("url")),
            events=_strs(data.get("events")),
            created_at=_time(data.get("created_at")),
            secret=_opt(data.get("secret")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One event's delivery to a subscription (the delivery log)."""

    id: str
    event_id: str
    event: str
    attempts: int
    status: str  # pending | delivered | failed
    created_at: datetime | None
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDelivery:
        code = data.get("last_status_code")
        return cls(
            id=_str(data.get("id")),
            event_id=_str(data.get("event_id")),
            event=_str(data.get("event")),
            attempts=_int(data.get("attempts")),
            status=_str(data.get("status")),
            created_at=_time(data.get("created_at")),
            last_status_code=code if isinstance(code, int) else None,
            last_error=_opt(data.get("last_error")),
            next_attempt_at=_time(data.get("next_attempt_at")),
            delivered_at=_time(data.get("delivered_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class WebhookEvent:
    """An event as POSTed to a subscriber (verify its signature first: ``verify_webhook``)."""

    id: str
    type: str  # message.received | message.status
    created_at: datetime | None
    mailbox: str
    data: dict[str, Any]

    def status(self) -> MessageStatus:
        """The data of a ``message.status`` event."""
        return MessageStatus.from_json(self.data)

    def summary(self) -> MessageSummary:
        """The data of a ``message.received`` event."""
        return MessageSummary.from_json(self.data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookEvent:
        return cls(
            id=_str(data.get("id")),
            type=_str(data.get("type")),
            created_at=_time(data.get("created_at")),
            mailbox=_str(data.get("mailbox")),
            data=_obj(data.get("data")),
        )


@dataclass(frozen=True)
class Suggestion:
    """A directory entry (``/annuaire/suggest`` and ``/api/v1/annuaire/search``)."""

    address: str
    name: str
    type: str | None
    profession: str = ""
    city: str = ""
    organization: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Suggestion:
        return cls(
            address=_str(data.get("address")),
            name=_str(data.get("name")),
            type=_opt(data.get("type")),
            profession=_str(data.get("profession")),
            city=_str(data.get("city")),
            organization=_str(data.get("organization")),
            raw=dict(data),
        )


# -- what a send takes ----------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    """An attachment: a file on disk (uploaded streamed) or bytes in memory."""

    source: Path | bytes = field(repr=False)
    filename: str = ""
    content_type: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.source, Path):
            if not self.filename:
                object.__setattr__(self, "filename", self.source.name)
        elif not self.filename:
            raise ValueError("an in-memory attachment needs a filename")
        if not self.content_type:
            guessed = mimetypes.guess_type(self.filename)[0]
            object.__setattr__(self, "content_type", guessed or "application/octet-stream")

    @property
    def on_disk(self) -> bool:
        return isinstance(self.source, Path)

    @property
    def size(self) -> int:
        if isinstance(self.source, Path):
            return self.source.stat().st_size
        return len(self.source)


@dataclass(frozen=True)
class Document(File):
    """A document (CDA R2 ``text/xml`` or ``application/pdf``) for the IHE XDM package.

    ``type_code`` is its LOINC type (JDV_J07, e.g. 74207-2 for a DLU, 11490-0 for a lettre
    de liaison); for a CDA the operator reads it from the document when not given.
    """

    type_code: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        if not self.content_type:
            name = self.filename or (self.source.name if isinstance(self.source, Path) else "")
            if name.lower().endswith(".pdf"):
                object.__setattr__(self, "content_type", "application/pdf")
            else:
                object.__setattr__(self, "content_type", "text/xml")
        super().__post_init__()


@dataclass(frozen=True)
class Patient:
    """The patient the documents are about (INS, strict traits: SPEC §2, R41)."""

    ins: str
    family: str
    given: str
    birth_date: date | str
    sex: str  # M | F | U
    ins_oid: str | None = None

    def to_json(self) -> dict[str, str]:
        birth = self.birth_date
        data = {
            "ins": self.ins,
            "family": self.family,
            "given": self.given,
            "birth_date": birth.isoformat() if isinstance(birth, date) else birth,
            "sex": self.sex,
        }
        if self.ins_oid:
            data["ins_oid"] = self.ins_oid
        return data
