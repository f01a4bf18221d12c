"""Decoded, normalised text of a message for SEARCH (RFC 3501 §6.4.4 substring matching).

Everything is normalised with ``normalize(text)``: Unicode NFC, ``casefold()`` (so ``É`` finds
``é`` and ``ß`` finds ``SS``), and every run of whitespace collapsed to one space, so a phrase
folded over two lines or soft-broken by quoted-printable is still found. Search strings get the
same treatment (``normalize`` is applied by ``search_eval``).

- header values: RFC 2047 encoded words decoded, raw 8-bit read as UTF-8 (else Latin-1);
- body text: every ``text/*`` leaf (a part without Content-Type is text/plain) with its
  transfer encoding and charset undone; ``text/html`` loses its tags, scripts and styles, and
  its entities are resolved; an attached ``message/rfc822`` contributes its header values and
  its own text parts; other leaves (PDF, zip…) are skipped.

Results are cached per ``ParsedMessage`` (weakly), so several keys on one message decode once.
"""

from __future__ import annotations

import html
import re
import unicodedata
import weakref
from collections.abc import Iterator

from mssante.imap.message import ParsedMessage
from mssante.imap.message_decode import decode_charset, decode_transfer, decode_words
from mssante.imap.message_mime import MimePart, transfer_encoding

__all__ = ["body_text", "field_texts", "header_text", "normalize", "strip_html"]

_WSP = re.compile(r"\s+")
_HTML_RAW = re.compile(r"<(script|style)\b", re.I)
_HTML_END = {"script": re.compile(r"</script", re.I), "style": re.compile(r"</style", re.I)}

_body_cache: weakref.WeakKeyDictionary[ParsedMessage, str] = weakref.WeakKeyDictionary()
_header_cache: weakref.WeakKeyDictionary[ParsedMessage, str] = weakref.WeakKeyDictionary()


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFC", text).casefold()
    return _WSP.sub(" ", unicodedata.normalize("NFC", folded))


def field_texts(msg: ParsedMessage, name: str) -> list[str]:
    """Normalised, decoded values of the top-level header fields named ``name``."""
    return [normalize(decode_words(value)).strip() for value in msg.header_values(name)]


def _headers_of(part: MimePart) -> str:
    lines = (f"{f.key}: {decode_words(f.value)}" for f in part.fields)
    return normalize("\n".join(lines))


def header_text(msg: ParsedMessage) -> str:
    """All top-level header fields, ``name: decoded value``, normalised."""
    cached = _header_cache.get(msg)
    if cached is None:
        cached = _headers_of(msg.root)
        _header_cache[msg] = cached
    return cached


def strip_html(text: str) -> str:
    """Text of HTML: tags, scripts and styles dropped, entities resolved. Linear time, also
    on hostile input (no regex backtracking over unclosed tags)."""
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        lt = text.find("<", pos)
        if lt < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:lt])
        raw = _HTML_RAW.match(text, lt)
        if raw is not None:
            close = _HTML_END[raw.group(1).lower()].search(text, raw.end())
            lt = n if close is None else close.start()
        gt = text.find(">", lt)
        if gt < 0:
            break
        out.append(" ")
        pos = gt + 1
    return html.unescape("".join(out))


def _leaf_text(raw: bytes, part: MimePart) -> str:
    data = raw[part.body_start : part.end]
    decoded = decode_transfer(data, transfer_encoding(part))
    text = decode_charset(data if decoded is None else decoded, part.param(b"charset"))
    if part.subtype.lower() == b"html":
        text = strip_html(text)
    return text


def _texts(raw: bytes, part: MimePart) -> Iterator[str]:
    stack = [part]
    while stack:
        cur = stack.pop()
        if cur.multipart:
            stack.extend(reversed(cur.children))
        elif cur.message is not None:
            yield _headers_of(cur.message)
            stack.append(cur.message)
        elif cur.is_text:
            yield normalize(_leaf_text(raw, cur))


def body_text(msg: ParsedMessage) -> str:
    """The decoded text of the message body, normalised (parts separated by a space)."""
    cached = _body_cache.get(msg)
    if cached is None:
        cached = " ".join(_texts(msg.raw, msg.root))
        _body_cache[msg] = cached
    return cached
