"""FETCH data of one message: ENVELOPE, BODYSTRUCTURE, BODY, ``BODY[section]`` — pure functions.

``ParsedMessage(raw)`` holds the message bytes as stored; its MIME tree (``message_mime``) is
scanned on first use only, and ENVELOPE / BODYSTRUCTURE are computed once. Every function takes
a ``ParsedMessage`` or raw bytes, works on the original octets (a section is a slice of
``raw``, never re-serialised content) and never raises on hostile input.

Sizes and line counts are those of ``raw`` as stored; the store is expected to keep messages
with CRLF line ends (Dovecot converts bare LFs on output and counts CRLF sizes; we do not).

Output follows Dovecot 2.3 (checked byte for byte against ``dovecot-imapd`` 2.3.19 serving a
maildir of the test messages, plus 300 generated hostile ones):

- strings as written in the message: ``"Text" "PLAIN" ("CharSet" "UTF-8")``, case kept for the
  type, subtype, parameter names and values, encoding and disposition; the first Content-*
  field of each kind counts;
- a text part without a ``charset`` parameter gets ``"charset" "us-ascii"`` appended; a
  non-text part without parameters has NIL; a missing or invalid (not one token)
  Content-Transfer-Encoding is ``"7bit"``; RFC 2231 continuations merged, values left encoded;
- a part without MIME-Version or Content-Type, outside a multipart, is not MIME: its other
  Content-* fields (encoding, disposition, language…) are ignored;
- size is the octet count of the part body, lines the count of LF in it (text/* and
  message/rfc822 only, for message/rfc822 the lines of the whole encapsulated message), the
  line break before a boundary delimiter belonging to the delimiter;
- extension data: md5, disposition ``("attachment" ("filename" "x.pdf"))`` (NIL params when
  none), language always a list ``("fr" "en")``, location; multipart: params, disposition,
  language, location; a multipart whose boundary never appears has one empty text/plain part;
- ENVELOPE: the last Date / Subject / In-Reply-To / Message-ID field counts, the address lists
  of repeated fields are concatenated; Subject and display names are cleaned "for humans"
  (whitespace runs collapsed, trimmed), other strings only lose their CR/LF; a field present
  but empty is ``""``, an empty address list NIL; Sender and Reply-To default to From; a
  missing local part / domain is ``MISSING_MAILBOX`` / ``MISSING_DOMAIN``; NUL is U+FFFD;
- ``message/global`` is a basic body, as in Dovecot 2.3 (an IMAP4rev1 client would misparse
  an envelope there); ``multipart/digest`` parts default to message/rfc822;
- sections: a non-multipart part is its own part 1 (``2.1`` of a leaf ``2`` is ``2``, ``1.1``
  of a simple message does not exist); ``HEADER.FIELDS`` always ends with a blank line,
  ``HEADER.FIELDS.NOT`` only when the header has one.

Known, accepted differences: an invalid Content-Type is ``text/plain`` (RFC 2045 §5.2; Dovecot
echoes the garbage: ``("garbage" "" …)``); a multipart without boundary is one ``text/plain``
part (Dovecot: a multipart with one empty part, hiding the text); a boundary line must be
``--boundary`` plus blanks (RFC 2046; Dovecot accepts any line starting with it); ``"`` and
``\\`` are escaped in quoted strings (Dovecot sends such names and subjects as literals);
address-list syntax errors are recovered from at the next comma (Dovecot stops there); nested
parts past ``MAX_DEPTH`` (50, Dovecot: 100) are ``application/octet-stream`` leaves; a stored
bare LF stays one octet (Dovecot counts and sends CRLF).

``section(msg, spec)`` implements RFC 3501 §6.4.5 / RFC 9051 §6.4.5 and returns ``None`` for a
section that does not exist (Dovecot then answers an empty string: the session may send
``""`` or NIL). A malformed ``spec`` raises ``ValueError`` (the session answers BAD). Section
bytes are exact: send them with ``imap_literal``, which turns NUL into 0x80 as Dovecot does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from mssante.imap.message_address import Address, parse_addresses
from mssante.imap.message_decode import decode_transfer
from mssante.imap.message_mime import (
    MimePart,
    first_token,
    parse_disposition,
    parse_mime,
    transfer_encoding,
)
from mssante.imap.message_strings import (
    for_humans,
    imap_astring,
    imap_literal,
    imap_string,
    internaldate_string,
    nolf,
)

__all__ = [
    "ParsedMessage",
    "SectionLike",
    "SectionSpec",
    "UnknownTransferEncoding",
    "binary_section",
    "body",
    "bodystructure",
    "envelope",
    "header_bytes",
    "imap_astring",
    "imap_literal",
    "imap_string",
    "internaldate_string",
    "parse_section",
    "partial",
    "rfc822_size",
    "section",
    "text_bytes",
]

NIL = b"NIL"
_EMPTY_BASIC = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0'
_REPLACEMENT = "\ufffd".encode()


class ParsedMessage:
    """A message's raw bytes with its MIME tree, parsed lazily and once."""

    __slots__ = ("__weakref__", "_body", "_bodystructure", "_envelope", "_root", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = bytes(raw)
        self._root: MimePart | None = None
        self._envelope: bytes | None = None
        self._bodystructure: bytes | None = None
        self._body: bytes | None = None

    @property
    def root(self) -> MimePart:
        if self._root is None:
            self._root = parse_mime(self.raw)
        return self._root

    def header_values(self, name: str) -> list[bytes]:
        """Raw values (folding kept) of the top-level header fields named ``name``."""
        return self.root.values(name.lower())


MessageLike = ParsedMessage | bytes


def _parsed(msg: MessageLike) -> ParsedMessage:
    return msg if isinstance(msg, ParsedMessage) else ParsedMessage(msg)


def _nstr(value: bytes | None) -> bytes:
    return NIL if value is None else imap_string(value.replace(b"\x00", _REPLACEMENT))


# --- ENVELOPE ---------------------------------------------------------------------------------


def _address(addr: Address) -> bytes:
    name = for_humans(addr.name) if addr.name is not None else None
    items = (name or None, addr.adl, addr.mailbox, addr.host)
    return b"(" + b" ".join(_nstr(None if x is None else nolf(x)) for x in items) + b")"


def _address_list(part: MimePart, key: str) -> bytes:
    addrs = [a for value in part.values(key) for a in parse_addresses(value)]
    if not addrs:
        return NIL
    return b"(" + b"".join(_address(a) for a in addrs) + b")"


def _envelope_of(part: MimePart) -> bytes:
    def last(key: str) -> bytes | None:
        values = part.values(key)
        return values[-1] if values else None

    subject = last("subject")
    from_ = _address_list(part, "from")
    sender = _address_list(part, "sender")
    reply_to = _address_list(part, "reply-to")
    items = [
        _nstr(_nolf_opt(last("date"))),
        _nstr(None if subject is None else for_humans(subject)),
        from_,
        from_ if sender == NIL else sender,
        from_ if reply_to == NIL else reply_to,
        _address_list(part, "to"),
        _address_list(part, "cc"),
        _address_list(part, "bcc"),
        _nstr(_nolf_opt(last("in-reply-to"))),
        _nstr(_nolf_opt(last("message-id"))),
    ]
    return b"(" + b" ".join(items) + b")"


def _nolf_opt(value: bytes | None) -> bytes | None:
    return None if value is None else nolf(value)


def envelope(msg: MessageLike) -> bytes:
    """The ENVELOPE structure, e.g. ``("date" "subject" ((NIL NIL "bob" "x.org")) …)``."""
    parsed = _parsed(msg)
    if parsed._envelope is None:
        parsed._envelope = _envelope_of(parsed.root)
    return parsed._envelope


# --- BODYSTRUCTURE / BODY ---------------------------------------------------------------------


def _params(params: tuple[tuple[bytes, bytes], ...], text: bool = False) -> bytes:
    items = list(params)
    if text and not any(k.lower() == b"charset" for k, _ in items):
        items.append((b"charset", b"us-ascii"))
    if not items:
        return NIL
    return b"(" + b" ".join(_nstr(k) + b" " + _nstr(v) for k, v in items) + b")"


def _disposition(part: MimePart) -> bytes:
    value = part.mime_field("content-disposition")
    if value is None:
        return NIL
    kind, params = parse_disposition(value)
    if not kind and not params:
        return NIL
    return b"(" + _nstr(kind) + b" " + _params(params) + b")"


def _language(part: MimePart) -> bytes:
    value = part.mime_field("content-language")
    if value is None:
        return NIL
    tags = [first_token(t) for t in value.split(b",")]
    tags = [t for t in tags if t]
    return b"(" + b" ".join(_nstr(t) for t in tags) + b")" if tags else NIL


def _field(part: MimePart, key: str) -> bytes:
    value = part.mime_field(key)
    return NIL if value is None else _nstr(nolf(value))


def _extension(part: MimePart) -> bytes:
    return b" ".join((_disposition(part), _language(part), _field(part, "content-location")))


def _structure(raw: bytes, part: MimePart, extensible: bool) -> bytes:
    if part.multipart:
        children = b"".join(_structure(raw, c, extensible) for c in part.children)
        out = (children or _EMPTY_BASIC + b")") + b" " + _nstr(part.subtype)
        if extensible:
            out += b" " + _params(part.params) + b" " + _extension(part)
        return b"(" + out + b")"
    encoding = transfer_encoding(part) or b"7bit"
    fields = [
        _nstr(part.type),
        _nstr(part.subtype),
        _params(part.params, text=part.is_text),
        _field(part, "content-id"),
        _field(part, "content-description"),
        _nstr(encoding),
        b"%d" % (part.end - part.body_start),
    ]
    lines = b"%d" % raw.count(b"\n", part.body_start, part.end)
    if part.message is not None:
        inner = part.message
        fields += [_envelope_of(inner), _structure(raw, inner, extensible), lines]
    elif part.is_text:
        fields.append(lines)
    if extensible:
        fields += [_field(part, "content-md5"), _extension(part)]
    return b"(" + b" ".join(fields) + b")"


def bodystructure(msg: MessageLike, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (``extensible=True``) or BODY (``False``) of the message."""
    parsed = _parsed(msg)
    if extensible:
        if parsed._bodystructure is None:
            parsed._bodystructure = _structure(parsed.raw, parsed.root, True)
        return parsed._bodystructure
    if parsed._body is None:
        parsed._body = _structure(parsed.raw, parsed.root, False)
    return parsed._body


def body(msg: MessageLike) -> bytes:
    """The non-extensible BODY structure."""
    return bodystructure(msg, extensible=False)


# --- BODY[section] ----------------------------------------------------------------------------

_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})
_FIELD_NAME = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s()"]+)')


class SectionLike(Protocol):
    """What ``section`` reads: ``fetch_items.Section`` from the command parser fits."""

    @property
    def part(self) -> tuple[int, ...]: ...
    @property
    def text(self) -> str | None: ...
    @property
    def fields(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """A parsed ``section-spec``: ``part`` numbers (1-based), ``text`` (upper-case: HEADER,
    HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or None) and header ``fields``."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


def parse_section(spec: str) -> SectionSpec:
    """Parse ``"1.2.HEADER.FIELDS (From To)"``-style text; ``ValueError`` when malformed."""
    head, paren, rest = spec.strip().partition("(")
    head = head.strip()
    names: list[str] = []
    if paren:
        if not rest.rstrip().endswith(")"):
            raise ValueError(f"unterminated header list in section {spec!r}")
        inner = rest.rstrip()[:-1]
        pos = 0
        for m in _FIELD_NAME.finditer(inner):
            if inner[pos : m.start()].strip():
                raise ValueError(f"bad header list in section {spec!r}")
            quoted = m.group(1)
            names.append(re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else m.group(2))
            pos = m.end()
        if inner[pos:].strip() or not names:
            raise ValueError(f"bad header list in section {spec!r}")
    segments = head.split(".") if head else []
    parts: list[int] = []
    while segments and segments[0].isdigit() and segments[0].isascii():
        number = int(segments.pop(0))
        if number < 1 or number > 2**32:
            raise ValueError(f"bad part number in section {spec!r}")
        parts.append(number)
    text = ".".join(segments).upper() or None
    if (text is not None and text not in _TEXTS) or (text == "MIME" and not parts):
        raise ValueError(f"bad section {spec!r}")
    if bool(names) != (text or "").startswith("HEADER.FIELDS"):
        raise ValueError(f"bad section {spec!r}")
    return SectionSpec(tuple(parts), text, tuple(names))


def _resolve(root: MimePart, parts: tuple[int, ...]) -> MimePart | None:
    """The part numbered ``parts``, found as Dovecot does: a multipart's N is its N-th child;
    a non-multipart part is its own part 1, but only as the last number (or when it is a
    message/rfc822 part); numbers after a message/rfc822 part index the encapsulated message.
    So ``1`` of a simple message is its body, ``1.1`` does not exist, and ``2.1`` of a leaf
    child ``2`` is ``2`` itself (Dovecot's leniency)."""
    part = root
    for index, number in enumerate(parts):
        last = index == len(parts) - 1
        if part.multipart:
            if number > len(part.children):
                return None
            part = part.children[number - 1]
        elif number != 1 or (not last and part.message is None):
            return None
        if part.message is not None and not last:
            part = part.message
    return part


def _with_eol(field_raw: bytes) -> bytes:
    return field_raw if field_raw.endswith(b"\n") else field_raw + b"\r\n"


def section(msg: MessageLike, spec: str | SectionLike) -> bytes | None:
    """The octets of ``BODY[spec]``; ``None`` when that section does not exist.

    ``spec`` is the text between the brackets (``"1.2.MIME"``) or a parsed section.
    ``1.HEADER``/``1.TEXT``/``1.HEADER.FIELDS`` exist only for a message/rfc822 part.
    """
    parsed = _parsed(msg)
    sec = parse_section(spec) if isinstance(spec, str) else spec
    raw = parsed.raw
    root = parsed.root
    part = _resolve(root, tuple(sec.part))
    if part is None:
        return None
    if not sec.text:
        return raw[part.body_start : part.end] if sec.part else raw
    if sec.text == "MIME":
        return raw[part.start : part.body_start] if sec.part else None
    target = part.message if sec.part else root
    if target is None:
        return None
    if sec.text == "HEADER":
        return raw[target.start : target.body_start]
    if sec.text == "TEXT":
        return raw[target.body_start : target.end]
    wanted = {name.lower() for name in sec.fields}
    keep = sec.text == "HEADER.FIELDS"
    selected = b"".join(_with_eol(f.raw) for f in target.fields if (f.key in wanted) == keep)
    if keep:
        return selected + b"\r\n"
    # HEADER.FIELDS.NOT filters the header as stored: its blank line only if it has one.
    header = raw[target.start : target.body_start]
    ended = header in (b"\r\n", b"\n") or header.endswith((b"\n\r\n", b"\n\n"))
    return selected + b"\r\n" if ended else selected


class UnknownTransferEncoding(ValueError):
    """BINARY on a part whose Content-Transfer-Encoding is unknown: ``NO [UNKNOWN-CTE]``."""


def binary_section(msg: MessageLike, part: tuple[int, ...]) -> bytes | None:
    """``BINARY[part]`` (RFC 3516): the part body with its transfer encoding undone.

    ``None`` when the part does not exist; ``UnknownTransferEncoding`` for an encoding other
    than 7bit/8bit/binary/base64/quoted-printable. A multipart or message/rfc822 part (never
    transfer-encoded in practice) and ``part=()`` (the whole message) are returned as stored.
    """
    parsed = _parsed(msg)
    if not part:
        return parsed.raw
    target = _resolve(parsed.root, part)
    if target is None:
        return None
    data = parsed.raw[target.body_start : target.end]
    if target.multipart or target.message is not None:
        return data
    encoding = transfer_encoding(target)
    decoded = decode_transfer(data, encoding)
    if decoded is None:
        raise UnknownTransferEncoding(encoding.decode("ascii", "replace"))
    return decoded


def partial(data: bytes, offset: int, length: int | None = None) -> bytes:
    """``data[offset:offset+length]`` (``<offset.length>`` partial FETCH); empty past the end."""
    offset = max(offset, 0)
    if length is None:
        return data[offset:]
    return data[offset : offset + max(length, 0)]


def rfc822_size(msg: MessageLike) -> int:
    """RFC822.SIZE: the octet count of the stored message."""
    return len(msg.raw if isinstance(msg, ParsedMessage) else msg)


def header_bytes(msg: MessageLike) -> bytes:
    """RFC822.HEADER / BODY[HEADER]: the header with its terminating blank line."""
    parsed = _parsed(msg)
    return parsed.raw[: parsed.root.body_start]


def text_bytes(msg: MessageLike) -> bytes:
    """RFC822.TEXT / BODY[TEXT]: everything after the header's blank line."""
    parsed = _parsed(msg)
    return parsed.raw[parsed.root.body_start :]
