"""Delivery Status Notifications: RFC 3464 reports inside an RFC 6522 ``multipart/report``.

Pure functions, no I/O. `build_dsn` writes the whole message by hand (CRLF, 7-bit clean
unless the returned original is 8-bit) so that every byte is under our control: text that
comes from the outside (subject, diagnostic, addresses) is reduced to one printable line
before it reaches a header or a DSN field, so CR/LF cannot inject fields (R23, R24).
The DSN itself must be sent with a null reverse-path, ``MAIL FROM:<>`` (RFC 5321 §4.5.5).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import Message
from email.utils import collapse_rfc2231_value, format_datetime, formataddr
from typing import Literal

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
DEFAULT_MAX_ORIGINAL_SIZE = 10 * 1024 * 1024
FROM_DISPLAY_NAME = "Système de messagerie"

# action: (severity for the Subject, Subject prefix, result shown per recipient, status
# classes allowed with it: RFC 3464 §2.3.3 and §2.3.4 / RFC 3463 §2).
_ACTIONS: dict[str, tuple[int, str, str, str]] = {
    "failed": (4, "Échec de remise", "échec de la remise", "45"),
    "delayed": (3, "Remise retardée", "remise retardée, nouvelles tentatives en cours", "4"),
    "relayed": (2, "Message relayé", "relayé vers un système sans accusé de remise", "2"),
    "expanded": (1, "Remise effectuée", "remis puis redistribué (liste ou alias)", "2"),
    "delivered": (0, "Remise effectuée", "remis dans la boîte aux lettres", "2"),
}
_HEADLINE_FR = {
    "failed": "Votre message n'a pas pu être remis à un ou plusieurs destinataires.",
    "delayed": "La remise de votre message est retardée ; de nouvelles tentatives sont en cours.",
    "relayed": "Votre message a été relayé vers un système qui ne renvoie pas d'accusé de remise.",
    "expanded": "Votre message a été remis puis redistribué (liste ou alias).",
    "delivered": "Votre message a été remis avec succès.",
}
_HEADLINE_EN = {
    "failed": "Your message could not be delivered to one or more recipients.",
    "delayed": "Delivery of your message is delayed; the system keeps retrying.",
    "relayed": "Your message was relayed to a system that does not return delivery reports.",
    "expanded": "Your message was delivered and expanded to further recipients.",
    "delivered": "Your message was delivered successfully.",
}
_CLASS = {"2": "succès", "4": "erreur temporaire", "5": "erreur définitive"}
# RFC 3463 §2: class "." subject "." detail.
_STATUS_RE = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_TYPED_RE = re.compile(r"([A-Za-z][A-Za-z0-9-]*)[ \t]*;[ \t]*(.*)", re.DOTALL)
_MSGID_RE = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,900}>")
_EOL_RE = re.compile(rb"\r\n|\r|\n")
_XTEXT_RE = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-Fa-f]{2})*")  # xchar: "!".."~" but "+", "="
_HEXCHAR_RE = re.compile(rb"\+([0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of the report (RFC 3464 §2.3)."""

    final_recipient: str
    action: Action
    status: str
    original_recipient: str | None = None
    remote_mta: str | None = None
    diagnostic_code: str | None = None
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None


@dataclass(frozen=True)
class ParsedDSN:
    """A DSN read back: field names are lower-case, values unfolded and stripped."""

    report_type: str
    per_message: dict[str, str]
    recipients: list[dict[str, str]]
    human_readable: str
    returned_content_type: str | None
    returned_content: bytes | None

    @property
    def reporting_mta(self) -> str:
        return self.per_message["reporting-mta"]

    @property
    def original_envelope_id(self) -> str | None:
        return self.per_message.get("original-envelope-id")


def xtext_encode(value: str) -> str:
    """RFC 3461 §4: bytes "!".."~" except "+" and "=" stay, the rest become "+" 2HEXDIG."""
    return "".join(
        chr(b) if 0x21 <= b <= 0x7E and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in value.encode("utf-8")
    )


def xtext_decode(value: str) -> str:
    """Inverse of `xtext_encode` (RFC 3461 §4); lower-case hex digits are tolerated."""
    if not _XTEXT_RE.fullmatch(value):
        raise ValueError(f"invalid xtext (RFC 3461 §4): {value[:80]!r}")
    raw = _HEXCHAR_RE.sub(lambda m: bytes([int(m[1], 16)]), value.encode("ascii"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("invalid xtext: the decoded bytes are not UTF-8") from exc


def split_typed(value: str, default_type: str = "rfc822") -> tuple[str, str]:
    """Split ``"rfc822; a@b"`` into ``("rfc822", "a@b")`` (RFC 3464 §2.1.2 / §2.3.6)."""
    match = _TYPED_RE.fullmatch(value.strip())
    return (match.group(1), match.group(2).strip()) if match else (default_type, value.strip())


def _clean(text: str, limit: int = 900) -> str:
    """One printable line: CR, LF and every other control become spaces (no injection)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


def _ascii(text: str, limit: int = 900) -> str:
    """DSN fields are 7-bit (RFC 3464 §2.1.1): non-ASCII as RFC 6533 §3 ``\\x{HEX}``."""
    return "".join(c if c.isascii() else f"\\x{{{ord(c):X}}}" for c in _clean(text))[:limit]


def _fold(name: str, value: str) -> str:
    """RFC 5322 §2.2.3 folding of a clean ASCII value at spaces, lines of 78 when possible."""
    head = line = f"{name}:"
    lines: list[str] = []
    for word in value.split(" "):
        if line != head and len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(text: str) -> str:
    """RFC 2047 B encoded-words of at most 39 UTF-8 bytes each, split on characters."""
    words: list[str] = []
    chunk = ""
    for char in text:
        if len((chunk + char).encode("utf-8")) > 39:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(
        f"=?UTF-8?B?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words
    )


def _address(value: str, what: str) -> str:
    value = value.strip()
    if not value or not value.isascii() or not value.isprintable():
        raise ValueError(f"{what} must be a non-empty printable ASCII address: {value!r}")
    try:
        return str(Address(addr_spec=value))
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{what} is not a valid addr-spec: {value!r}") from exc


def _msg_id(value: str | None) -> str | None:
    """The original Message-ID in angle brackets, or None when unusable (hostile input)."""
    if value is None:
        return None
    value = value.strip()
    value = value if value.startswith("<") else f"<{value}>"
    return value if _MSGID_RE.fullmatch(value) else None


def _date(when: datetime) -> str:
    """RFC 5322 §3.3 date-time; a naive datetime is taken as UTC."""
    return format_datetime(when if when.tzinfo else when.replace(tzinfo=UTC))


def _human_date(when: datetime) -> str:
    return f"{(when if when.tzinfo else when.replace(tzinfo=UTC)):%d/%m/%Y %H:%M:%S %z}"


def _crlf(data: bytes) -> bytes:
    return _EOL_RE.sub(b"\r\n", data)


def _header_section(data: bytes, cap: int) -> bytes:
    data = _crlf(data)
    end = data.find(b"\r\n\r\n")
    data = data[: end + 2] if end >= 0 else data.lstrip(b"\r\n")
    if len(data) > cap:
        data = data[: data.rfind(b"\r\n", 0, cap) + 2]
    return data if not data or data.endswith(b"\r\n") else data + b"\r\n"


def _check(rcpt: RecipientStatus) -> None:
    if rcpt.action not in _ACTIONS:
        raise ValueError(f"unknown DSN action {rcpt.action!r} (RFC 3464 §2.3.3)")
    if not _STATUS_RE.fullmatch(rcpt.status):
        raise ValueError(f"status {rcpt.status!r} is not an RFC 3463 enhanced status code")
    if rcpt.status[0] not in _ACTIONS[rcpt.action][3]:
        raise ValueError(f"status {rcpt.status} does not fit action {rcpt.action!r}")


def _typed_field(name: str, value: str, default_type: str) -> str:
    """``Name: type; value`` fields (RFC 3464 §2.1.2 address-type, mta-name-type...)."""
    return _fold(name, "; ".join(_ascii(x) for x in split_typed(value, default_type)))


def _status_fields(
    reporting_mta: str,
    envid: str | None,
    arrival_date: datetime | None,
    recipients: Sequence[RecipientStatus],
) -> str:
    """The message/delivery-status body: per-message then per-recipient blocks (§2.1)."""
    out = ""
    if envid:  # RFC 3464 §2.2.1, RFC 3461 §6.3(a); xtext (§4) only when not plain printable
        if len(envid) > 100:
            raise ValueError("ENVID longer than 100 characters (RFC 3461 §4.4)")
        plain = all("!" <= c <= "~" for c in envid)
        out += _fold("Original-Envelope-Id", envid if plain else xtext_encode(envid))
    out += _typed_field("Reporting-MTA", reporting_mta, "dns")  # §2.2.2
    if arrival_date is not None:
        out += _fold("Arrival-Date", _date(arrival_date))  # §2.2.5
    for rcpt in recipients:
        out += "\r\n"
        if rcpt.original_recipient:  # §2.3.1, RFC 3461 §6.3(d): only from ORCPT, as given
            orcpt = rcpt.original_recipient.strip()
            orcpt = orcpt if _TYPED_RE.fullmatch(orcpt) else f"rfc822;{orcpt}"
            out += _fold("Original-Recipient", _ascii(orcpt))
        out += _typed_field("Final-Recipient", rcpt.final_recipient, "rfc822")  # §2.3.2
        out += f"Action: {rcpt.action}\r\nStatus: {rcpt.status}\r\n"  # §2.3.3, §2.3.4
        if rcpt.remote_mta:  # §2.3.5
            out += _typed_field("Remote-MTA", rcpt.remote_mta, "dns")
        if rcpt.diagnostic_code:  # §2.3.6
            out += _typed_field("Diagnostic-Code", rcpt.diagnostic_code, "smtp")
        if rcpt.last_attempt is not None:  # §2.3.7
            out += _fold("Last-Attempt-Date", _date(rcpt.last_attempt))
        if rcpt.will_retry_until is not None and rcpt.action == "delayed":  # §2.3.9
            out += _fold("Will-Retry-Until", _date(rcpt.will_retry_until))
    return out


def _human_text(
    worst: str,
    reporting_mta: str,
    subject: str,
    message_id: str | None,
    arrival_date: datetime | None,
    recipients: Sequence[RecipientStatus],
) -> str:
    lines = [f"Ceci est un message automatique du système de messagerie {_clean(reporting_mta)}."]
    lines += ["", _HEADLINE_FR[worst], ""]
    if subject:
        lines.append(f"Objet du message : {subject}")
    if message_id:
        lines.append(f"Identifiant du message : {message_id}")
    if arrival_date is not None:
        lines.append(f"Reçu le : {_human_date(arrival_date)}")
    for rcpt in recipients:
        lines += ["", f"Destinataire : {_clean(split_typed(rcpt.final_recipient)[1])}"]
        lines.append(
            f"  Résultat : {_ACTIONS[rcpt.action][2]} ({rcpt.status}, {_CLASS[rcpt.status[0]]})"
        )
        if rcpt.diagnostic_code:
            lines.append(f"  Diagnostic : {_clean(rcpt.diagnostic_code)}")
        if rcpt.remote_mta:
            lines.append(f"  Serveur distant : {_clean(split_typed(rcpt.remote_mta, 'dns')[1])}")
        if rcpt.will_retry_until is not None and rcpt.action == "delayed":
            lines.append(f"  Nouvelles tentatives jusqu'au : {_human_date(rcpt.will_retry_until)}")
    lines += ["", f"{_HEADLINE_EN[worst]} This is an automatic delivery status notification."]
    return "\r\n".join(lines) + "\r\n"


def _quoted_printable(text: str) -> bytes:
    """RFC 2045 §6.7, line by line so that hard breaks are CRLF and soft breaks too."""
    return b"\r\n".join(
        binascii.b2a_qp(line.encode("utf-8")).replace(b"\n", b"\r\n") for line in text.split("\r\n")
    )


def _returned_part(
    worst: str, ret: str | None, headers: bytes, message: bytes | None, cap: int
) -> tuple[str, bytes]:
    """Part 3 (RFC 6522 §3, RFC 3461 §4.3): RET=FULL asks for the whole message in a
    *failure* report; otherwise, when RET is absent or over `cap`, the header section."""
    if ret == "FULL" and worst == "failed" and message is not None and len(message) <= cap:
        message = _crlf(message)
        return "message/rfc822", message if message.endswith(b"\r\n") else message + b"\r\n"
    return "text/rfc822-headers", _header_section(headers or message or b"", cap)


def build_dsn(
    *,
    reporting_mta: str,
    from_address: str,
    to_address: str,
    recipients: Sequence[RecipientStatus],
    original_headers: bytes,
    original_message: bytes | None,
    ret: Literal["FULL", "HDRS"] | None,
    envid: str | None,
    arrival_date: datetime | None,
    original_message_id: str | None,
    original_subject: str | None,
    message_id_domain: str,
    now: datetime | None = None,
    max_original_size: int = DEFAULT_MAX_ORIGINAL_SIZE,
    from_display_name: str = FROM_DISPLAY_NAME,
) -> bytes:
    """Build a DSN (RFC 3464 in RFC 6522 multipart/report) as CRLF bytes ready for DATA.

    ``envid`` and ``original_recipient`` are the xtext-decoded ENVID / ORCPT values.
    """
    if not recipients:
        raise ValueError("a DSN needs at least one per-recipient block (RFC 3464 §2.1)")
    for rcpt in recipients:
        _check(rcpt)
    domain = message_id_domain.strip()
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", domain):
        raise ValueError(f"invalid message_id_domain {message_id_domain!r}")
    now = now or datetime.now(UTC)
    worst = max((r.action for r in recipients), key=lambda action: _ACTIONS[action][0])
    subject = _clean(original_subject or "", 250)
    msg_id = _msg_id(original_message_id)

    status = _status_fields(reporting_mta, envid, arrival_date, recipients).encode("ascii")
    text = _quoted_printable(
        _human_text(worst, reporting_mta, subject, msg_id, arrival_date, recipients)
    )
    returned_type, returned = _returned_part(
        worst, ret, original_headers, original_message, max_original_size
    )
    eight_bit = not returned.isascii()
    boundary = f"=_mssante-dsn-{secrets.token_hex(16)}"
    while boundary.encode("ascii") in returned:  # pragma: no cover - 128 random bits
        boundary = f"=_mssante-dsn-{secrets.token_hex(16)}"

    sender, name = _address(from_address, "from_address"), _clean(from_display_name, 64)
    if name.isascii():
        head = _fold("From", formataddr((name, sender)))
    else:
        head = f"From: {_encoded_words(name)}\r\n <{sender}>\r\n"
    head += f"To: {_address(to_address, 'to_address')}\r\n"
    head += f"Date: {_date(now)}\r\n"
    head += f"Message-ID: <dsn.{int(now.timestamp())}.{secrets.token_hex(12)}@{domain}>\r\n"
    subject = f"{_ACTIONS[worst][1]} : {subject}" if subject else _ACTIONS[worst][1]
    head += f"Subject: {_encoded_words(subject)}\r\n"  # always non-ASCII (French)
    if msg_id:  # RFC 5322 §3.6.4, R27
        head += f"In-Reply-To: {msg_id}\r\nReferences: {msg_id}\r\n"
    head += "Auto-Submitted: auto-replied\r\n"  # RFC 3834 §5
    head += "MIME-Version: 1.0\r\n"
    head += "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    head += f'\tboundary="{boundary}"\r\n'
    if eight_bit:
        head += "Content-Transfer-Encoding: 8bit\r\n"
    cte = "\r\nContent-Transfer-Encoding: 8bit" if eight_bit else ""
    text_type = 'Content-Type: text/plain; charset="UTF-8"'  # R26
    parts = [
        (f"{text_type}\r\nContent-Transfer-Encoding: quoted-printable", text),
        ("Content-Type: message/delivery-status", status),  # RFC 3464 §2.1
        (f"Content-Type: {returned_type}{cte}", returned),
    ]
    body = b"".join(f"\r\n--{boundary}\r\n{h}\r\n\r\n".encode("ascii") + c for h, c in parts)
    preamble = "\r\nThis is a MIME-encapsulated delivery status notification (RFC 3464).\r\n"
    return (head + preamble).encode("ascii") + body + f"\r\n--{boundary}--\r\n".encode("ascii")


def _block_fields(block: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in block.raw_items():
        text = " ".join(str(value).split())
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        fields.setdefault(name.strip().lower(), text)
    return fields


def _parse(data: bytes) -> ParsedDSN:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if msg.get_content_type() != "multipart/report":
        raise ValueError(f"not a DSN: {msg.get_content_type()} is not multipart/report (RFC 6522)")
    param = msg.get_param("report-type")
    report_type = collapse_rfc2231_value(param) if isinstance(param, tuple) else param
    if not isinstance(report_type, str) or report_type.strip().lower() != "delivery-status":
        raise ValueError(f"not a DSN: report-type is {report_type!r}, not delivery-status")
    payload = msg.get_payload()
    parts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    if not parts:
        raise ValueError("not a DSN: multipart/report without body parts")
    index = next(
        (i for i, p in enumerate(parts) if p.get_content_type() == "message/delivery-status"), -1
    )
    blocks = parts[index].get_payload() if index >= 0 else None
    if not isinstance(blocks, list):
        raise ValueError("not a DSN: no message/delivery-status part (RFC 3464 §2.1)")
    fields = [f for f in (_block_fields(b) for b in blocks if isinstance(b, Message)) if f]
    if not fields or "reporting-mta" not in fields[0]:
        raise ValueError("not a DSN: per-message fields lack Reporting-MTA (RFC 3464 §2.2.2)")
    if len(fields) < 2:
        raise ValueError("not a DSN: no per-recipient fields (RFC 3464 §2.3)")
    for rcpt in fields[1:]:
        missing = [k for k in ("final-recipient", "action", "status") if k not in rcpt]
        if missing:
            raise ValueError(f"not a DSN: a per-recipient block lacks {', '.join(missing)}")
        rcpt["action"] = rcpt["action"].lower()
    human = ""
    if index > 0 and parts[0].get_content_maintype() == "text":
        raw = parts[0].get_payload(decode=True)
        if isinstance(raw, bytes):
            try:
                human = raw.decode(parts[0].get_content_charset() or "utf-8", "replace")
            except LookupError:
                human = raw.decode("utf-8", "replace")
    returned_type: str | None = None
    returned: bytes | None = None
    if index + 1 < len(parts):
        third = parts[index + 1]
        returned_type = third.get_content_type()
        inner = third.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            returned = inner[0].as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
        else:
            body = third.get_payload(decode=True)
            returned = body if isinstance(body, bytes) else None
    return ParsedDSN(
        report_type.strip().lower(), fields[0], fields[1:], human, returned_type, returned
    )


def parse_dsn(data: bytes) -> ParsedDSN:
    """Read a DSN back; any input that is not a well-formed DSN raises ValueError."""
    try:
        return _parse(bytes(data))
    except ValueError:
        raise
    except Exception as exc:  # hostile input may trip corner cases of the stdlib parser
        raise ValueError(f"not a DSN: unparsable message ({type(exc).__name__})") from exc
