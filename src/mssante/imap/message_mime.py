"""The MIME structure of a message, scanned by hand so every part keeps its raw byte offsets.

``parse_mime(raw)`` returns the root ``MimePart``. Every part records ``start`` (its first
header byte), ``body_start`` (first byte after the blank line ending its header) and ``end``,
all offsets into ``raw``: ``BODY[1.2]`` is then a slice of the original bytes, never
re-serialised content. The scanner never raises on hostile input:

- header fields are split at lines not starting with SP/HT; a header without a blank line takes
  the whole part (the body is then empty), as Dovecot does;
- the first ``Content-Type`` field counts; a syntactically invalid one (no ``/``, non-token
  characters) is taken as ``text/plain; charset=us-ascii`` (RFC 2045 §5.2);
- a multipart without a ``boundary`` parameter is a leaf reported as ``text/plain`` (its text
  stays readable); a multipart or message/rfc822 nested ``MAX_DEPTH`` deep, or met after
  ``MAX_PARTS`` parts, is a leaf reported as ``application/octet-stream`` (as Dovecot does at
  its own limits); a multipart whose boundary never appears gets one empty ``text/plain``
  child (Dovecot's "empty bodystructure");
- a delimiter is a line ``--boundary`` followed only by blanks, a close delimiter one followed
  by ``--`` (RFC 2046; Dovecot matches any line starting with ``--boundary`` but lets inner
  boundaries win, which this range-based scanner cannot know); the line break before it
  belongs to the delimiter; a missing close delimiter ends the last part at the end of its
  parent; an outer boundary ends inner parts, since each part is scanned only inside its
  parent's range;
- ``message/rfc822`` bodies are parsed as messages (``MimePart.message``); the default type of
  a ``multipart/digest`` child is ``message/rfc822``;
- parameters follow Dovecot's RFC 2231 handling: plain parameters first, then each continued
  parameter (``name*0``, ``name*1*``…) merged into ``name`` or, when a segment is extended,
  ``name*`` with its still-encoded value (``''`` prefixed when the first segment has no
  charset); parameters without ``=`` are dropped;
- a part that has neither MIME-Version nor Content-Type and is not inside a multipart is not
  MIME: its other ``Content-*`` fields are ignored (``MimePart.mime_field``), as in Dovecot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "HeaderField",
    "MimePart",
    "parse_mime",
    "split_header",
    "transfer_encoding",
]

MAX_DEPTH = 50
MAX_PARTS = 10_000

_TOKEN = re.compile(rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_PARAM_NAME = re.compile(rb"[^\s;=\"]+")
_CONTINUATION = re.compile(rb"(.+?)\*(\d{1,4})(\*?)")


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: ``raw`` is the whole field with its folding and line break."""

    key: str  # lower-cased field name ("" for a line without a colon)
    raw: bytes
    value: bytes  # after the colon, folding kept, final line break removed


@dataclass(slots=True, eq=False)
class MimePart:
    start: int
    body_start: int
    end: int
    fields: tuple[HeaderField, ...]
    type: bytes = b"text"  # as written in the message (case kept)
    subtype: bytes = b"plain"
    params: tuple[tuple[bytes, bytes], ...] = ()
    children: list[MimePart] = field(default_factory=list)
    message: MimePart | None = None
    multipart: bool = False
    mime: bool = True  # Content-* fields count (see ``mime_field``)

    @property
    def is_text(self) -> bool:
        return self.type.lower() == b"text"

    @property
    def is_rfc822(self) -> bool:
        return self.message is not None

    def values(self, key: str) -> list[bytes]:
        """Raw values of every field named ``key`` (lower-case), in message order."""
        return [f.value for f in self.fields if f.key == key]

    def first(self, key: str) -> bytes | None:
        for f in self.fields:
            if f.key == key:
                return f.value
        return None

    def mime_field(self, key: str) -> bytes | None:
        """The first ``Content-*`` field ``key``, if this part is MIME at all: a part with
        neither MIME-Version nor Content-Type, outside a multipart, has none (RFC 2045 §4,
        as Dovecot: its Content-Transfer-Encoding, Content-Disposition… are ignored)."""
        return self.first(key) if self.mime else None

    def param(self, name: bytes) -> bytes | None:
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None


def _line_end(raw: bytes, pos: int, end: int) -> int:
    """Offset just past the line starting at ``pos`` (its LF included), at most ``end``."""
    nl = raw.find(b"\n", pos, end)
    return end if nl < 0 else nl + 1


def split_header(raw: bytes, start: int, end: int) -> tuple[tuple[HeaderField, ...], int]:
    """Header fields of the part at ``raw[start:end]`` and the offset where its body starts."""
    fields: list[HeaderField] = []
    cur_start = -1
    pos = start

    def close(upto: int) -> None:
        if cur_start < 0:
            return
        text = raw[cur_start:upto]
        colon = text.find(b":")
        stripped = text.rstrip(b"\r\n")
        if colon < 0:
            fields.append(HeaderField("", text, stripped))
        else:
            key = text[:colon].strip().decode("latin-1").lower()
            fields.append(HeaderField(key, text, stripped[colon + 1 :]))

    while pos < end:
        nxt = _line_end(raw, pos, end)
        line = raw[pos:nxt]
        if line in (b"\r\n", b"\n"):
            close(pos)
            return tuple(fields), nxt
        if line[:1] in (b" ", b"\t") and cur_start >= 0:
            pos = nxt
            continue
        close(pos)
        cur_start = pos
        pos = nxt
    close(end)
    return tuple(fields), end


def _strip_comments(value: bytes) -> bytes:
    """Remove RFC 822 comments outside quoted strings (nesting and escapes honoured)."""
    if b"(" not in value:
        return value
    out = bytearray()
    depth = 0
    quoted = False
    i = 0
    while i < len(value):
        c = value[i : i + 1]
        if c == b"\\" and (quoted or depth):
            if not depth:
                out += value[i : i + 2]
            i += 2
            continue
        if quoted:
            quoted = c != b'"'
            out += c
        elif c == b"(":
            depth += 1
        elif c == b")" and depth:
            depth -= 1
        elif not depth:
            quoted = c == b'"'
            out += c
        i += 1
    return bytes(out)


def first_token(value: bytes | None) -> bytes:
    """The first token of a structured value (Content-Transfer-Encoding, disposition type)."""
    if value is None:
        return b""
    m = _TOKEN.match(_strip_comments(value).strip(b" \t\r\n"))
    return m.group() if m else b""


def transfer_encoding(part: MimePart) -> bytes:
    """The part's Content-Transfer-Encoding as written (``b""`` when absent or invalid).

    Like Dovecot, the value must be one token (comments allowed): ``base64 junk`` is invalid
    and the part is then taken as 7bit.
    """
    value = part.mime_field("content-transfer-encoding")
    if value is None:
        return b""
    text = _strip_comments(value).strip(b" \t\r\n")
    return text if _TOKEN.fullmatch(text) else b""


def _parse_params(text: bytes) -> list[tuple[bytes, bytes]]:
    params: list[tuple[bytes, bytes]] = []
    pos = 0
    n = len(text)
    while pos < n:
        semi = text.find(b";", pos)
        if semi < 0:
            break
        pos = semi + 1
        while pos < n and text[pos] in b" \t\r\n":
            pos += 1
        m = _PARAM_NAME.match(text, pos)
        if m is None:
            continue
        name = m.group()
        pos = m.end()
        while pos < n and text[pos] in b" \t\r\n":
            pos += 1
        if pos >= n or text[pos] != 0x3D:  # "="
            continue
        pos += 1
        while pos < n and text[pos] in b" \t\r\n":
            pos += 1
        if pos < n and text[pos] == 0x22:  # quoted-string
            out = bytearray()
            pos += 1
            while pos < n and text[pos] != 0x22:
                if text[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                if text[pos] not in b"\r\n":
                    out.append(text[pos])
                pos += 1
            pos += 1
            params.append((name, bytes(out)))
        else:
            stop = pos
            while stop < n and text[stop] not in b"; \t\r\n":
                stop += 1
            params.append((name, text[pos:stop]))
            pos = stop
    return _merge_rfc2231(params)


def _merge_rfc2231(params: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    plain: list[tuple[bytes, bytes]] = []
    groups: dict[bytes, list[tuple[int, bool, bytes]]] = {}
    for name, value in params:
        if b"*" not in name:
            plain.append((name, value))
            continue
        m = _CONTINUATION.fullmatch(name)
        if m is None:  # "name*" (extended, not continued): kept as written
            groups.setdefault(name, []).append((-1, True, value))
            continue
        groups.setdefault(m.group(1), []).append((int(m.group(2)), bool(m.group(3)), value))
    merged = list(plain)
    for name, segments in groups.items():
        if segments and segments[0][0] < 0:  # "name*" without a number: kept as written
            merged.extend((name, value) for _, _, value in segments)
            continue
        segments.sort(key=lambda s: s[0])
        extended = any(ext for _, ext, _ in segments)
        value = b"".join(v for _, _, v in segments)
        if extended and not segments[0][1]:  # no charset'language' part: add an empty one
            value = b"''" + value
        merged.append((name + b"*" if extended else name, value))
    return merged


def parse_content_type(value: bytes | None) -> tuple[bytes, bytes, tuple[tuple[bytes, bytes], ...]]:
    """``(type, subtype, params)``; an invalid value yields ``(b"", b"", ())``."""
    if value is None:
        return b"", b"", ()
    text = _strip_comments(value)
    m = re.match(rb"[ \t\r\n]*([^/;\s]*)[ \t\r\n]*/[ \t\r\n]*([^;\s]*)", text)
    if m is None or not _TOKEN.fullmatch(m.group(1)) or not _TOKEN.fullmatch(m.group(2)):
        return b"", b"", ()
    rest = text[m.end() :]
    if rest.split(b";", 1)[0].strip(b" \t\r\n"):  # junk after the subtype
        return b"", b"", ()
    return m.group(1), m.group(2), tuple(_parse_params(rest))


def parse_disposition(value: bytes) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
    text = _strip_comments(value)
    return first_token(text), tuple(_parse_params(text))


class _Budget:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts = 0


def _find_delimiters(raw: bytes, start: int, end: int, delim: bytes) -> Iterator[tuple[int, bool]]:
    """Delimiter lines of ``delim`` in ``raw[start:end]``: ``(line offset, is_close)``.

    A line is a delimiter when ``delim`` is followed by transport padding (SP/HT) and the end
    of the line, and a close delimiter when followed by ``--`` (RFC 2046 §5.1.1). So the
    boundary ``b1`` does not match the line ``--b10`` of a nested multipart. Lazy, so that a
    caller stopping at ``MAX_PARTS`` does not scan (or store) the rest.
    """
    line_start = start if raw.startswith(delim, start) else -1
    needle = b"\n" + delim
    while True:
        if line_start < 0:
            pos = raw.find(needle, start, end)
            if pos < 0:
                return
            line_start = pos + 1
        after = line_start + len(delim)
        if after > end:
            return
        if raw.startswith(b"--", after) and after + 2 <= end:
            yield line_start, True
            return
        eol = _line_end(raw, after, end)
        if not raw[after:eol].strip(b" \t\r\n"):
            yield line_start, False
        start = after
        line_start = -1


def _content_end(raw: bytes, line_start: int, floor: int) -> int:
    """End of the content before the delimiter line at ``line_start`` (its CRLF excluded)."""
    end = line_start
    if end > floor and raw[end - 1] == 0x0A:
        end -= 1
        if end > floor and raw[end - 1] == 0x0D:
            end -= 1
    return end


def _split_multipart(
    raw: bytes, part: MimePart, boundary: bytes, depth: int, budget: _Budget
) -> None:
    delim = b"--" + boundary
    digest = part.subtype.lower() == b"digest"
    default = (b"message", b"rfc822") if digest else (b"text", b"plain")
    spans: list[tuple[int, int]] = []
    child_start = -1
    for line_start, close in _find_delimiters(raw, part.body_start, part.end, delim):
        if child_start >= 0:
            spans.append((child_start, max(child_start, _content_end(raw, line_start, 0))))
        if close:
            child_start = -1
            break
        child_start = _line_end(raw, line_start + len(delim), part.end)
        if len(spans) + 1 + budget.parts >= MAX_PARTS:  # the last part takes the rest
            break
    if child_start >= 0:
        spans.append((child_start, part.end))
    if not spans:  # boundary never seen: one empty text/plain child
        empty = MimePart(part.end, part.end, part.end, (), params=((b"charset", b"us-ascii"),))
        part.children.append(empty)
        return
    for child_start, child_end in spans:
        budget.parts += 1
        child = _parse_part(raw, child_start, child_end, depth + 1, default, budget, True)
        part.children.append(child)


def _parse_part(
    raw: bytes,
    start: int,
    end: int,
    depth: int,
    default: tuple[bytes, bytes],
    budget: _Budget,
    in_multipart: bool = False,
) -> MimePart:
    fields, body_start = split_header(raw, start, end)
    part = MimePart(start, body_start, end, fields)
    ctype = part.first("content-type")
    part.mime = in_multipart or ctype is not None or part.first("mime-version") is not None
    mtype, subtype, params = parse_content_type(ctype)
    if not mtype:
        mtype, subtype = default if ctype is None else (b"text", b"plain")
        params = ()
    lower = mtype.lower()
    deep = depth >= MAX_DEPTH or budget.parts >= MAX_PARTS
    if lower == b"multipart":
        boundary = next((v for k, v in params if k.lower() == b"boundary"), b"")
        if deep:  # as Dovecot: an opaque leaf keeping its parameters
            mtype, subtype = b"application", b"octet-stream"
        elif not boundary:
            mtype, subtype, params = b"text", b"plain", ()
        else:
            part.type, part.subtype, part.params, part.multipart = mtype, subtype, params, True
            _split_multipart(raw, part, boundary, depth, budget)
            return part
    elif lower == b"message" and subtype.lower() == b"rfc822":
        if deep:
            mtype, subtype = b"application", b"octet-stream"
        else:
            budget.parts += 1
            part.message = _parse_part(raw, body_start, end, depth + 1, (b"text", b"plain"), budget)
    part.type, part.subtype, part.params = mtype, subtype, params
    return part


def parse_mime(raw: bytes) -> MimePart:
    """Parse the MIME tree of ``raw``; on any unexpected failure, one text/plain leaf."""
    try:
        return _parse_part(raw, 0, len(raw), 0, (b"text", b"plain"), _Budget())
    except Exception:  # noqa: BLE001 - a FETCH must never fail on a hostile message
        fields, body_start = split_header(raw, 0, len(raw))
        return MimePart(0, body_start, len(raw), fields)
