"""Just enough RFC 5322 header handling for the MTA: find, read and add header fields.

The MTA never re-serialises a message: headers are relayed byte for byte (R20); it only
prepends trace fields (`Received`, RFC 5321 §4.4) and, on submission, the fields a
submission server may add (`Message-ID`, `Date`, RFC 6409 §8).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime

_FIELD_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:", re.MULTILINE)


def header_section(data: bytes) -> bytes:
    """The header section including its final CRLF, without the blank line."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data if data.endswith(b"\r\n") else data + b"\r\n"
    return data[: end + 2]


def header_values(headers: bytes, name: str) -> list[str]:
    """Unfolded values of every field called `name` (case-insensitive)."""
    wanted = name.lower().encode("ascii")
    out: list[str] = []
    lines = headers.split(b"\r\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        match = _FIELD_NAME.match(line)
        if not match or match.group(1).lower() != wanted:
            continue
        value = line[match.end() :]
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            value += b" " + lines[i].strip()
            i += 1
        out.append(value.strip().decode("utf-8", "replace"))
    return out


def header_value(headers: bytes, name: str) -> str | None:
    values = header_values(headers, name)
    return values[0] if values else None


def message_id_of(data: bytes) -> str | None:
    value = header_value(header_section(data), "Message-ID")
    if not value:
        return None
    return value.strip()[:998]


def new_message_id(domain: str) -> str:
    """RFC 5322 §3.6.4 msg-id, unique by randomness."""
    return f"<{secrets.token_hex(16)}@{domain}>"


def received_field(
    *,
    from_host: str,
    peer_ip: str,
    by_host: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    tls: str | None,
    now: datetime | None = None,
) -> bytes:
    """A `Received` trace field (RFC 5321 §4.4), folded, ending with CRLF."""
    clean = re.sub(r"[^\x21-\x7e]", "?", from_host)[:255]
    parts = [f"Received: from {clean} ([{peer_ip}])", f"\tby {by_host} with {protocol}"]
    if tls:
        parts[-1] += f" ({tls})"
    parts.append(f"\tid {queue_id}" + (f" for <{recipient}>" if recipient else ""))
    parts[-1] += f"; {format_datetime(now or datetime.now(UTC))}"
    return ("\r\n".join(parts) + "\r\n").encode("ascii", "replace")


def ensure_submission_fields(data: bytes, domain: str) -> bytes:
    """Add `Date` and `Message-ID` when a submitted message lacks them (RFC 6409 §8.2, §8.3)."""
    headers = header_section(data)
    extra = b""
    if header_value(headers, "Message-ID") is None:
        extra += f"Message-ID: {new_message_id(domain)}\r\n".encode("ascii")
    if header_value(headers, "Date") is None:
        extra += f"Date: {format_datetime(datetime.now(UTC))}\r\n".encode("ascii")
    return extra + data if extra else data
