"""What the sync and async clients share: requests as data, answers parsed, the token cache.

Each API operation is built once here as a :class:`Call` (method, path, query, body, how to
parse the answer, whether a transport error may be retried); :class:`~mssante.client.Client`
and :class:`~mssante.client.AsyncClient` only execute calls with their httpx client.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from mssante.client.errors import ApiError, InvalidRequest
from mssante.client.models import (
    Document,
    File,
    Folder,
    Me,
    MessageDetail,
    MessageStatus,
    MessageSummary,
    Page,
    Patient,
    Subscription,
    Suggestion,
    WebhookDelivery,
)

T = TypeVar("T")

API = "/api/v1"
# In-memory attachments up to this total go base64 inside the JSON body; above, or as soon
# as one attachment is a file on disk, the body is multipart/form-data (files streamed).
INLINE_LIMIT = 1024 * 1024

AttachmentLike = Path | File | tuple[str, bytes, str]
DocumentLike = Path | Document | tuple[str, bytes, str]
FilePart = tuple[str, tuple[str | None, Any, str]]


@dataclass
class Call(Generic[T]):
    """One API request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # multipart/form-data parts, opened again for each attempt (files are streamed)
    parts: Callable[[ExitStack], list[FilePart]] | None = None
    retry_transport: bool = False  # safe to send again after a connection error

    def request_args(self, stack: ExitStack) -> dict[str, Any]:
        args: dict[str, Any] = {"headers": dict(self.headers)}
        if self.params:
            args["params"] = self.params
        if self.parts is not None:
            args["files"] = self.parts(stack)
        elif self.json is not None:
            args["json"] = self.json
        return args


def mailbox_path(address: str, *rest: str) -> str:
    """``/api/v1/mailboxes/{address}/…`` with each segment percent-encoded."""
    segments = [quote(address, safe="@")] + [quote(str(s), safe="") for s in rest]
    return f"{API}/mailboxes/" + "/".join(segments)


# -- answers ------------------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            response.status_code,
            detail="Réponse inattendue de l'opérateur (JSON attendu).",
        ) from None


def _nothing(response: httpx.Response) -> None:
    return None


def _status(response: httpx.Response) -> MessageStatus:
    location = response.headers.get("location")
    return MessageStatus.from_json(_json(response), location=location)


def _page(response: httpx.Response) -> Page:
    data = _json(response)
    items = [MessageSummary.from_json(i) for i in data.get("items") or []]
    cursor = data.get("next_cursor")
    return Page(items, str(cursor) if cursor else None)


def _list_of(
    factory: Callable[[Mapping[str, Any]], T], key: str = "items"
) -> Callable[[httpx.Response], list[T]]:
    def parse(response: httpx.Response) -> list[T]:
        data = _json(response)
        if isinstance(data, dict):
            data = data.get(key) or data.get("results") or []
        return [factory(item) for item in data]

    return parse


def _one(factory: Callable[[Mapping[str, Any]], T]) -> Callable[[httpx.Response], T]:
    def parse(response: httpx.Response) -> T:
        return factory(_json(response))

    return parse


# -- the calls ----------------------------------------------------------------------------


def me() -> Call[Me]:
    return Call("GET", f"{API}/me", _one(Me.from_json), retry_transport=True)


def _as_file(item: AttachmentLike) -> File:
    if isinstance(item, File):
        return item
    if isinstance(item, Path):
        return File(item)
    if isinstance(item, str):
        return File(Path(item))
    name, data, content_type = item
    return File(bytes(data), name, content_type)


def _as_document(item: DocumentLike) -> Document:
    if isinstance(item, Document):
        return item
    if isinstance(item, Path):
        return Document(item)
    if isinstance(item, str):
        return Document(Path(item))
    if isinstance(item, File):
        return Document(item.source, item.filename, item.content_type)
    name, data, content_type = item
    return Document(bytes(data), name, content_type)


def _document_meta(doc: Document) -> dict[str, Any]:
    meta: dict[str, Any] = {"filename": doc.filename, "content_type": doc.content_type}
    if doc.type_code:
        meta["type_code"] = doc.type_code
    if doc.title:
        meta["title"] = doc.title
    return meta


def _b64(source: Path | bytes) -> str:
    data = source.read_bytes() if isinstance(source, Path) else source
    return base64.b64encode(data).decode("ascii")


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def send(
    mailbox: str,
    to: Sequence[str] | str,
    subject: str,
    text: str = "",
    *,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    attachments: Iterable[AttachmentLike] = (),
    documents: Iterable[DocumentLike] = (),
    patient: Patient | Mapping[str, Any] | None = None,
    use_case: str | None = None,
    notify: Sequence[str] | None = None,
    read_receipt: bool = False,
    in_reply_to: str | None = None,
    idempotency_key: str | None = None,
) -> Call[MessageStatus]:
    """``POST /api/v1/mailboxes/{mailbox}/messages``: JSON, or multipart with files."""
    files = [_as_file(a) for a in attachments]
    docs = [_as_document(d) for d in documents]
    body: dict[str, Any] = {
        "to": [to] if isinstance(to, str) else list(to),
        "cc": list(cc),
        "bcc": list(bcc),
        "subject": subject,
        "text": text,
        "read_receipt": read_receipt,
    }
    if in_reply_to:
        body["in_reply_to"] = in_reply_to
    if patient is not None:
        body["patient"] = patient.to_json() if isinstance(patient, Patient) else dict(patient)
    if use_case:
        body["use_case"] = use_case
    if notify is not None:
        body["notify"] = list(notify)
    key = idempotency_key or new_idempotency_key()
    headers = {"Idempotency-Key": key}
    path = mailbox_path(mailbox, "messages")
    everything: list[File] = [*files, *docs]
    streamed = any(f.on_disk for f in everything)
    if not streamed and sum(f.size for f in everything) <= INLINE_LIMIT:
        if files:
            body["attachments"] = [
                {
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "content_base64": _b64(f.source),
                }
                for f in files
            ]
        if docs:
            body["documents"] = [
                _document_meta(d) | {"content_base64": _b64(d.source)} for d in docs
            ]
        return Call("POST", path, _status, json=body, headers=headers, retry_transport=True)
    if files:
        body["attachments"] = [
            {"filename": f.filename, "content_type": f.content_type} for f in files
        ]
    if docs:
        body["documents"] = [_document_meta(d) for d in docs]
    message = json.dumps(body, ensure_ascii=False).encode("utf-8")

    def parts(stack: ExitStack) -> list[FilePart]:
        out: list[FilePart] = [("message", (None, message, "application/json"))]
        for name, group in (("attachment", files), ("document", docs)):
            for f in group:
                content: Any = f.source
                if isinstance(f.source, Path):
                    content = stack.enter_context(f.source.open("rb"))
                out.append((name, (f.filename, content, f.content_type)))
        return out

    return Call("POST", path, _status, headers=headers, parts=parts, retry_transport=True)


def _since(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidRequest(400, detail="since : une date avec fuseau horaire est attendue.")
        return value.isoformat()
    return value


def list_page(
    mailbox: str,
    *,
    folder: str | None = None,
    unread: bool | None = None,
    since: datetime | str | None = None,
    patient_ins: str | None = None,
    document_type: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[Page]:
    params: dict[str, str] = {}
    for name, value in (
        ("folder", folder),
        ("unread", None if unread is None else ("true" if unread else "false")),
        ("since", _since(since)),
        ("patient_ins", patient_ins),
        ("document_type", document_type),
        ("limit", None if limit is None else str(limit)),
        ("cursor", cursor),
    ):
        if value is not None:
            params[name] = value
    return Call(
        "GET", mailbox_path(mailbox, "messages"), _page, params=params, retry_transport=True
    )


def get_message(mailbox: str, message_id: str, *, peek: bool = False) -> Call[MessageDetail]:
    return Call(
        "GET",
        mailbox_path(mailbox, "messages", message_id),
        _one(MessageDetail.from_json),
        params={"peek": "true"} if peek else None,
        retry_transport=True,
    )


def part_path(mailbox: str, message_id: str, kind: str, index: int) -> str:
    return mailbox_path(mailbox, "messages", message_id, kind, str(index))


def set_flags(
    mailbox: str,
    message_id: str,
    *,
    seen: bool | None = None,
    flagged: bool | None = None,
    add_flags: Sequence[str] = (),
    remove_flags: Sequence[str] = (),
    folder: str | None = None,
) -> Call[MessageSummary]:
    body: dict[str, Any] = {}
    if seen is not None:
        body["seen"] = seen
    if flagged is not None:
        body["flagged"] = flagged
    if add_flags:
        body["add_flags"] = list(add_flags)
    if remove_flags:
        body["remove_flags"] = list(remove_flags)
    if folder is not None:
        body["folder"] = folder
    return Call(
        "PATCH",
        mailbox_path(mailbox, "messages", message_id),
        _one(MessageSummary.from_json),
        json=body,
        retry_transport=folder is None,  # setting flags twice is harmless, moving is not
    )


def delete(mailbox: str, message_id: str) -> Call[None]:
    return Call("DELETE", mailbox_path(mailbox, "messages", message_id), _nothing)


def folders(mailbox: str) -> Call[list[Folder]]:
    return Call(
        "GET", mailbox_path(mailbox, "folders"), _list_of(Folder.from_json), retry_transport=True
    )


def status(mailbox: str, send_id: str) -> Call[MessageStatus]:
    return Call("GET", mailbox_path(mailbox, "sent", send_id), _status, retry_transport=True)


def subscribe(
    mailbox: str, url: str, events: Sequence[str], secret: str | None = None
) -> Call[Subscription]:
    body: dict[str, Any] = {"url": url, "events": list(events)}
    if secret is not None:
        body["secret"] = secret
    return Call("POST", mailbox_path(mailbox, "webhooks"), _one(Subscription.from_json), json=body)


def subscriptions(mailbox: str) -> Call[list[Subscription]]:
    return Call(
        "GET",
        mailbox_path(mailbox, "webhooks"),
        _list_of(Subscription.from_json),
        retry_transport=True,
    )


def unsubscribe(mailbox: str, subscription_id: str) -> Call[None]:
    return Call("DELETE", mailbox_path(mailbox, "webhooks", subscription_id), _nothing)


def deliveries(
    mailbox: str, subscription_id: str, *, limit: int | None = None, cursor: str | None = None
) -> Call[list[WebhookDelivery]]:
    params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
    return Call(
        "GET",
        mailbox_path(mailbox, "webhooks", subscription_id, "deliveries"),
        _list_of(WebhookDelivery.from_json),
        params={k: str(v) for k, v in params.items()},
        retry_transport=True,
    )


def replay(mailbox: str, subscription_id: str, delivery_id: str) -> Call[None]:
    path = mailbox_path(mailbox, "webhooks", subscription_id, "deliveries", delivery_id, "replay")
    return Call("POST", path, _nothing)


def directory_search(query: str, **filters: str | int) -> Call[list[Suggestion]]:
    params = {"q": query, **{k: str(v) for k, v in filters.items()}}
    return Call(
        "GET",
        f"{API}/annuaire/search",
        _list_of(Suggestion.from_json),
        params=params,
        retry_transport=True,
    )


def directory_suggest(query: str, **filters: str | int) -> Call[list[Suggestion]]:
    params = {"q": query, **{k: str(v) for k, v in filters.items()}}
    return Call(
        "GET",
        "/annuaire/suggest",
        _list_of(Suggestion.from_json),
        params=params,
        retry_transport=True,
    )
