"""Message Disposition Notifications: RFC 8098 inside an RFC 6522 ``multipart/report``.

Pure functions, no I/O, like `mssante.formats.dsn`. `build_mdn` writes the message by hand
(CRLF): a French UTF-8 text (R26), the ``message/disposition-notification`` fields (7-bit,
RFC 8098 §3.1.1: a French error label is transliterated there, whole in the text), then the
original message or its header section. Outside text is reduced to one printable line
before it reaches a header or a field, so CR/LF cannot inject fields.

MSSanté (HL7-LPS ``struct-msg-mdn.md``, SPEC §7.5, R44): a document that cannot be
integrated gets the subject ``[KO Intégration système !][<code>] XDM/1.0/DDM+…`` and
``Disposition: automatic-action/MDN-sent-automatically; processed/Error: <code>^<label>``
(codes 900–906), plus an RFC 8098 ``Error:`` field for standard readers. The volet returns
the original ``IHE_XDM.zip`` and PDF as further parts (`document_attachments`), after the
three parts of RFC 6522 §3, so readers that stop at three still find the report.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
import secrets
import unicodedata
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Literal

# One-line cleaning, folding and encoded-words are shared with the DSN writer.
from mssante.formats.dsn import _clean, _encoded_words, _fold, _quoted_printable, split_typed
from mssante.formats.mime import header_section, header_values

DispositionType = Literal["displayed", "deleted", "dispatched", "processed"]
AUTOMATIC = "automatic-action/MDN-sent-automatically"
MANUAL = "manual-action/MDN-sent-manually"
KO_PREFIX = "[KO Intégration système !]"
# HL7-LPS error-codes.md, table applicationErrorCondition (SPEC §2, R44).
INTEGRATION_ERRORS: dict[str, str] = {
    "900": "Version du document incorrecte lors d'une demande de remplacement/suppression",
    "901": "Auteur non autorisé à remplacer ou supprimer un document",
    "902": "Identifiant patient inconnu",
    "903": "INS non présent dans le document",
    "904": "L'INS transmis ne correspond pas exactement à celui stocké dans la base du "
    "consommateur",
    "905": "L'INS transmis n'est pas complet",
    "906": "Erreur 'Autre'",
}
_TYPES = ("displayed", "deleted", "dispatched", "processed")
_HEADLINE = {
    "displayed": "Le message ci-dessous a été affiché par son destinataire. Cet accusé ne "
    "garantit pas qu'il a été lu ni compris.",
    "processed": "Le message ci-dessous a été traité par le système du destinataire.",
    "deleted": "Le message ci-dessous a été supprimé par son destinataire, lu ou non.",
    "dispatched": "Le message ci-dessous a été transmis (transféré, imprimé…) sans avoir "
    "nécessairement été affiché.",
}
_SUBJECT = {
    "displayed": "Accusé de lecture",
    "processed": "Accusé de traitement",
    "deleted": "Message supprimé sans lecture",
    "dispatched": "Message transmis",
}
_MODE_RE = re.compile(
    r"(manual-action|automatic-action)/(MDN-sent-manually|MDN-sent-automatically)"
)
_DISPOSITION_RE = re.compile(
    r"\s*([A-Za-z-]+)\s*/\s*([A-Za-z-]+)\s*;\s*([A-Za-z-]+)\s*(?:/\s*(.*?))?\s*", re.DOTALL
)
_MSGID_RE = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,900}>")
_CODE_RE = re.compile(r"[A-Za-z0-9._-]{1,16}")
_KO_RE = re.compile(r"^\s*\[KO Int[ée]gration syst[èe]me !\]\s*\[\s*([^\]\s]+)\s*\]", re.I)
_EOL_RE = re.compile(rb"\r\n|\r|\n")
_DOC_ATTACHMENT_RE = re.compile(r"(?i)^(ihe_xdm\.zip|.*\.pdf)$")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Decision:
    """Whether to send a MDN (R25): ``send`` if requested; ``needs_confirmation`` when the
    user must agree first (RFC 8098 §2.1); ``to`` the Disposition-Notification-To addresses."""

    send: bool
    needs_confirmation: bool
    to: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class ParsedMDN:
    """A MDN read back: field names lower-case, values unfolded and stripped."""

    subject: str
    fields: dict[str, str]
    reporting_ua: str | None
    original_recipient: str | None
    final_recipient: str
    original_message_id: str | None
    disposition: str
    action_mode: str
    sending_mode: str
    disposition_type: str
    modifiers: tuple[str, ...]
    error_code: str | None
    error_label: str | None
    human_readable: str
    returned_content_type: str | None
    returned_content: bytes | None
    attachments: tuple[str, ...]

    @property
    def final_recipient_address(self) -> str:
        return split_typed(self.final_recipient)[1]

    @property
    def is_error(self) -> bool:
        return self.error_code is not None or any(
            m.lower().startswith("error") for m in self.modifiers
        )

    @property
    def subject_error_code(self) -> str | None:
        """The code of a ``[KO Intégration système !][<code>]`` subject (R44), if any."""
        match = _KO_RE.match(self.subject)
        return match.group(1) if match else None


def integration_error(code: int | str) -> tuple[str, str]:
    """``(code, label)`` of an integration failure 900–906 (R44), for `build_mdn`."""
    key = str(code).strip()
    if key not in INTEGRATION_ERRORS:
        raise ValueError(f"unknown integration error code {code!r}; expected 900-906")
    return key, INTEGRATION_ERRORS[key]


def _ascii(text: str, limit: int = 900) -> str:
    """Transliterated 7-bit line for the disposition fields (RFC 8098 §3.1.1)."""
    text = _clean(text.replace("’", "'"), limit)
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c if " " <= c <= "~" else "?" for c in plain)


def _header(name: str, text: str) -> str:
    text = _clean(text, 900)
    return _fold(name, text) if text.isascii() else f"{name}: {_encoded_words(text)}\r\n"


def _decoded(value: str | None) -> str:
    """An unstructured header value with RFC 2047 words decoded; never raises."""
    if not value:
        return ""
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        return _clean(str(make_header(decode_header(value))))
    except (ValueError, LookupError, UnicodeError):
        return _clean(value)


def _addr(value: str, what: str) -> str:
    text = split_typed(value)[1]
    address = parseaddr(text)[1] if "<" in text else text.strip()
    if not re.fullmatch(r"[\x21-\x3b\x3d\x3f-\x7e]{1,254}@[A-Za-z0-9.-]{1,253}", address):
        raise ValueError(f"{what} is not a valid address: {value!r}")
    return address


def _values(headers: Mapping[str, str] | bytes, name: str) -> list[str]:
    if isinstance(headers, bytes | bytearray):
        return header_values(header_section(_EOL_RE.sub(b"\r\n", bytes(headers))), name)
    return [str(v) for k, v in headers.items() if k.strip().lower() == name.lower()]


def _is_mdn_content_type(value: str | None) -> bool:
    value = (value or "").strip().lower()
    report = re.search(r";\s*report-type\s*=\s*\"?disposition-notification\"?\s*(;|$)", value)
    return value.startswith("multipart/report") and report is not None


def should_send_mdn(headers: Mapping[str, str] | bytes) -> Decision:
    """R25 / RFC 8098 §2: a MDN only when ``Disposition-Notification-To`` asks for one;
    the user confirms first when it differs from ``Return-Path``, when there is no
    Return-Path, or when it names several addresses. Never for a MDN (§2.1), nor when a
    ``required`` option is not understood (§2.2)."""
    requested = _values(headers, "Disposition-Notification-To")
    if not requested:
        return Decision(False, False, (), "no Disposition-Notification-To (RFC 8098 §2.1)")
    if _is_mdn_content_type(next(iter(_values(headers, "Content-Type")), None)):
        return Decision(False, False, (), "the message is itself a MDN (RFC 8098 §2.1)")
    to: list[str] = []
    for _, address in getaddresses(requested):
        try:
            candidate = _addr(address, "Disposition-Notification-To")
        except ValueError:
            continue
        if candidate.lower() not in (a.lower() for a in to):
            to.append(candidate)
    if not to:
        return Decision(False, False, (), "Disposition-Notification-To has no valid address")
    for option in ";".join(_values(headers, "Disposition-Notification-Options")).split(";"):
        attribute, _, rest = option.partition("=")
        if rest.split(",")[0].strip().lower() == "required":
            reason = f"required option {attribute.strip()!r} is not supported (RFC 8098 §2.2)"
            return Decision(False, False, tuple(to), reason)
    return_path = parseaddr(next(iter(_values(headers, "Return-Path")), ""))[1]
    if len(to) > 1:
        return Decision(True, True, tuple(to), "several addresses ask for a MDN: confirm")
    if not return_path:
        return Decision(True, True, tuple(to), "no Return-Path to compare with: confirm")
    if return_path.lower() != to[0].lower():
        reason = "Disposition-Notification-To differs from Return-Path (RFC 8098 §2.1): confirm"
        return Decision(True, True, tuple(to), reason)
    return Decision(True, False, tuple(to), "requested by the sender")


def _param(name: str, value: str) -> str:
    value = _clean(value, 200).replace('"', "'").replace("\\", "_") or "fichier"
    if value.isascii():
        return f'{name}="{value}"'
    return f"{name}*=UTF-8''{urllib.parse.quote(value, safe='')}"


def _attachment_part(item: Attachment) -> tuple[str, bytes]:
    ctype = item.content_type.strip().lower()
    if not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", ctype):
        ctype = "application/octet-stream"
    head = (
        f"Content-Type: {ctype}; {_param('name', item.filename)}\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment; {_param('filename', item.filename)}"
    )
    encoded = base64.b64encode(item.data)
    return head, b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def _subject(original: str, disposition: str, code: str, prefix: str) -> str:
    """R44 ``[KO Intégration système !][<code>] …`` on error; the original ``XDM/1.0/DDM+``
    subject on success (volet); a French prefix before any other subject."""
    if code:
        return f"{_clean(prefix)}[{code}] {original}".strip()
    if original.upper().startswith("XDM/1.0/DDM+"):
        return original
    return f"{_SUBJECT[disposition]} : {original}".rstrip(" :")


def build_mdn(
    original_headers: bytes,
    *,
    reporting_ua: str,
    final_recipient: str,
    message_id_domain: str,
    original_recipient: str | None = None,
    disposition: DispositionType = "processed",
    mode: str = AUTOMATIC,
    error: tuple[str, str] | None = None,
    error_style: Literal["mssante", "rfc8098"] = "mssante",
    subject: str | None = None,
    subject_prefix: str = KO_PREFIX,
    from_address: str | None = None,
    to_address: str | None = None,
    original_message: bytes | None = None,
    attachments: Sequence[Attachment] = (),
    now: datetime | None = None,
) -> bytes:
    """Build a MDN (RFC 8098) as CRLF bytes ready for DATA, sent with ``MAIL FROM:<>``.

    ``error=(code, label)`` makes it a failure report; with the default ``"mssante"``
    style the Disposition reads ``…; processed/Error: <code>^<label>`` and the subject
    starts with ``[KO Intégration système !][<code>]`` (R44); ``"rfc8098"`` writes the
    standard ``…; processed/error`` plus ``Error:``. `to_address` defaults to the
    Disposition-Notification-To of the original, `from_address` to the final recipient.
    `original_message` is returned as ``message/rfc822``, otherwise the header section as
    ``text/rfc822-headers``; `attachments` follow as further parts.
    """
    if disposition not in _TYPES:
        raise ValueError(f"unknown disposition type {disposition!r} (RFC 8098 §3.2.6.2)")
    if not _MODE_RE.fullmatch(mode):
        raise ValueError(f"invalid disposition mode {mode!r} (RFC 8098 §3.2.6.1)")
    domain = message_id_domain.strip()
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", domain):
        raise ValueError(f"invalid message_id_domain {message_id_domain!r}")
    if error is not None:
        error = (str(error[0]).strip(), _clean(error[1], 300))
        if not _CODE_RE.fullmatch(error[0]):
            raise ValueError(f"invalid error code {error[0]!r}")
    now = now or datetime.now(UTC)
    headers = header_section(_EOL_RE.sub(b"\r\n", original_headers))
    final = _addr(final_recipient, "final_recipient")
    sender = _addr(from_address or final, "from_address")
    if to_address is None:
        to_address = next(iter(should_send_mdn(headers).to), None)
        if to_address is None:
            raise ValueError("no Disposition-Notification-To: pass to_address explicitly")
    recipient = _addr(to_address, "to_address")
    orig_subject = _decoded(next(iter(header_values(headers, "Subject")), None))
    msg_id = next(iter(header_values(headers, "Message-ID")), "").strip()
    msg_id = msg_id if _MSGID_RE.fullmatch(msg_id) else ""
    if original_recipient is None:
        original_recipient = next(iter(header_values(headers, "Original-Recipient")), None)
    code = error[0] if error else ""
    if subject is None:
        subject = _subject(orig_subject, disposition, code, subject_prefix)
    # Part 2: the RFC 8098 §3.1 fields in the order of its grammar, 7-bit.
    fields = _fold("Reporting-UA", _ascii(reporting_ua))
    if original_recipient:
        kind, addr = split_typed(original_recipient)
        fields += _fold("Original-Recipient", f"{_ascii(kind)};{_ascii(addr)}")
    fields += _fold("Final-Recipient", f"rfc822;{final}")
    fields += f"Original-Message-ID: {msg_id}\r\n" if msg_id else ""
    value = f"{mode}; {disposition}"
    if error:
        machine = f"{code}^{_ascii(error[1], 300)}"
        value += f"/Error: {machine}" if error_style == "mssante" else "/error"
        value += f"\r\nError: {machine}"
    fields += f"Disposition: {value}\r\n"  # unfolded: integration engines read one line
    # Part 1: French text (R26).
    automatic = mode.endswith("MDN-sent-automatically")
    how = "automatiquement" if automatic else "par le destinataire"
    lines = [f"Ceci est un accusé de traitement (MDN, RFC 8098) envoyé {how}.", ""]
    if not error:
        lines.append(_HEADLINE[disposition])
    else:
        lines += [
            "Le message ci-dessous n'a pas pu être intégré automatiquement dans le "
            f"logiciel du destinataire pour la raison suivante : {error[1]}",
            f"Code d'erreur : {code}",
        ]
    lines += ["", f"Destinataire : {final}"]
    lines += [f"Objet du message : {orig_subject}"] if orig_subject else []
    lines += [f"Identifiant du message : {msg_id}"] if msg_id else []
    text = _quoted_printable("\r\n".join(lines) + "\r\n")
    # Part 3: the original message, or its header section.
    returned_type, returned = "text/rfc822-headers", headers
    if original_message is not None:
        returned_type, returned = "message/rfc822", _EOL_RE.sub(b"\r\n", original_message)
    returned = returned if returned.endswith(b"\r\n") else returned + b"\r\n"
    eight_bit = not returned.isascii()
    cte = "\r\nContent-Transfer-Encoding: 8bit" if eight_bit else ""
    parts = [
        (
            'Content-Type: text/plain; charset="UTF-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable",
            text,
        ),
        ("Content-Type: message/disposition-notification", fields.encode("ascii")),
        (f"Content-Type: {returned_type}{cte}", returned),
        *(_attachment_part(a) for a in attachments),
    ]
    boundary = f"=_mssante-mdn-{secrets.token_hex(16)}"
    while any(boundary.encode("ascii") in body for _, body in parts):  # pragma: no cover
        boundary = f"=_mssante-mdn-{secrets.token_hex(16)}"

    head = f"From: <{sender}>\r\nTo: <{recipient}>\r\n"
    head += f"Date: {format_datetime(now if now.tzinfo else now.replace(tzinfo=UTC))}\r\n"
    head += f"Message-ID: <mdn.{int(now.timestamp())}.{secrets.token_hex(12)}@{domain}>\r\n"
    head += _header("Subject", subject)
    head += f"In-Reply-To: {msg_id}\r\nReferences: {msg_id}\r\n" if msg_id else ""
    head += "Auto-Submitted: auto-replied\r\n" if automatic else ""  # RFC 3834 §5
    head += "MIME-Version: 1.0\r\n"
    head += "Content-Type: multipart/report; report-type=disposition-notification;\r\n"
    head += f'\tboundary="{boundary}"\r\n' + cte.lstrip() + ("\r\n" if eight_bit else "")
    body = b"".join(f"\r\n--{boundary}\r\n{h}\r\n\r\n".encode("ascii") + c for h, c in parts)
    preamble = "\r\nThis is a MIME-encapsulated message disposition notification (RFC 8098).\r\n"
    return (head + preamble).encode("ascii") + body + f"\r\n--{boundary}--\r\n".encode("ascii")


def document_attachments(message: bytes) -> list[Attachment]:
    """The ``IHE_XDM.zip`` and PDF attachments of a message, to return them with the MDN
    of an integration failure as the volet asks (HL7-LPS ``struct-msg-mdn.md``)."""
    msg = email.message_from_bytes(message, policy=email.policy.compat32)
    found: list[Attachment] = []
    for part in msg.walk():
        name = part.get_filename()
        data = part.get_payload(decode=True)
        if name and isinstance(data, bytes) and _DOC_ATTACHMENT_RE.match(_decoded(name)):
            found.append(Attachment(_decoded(name), part.get_content_type(), data))
    return found


def _fields_of(part: Message) -> dict[str, str]:
    """The RFC 8098 fields: the body of the part, or (published ANS example, no blank
    line after Content-Type) the header fields of the part itself."""
    blocks = part.get_payload()
    sources = [b for b in blocks if isinstance(b, Message)] if isinstance(blocks, list) else []
    fields: dict[str, str] = {}
    for source in [*sources, part]:
        for name, value in source.raw_items():
            key = name.strip().lower()
            if not key.startswith("content-"):
                text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                fields.setdefault(key, " ".join(text.split()))
        if "disposition" in fields:
            break
    return fields


def _text_of(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    try:
        return raw.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _error(text: str) -> tuple[str | None, str | None]:
    """``<code>^<label>[^…]`` (HL7 CWE-like) → (code, label)."""
    text = re.sub(r"(?i)^\s*error\s*:?", "", text).strip()
    if not text:
        return None, None
    code, _, rest = text.partition("^")
    label = rest.split("^")[0].strip() or None
    return (code.strip() or None), label


def _parse(data: bytes) -> ParsedMDN:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    if not _is_mdn_content_type(msg.get("Content-Type")):
        raise ValueError("not a MDN: not multipart/report; report-type=disposition-notification")
    payload = msg.get_payload()
    parts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    index = next(
        (
            i
            for i, p in enumerate(parts)
            if p.get_content_type() == "message/disposition-notification"
        ),
        -1,
    )
    if index < 0:
        raise ValueError("not a MDN: no message/disposition-notification part (RFC 8098 §3)")
    fields = _fields_of(parts[index])
    missing = [k for k in ("final-recipient", "disposition") if not fields.get(k)]
    if missing:
        raise ValueError(f"not a MDN: the report lacks {', '.join(missing)} (RFC 8098 §3.1)")
    match = _DISPOSITION_RE.fullmatch(fields["disposition"])
    if not match:
        raise ValueError(f"not a MDN: unreadable Disposition {fields['disposition'][:80]!r}")
    action, sending, kind, rest = match.groups()
    rest = rest or ""
    modifiers = (
        (rest,)
        if rest.lower().startswith("error")
        else tuple(m.strip() for m in rest.split(",") if m.strip())
    )
    code, label = _error(fields.get("error") or "")
    if code is None and rest.lower().startswith("error"):
        code, label = _error(rest)
    human = _text_of(parts[0]) if index > 0 and parts[0].get_content_maintype() == "text" else ""
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
    names = tuple(_decoded(p.get_filename()) for p in parts[index + 2 :] if p.get_filename())
    return ParsedMDN(
        subject=_decoded(next((str(v) for k, v in msg.raw_items() if k.lower() == "subject"), "")),
        fields=fields,
        reporting_ua=fields.get("reporting-ua"),
        original_recipient=fields.get("original-recipient"),
        final_recipient=fields["final-recipient"],
        original_message_id="".join(fields.get("original-message-id", "").split()) or None,
        disposition=fields["disposition"],
        action_mode=action,
        sending_mode=sending,
        disposition_type=kind.lower(),
        modifiers=modifiers,
        error_code=code,
        error_label=label,
        human_readable=human,
        returned_content_type=returned_type,
        returned_content=returned,
        attachments=names,
    )


def parse_mdn(data: bytes) -> ParsedMDN:
    """Read a MDN back; any input that is not a MDN raises ValueError."""
    try:
        return _parse(bytes(data))
    except ValueError:
        raise
    except Exception as exc:  # hostile input may trip corner cases of the stdlib parser
        raise ValueError(f"not a MDN: unparsable message ({type(exc).__name__})") from exc
