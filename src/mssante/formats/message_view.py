"""A stored message as the HTTP API shows it: headers, text, HTML and attachments.

Pure functions over the RFC 5322 bytes, no I/O. Nothing here raises on what a message holds
(hostile MIME arrives from any operator of the trust space): the stdlib parser runs with the
``compat32`` policy (no lazy header parsing that could raise later), header values are
decoded by hand (RFC 2047), and every failure becomes a French note in ``problems`` beside
whatever could be read.

Attachments are the leaf parts other than the chosen text and HTML bodies; a ``message/*``
part (a forwarded message, the report of a DSN/MDN) is one attachment, never descended
into. Their ``index`` is their rank in that order, the same for `view` and `attachment`.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

MAX_HEADERS = 200
MAX_HEADER_CHARS = 4000
_CTYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_XDM = re.compile(r"(?i)^ihe_xdm\.zip$")


@dataclass(frozen=True)
class AttachmentInfo:
    index: int
    filename: str
    content_type: str
    size: int


@dataclass
class MessageView:
    sender: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    subject: str = ""
    date: datetime | None = None
    message_id: str | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    text: str = ""
    html: str | None = None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    has_xdm: bool = False
    problems: list[str] = field(default_factory=list)


def decode_header_value(value: object) -> str:
    """An unstructured header value, RFC 2047 words decoded, unfolded; never raises."""
    if value is None:
        return ""
    text = str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        text = str(email.header.make_header(email.header.decode_header(text)))
    except Exception:  # noqa: BLE001, S110 - a malformed encoded word stays as written
        pass
    return " ".join(text.split())[:MAX_HEADER_CHARS]


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _values(msg: Message, name: str) -> list[str]:
    try:
        return [str(v) for k, v in msg.raw_items() if k.lower() == name.lower()]
    except Exception:  # noqa: BLE001
        return []


def _addresses(msg: Message, name: str) -> list[str]:
    values = [decode_header_value(v) for v in _values(msg, name)]
    try:
        return [a for _, a in getaddresses(values) if a][:1000]
    except Exception:  # noqa: BLE001
        return []


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type().lower()
    except Exception:  # noqa: BLE001
        return "application/octet-stream"
    return ctype if _CTYPE.fullmatch(ctype) else "application/octet-stream"


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        return None
    if name is None:
        return None
    cleaned = decode_header_value(name).replace("/", "_").replace("\\", "_").strip()
    return cleaned[:255] or None


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
    except Exception:  # noqa: BLE001
        disposition = ""
    return disposition == "attachment" or _filename(part) is not None


def _leaves(part: Message, depth: int = 0) -> Iterator[Message]:
    """Leaf parts in order; ``message/*`` parts count as leaves (RFC 2046 §5.2)."""
    if depth > 50:
        return
    if part.get_content_maintype() == "message" or not part.is_multipart():
        yield part
        return
    payload = part.get_payload()
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                yield from _leaves(sub, depth + 1)


def _text_of(part: Message) -> str:
    data = part_bytes(part)
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:  # noqa: BLE001
        charset = "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def part_bytes(part: Message) -> bytes:
    """The decoded content of a leaf part (the whole inner message for ``message/*``)."""
    try:
        if part.get_content_maintype() != "message" and not part.is_multipart():
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return data
        whole = part.as_bytes()
    except Exception:  # noqa: BLE001 - fall back on the raw text of the payload
        payload = part.get_payload()
        text = payload if isinstance(payload, str) else ""
        return text.encode("utf-8", "surrogateescape")
    for separator in (b"\r\n\r\n", b"\n\n"):
        _, found, body = whole.partition(separator)
        if found:
            return body
    return b""


def _bodies(leaves: list[Message]) -> tuple[Message | None, Message | None]:
    text = html = None
    for part in leaves:
        if _is_attachment(part):
            continue
        kind = _content_type(part)
        if kind == "text/plain" and text is None:
            text = part
        elif kind == "text/html" and html is None:
            html = part
    return text, html


def _attachment_parts(msg: Message) -> list[Message]:
    leaves = list(_leaves(msg))
    text, html = _bodies(leaves)
    return [p for p in leaves if p is not text and p is not html]


def _name_for(part: Message, index: int) -> str:
    name = _filename(part)
    if name:
        return name
    ctype = _content_type(part)
    extension = ".eml" if ctype == "message/rfc822" else mimetypes.guess_extension(ctype) or ""
    return f"piece-jointe-{index + 1}{extension}"


def view(raw: bytes, *, with_bodies: bool = True) -> MessageView:
    """What the API shows of a message; ``with_bodies`` false skips text and sizes."""
    out = MessageView()
    try:
        msg = _parse(raw)
    except Exception as exc:  # noqa: BLE001
        out.problems.append(f"Message illisible ({type(exc).__name__}).")
        return out
    try:
        for name, value in list(msg.raw_items())[:MAX_HEADERS]:
            out.headers.setdefault(name.strip()[:100], []).append(decode_header_value(value))
        senders = _addresses(msg, "From")
        out.sender = (
            senders[0] if senders else decode_header_value(next(iter(_values(msg, "From")), ""))
        )
        out.to = _addresses(msg, "To")
        out.cc = _addresses(msg, "Cc")
        out.subject = decode_header_value(next(iter(_values(msg, "Subject")), ""))
        message_id = "".join(next(iter(_values(msg, "Message-ID")), "").split())
        out.message_id = message_id[:998] or None
        date = next(iter(_values(msg, "Date")), "")
        if date:
            try:
                parsed = parsedate_to_datetime(date)
                out.date = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
            except (TypeError, ValueError, IndexError, OverflowError):
                out.problems.append("En-tête Date illisible.")
    except Exception as exc:  # noqa: BLE001
        out.problems.append(f"En-têtes partiellement illisibles ({type(exc).__name__}).")
    try:
        leaves = list(_leaves(msg))
        text, html = _bodies(leaves)
        parts = [p for p in leaves if p is not text and p is not html]
        for index, part in enumerate(parts):
            name = _name_for(part, index)
            out.has_xdm = out.has_xdm or bool(_XDM.match(name))
            size = len(part_bytes(part)) if with_bodies else 0
            out.attachments.append(AttachmentInfo(index, name, _content_type(part), size))
        if with_bodies:
            out.text = _text_of(text) if text is not None else ""
            out.html = _text_of(html) if html is not None else None
    except Exception as exc:  # noqa: BLE001
        out.problems.append(f"Structure MIME partiellement illisible ({type(exc).__name__}).")
    return out


def attachment(raw: bytes, index: int) -> tuple[AttachmentInfo, bytes] | None:
    """The attachment of rank `index` and its decoded bytes, or None."""
    try:
        parts = _attachment_parts(_parse(raw))
    except Exception:  # noqa: BLE001
        return None
    if not 0 <= index < len(parts):
        return None
    part = parts[index]
    data = part_bytes(part)
    return AttachmentInfo(index, _name_for(part, index), _content_type(part), len(data)), data
