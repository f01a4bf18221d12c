"""Decoding of message content: transfer encodings, charsets, RFC 2047 encoded words.

Used by SEARCH (``search_text``) and by ``BINARY[part]`` (RFC 3516). Nothing here raises on
hostile input: undecodable bytes become U+FFFD (or are read as Latin-1 when they are not
UTF-8), unknown charsets fall back to UTF-8, broken base64 is decoded as far as it goes.
"""

from __future__ import annotations

import binascii
import re

__all__ = ["decode_charset", "decode_transfer", "decode_words", "text_of_bytes"]

_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_ENCODED_WORD = re.compile(rb"=\?([^?\s]{1,75})\?([QqBb])\?([^?\s]*)\?=")
_IDENTITY = frozenset({b"", b"7bit", b"8bit", b"binary"})


def _base64(data: bytes) -> bytes:
    cleaned = _B64_JUNK.sub(b"", data)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned)
    except (binascii.Error, ValueError):
        return b""


def decode_transfer(data: bytes, encoding: bytes) -> bytes | None:
    """Undo a Content-Transfer-Encoding; ``None`` when the encoding is unknown."""
    enc = encoding.strip().lower()
    if enc in _IDENTITY:
        return data
    if enc == b"base64":
        return _base64(data)
    if enc == b"quoted-printable":
        try:
            return binascii.a2b_qp(data)
        except (binascii.Error, ValueError):
            return data
    return None


def text_of_bytes(data: bytes) -> str:
    """Bytes of unknown charset: UTF-8 when valid (RFC 6532), else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_charset(data: bytes, charset: bytes | str | None) -> str:
    """Decode ``data`` in ``charset``; unknown or absent charsets as ``text_of_bytes``."""
    if isinstance(charset, bytes):
        charset = charset.decode("ascii", "replace")
    name = (charset or "").strip().strip('"').lower()
    if name in ("", "us-ascii", "ascii", "utf-8", "utf8", "unknown-8bit", "x-unknown"):
        return text_of_bytes(data)
    try:
        return data.decode(name, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return text_of_bytes(data)


def decode_words(value: bytes) -> str:
    """A header value with RFC 2047 encoded words decoded and folding removed.

    Whitespace between adjacent encoded words is dropped (RFC 2047 §6.2); adjacent words in
    the same charset are joined before decoding, so a character split across two words (a
    common encoder bug) still decodes. Text outside encoded words is read as UTF-8/Latin-1.
    """
    value = value.replace(b"\r", b"").replace(b"\n", b"")
    out: list[str] = []
    run_charset = b""
    run = bytearray()
    pos = 0

    def flush() -> None:
        if run:
            out.append(decode_charset(bytes(run), run_charset))
            run.clear()

    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if run and between.strip(b" \t"):
            flush()
        if not run:
            out.append(text_of_bytes(between))
        charset = m.group(1).split(b"*", 1)[0].lower()
        if run and charset != run_charset:
            flush()
        run_charset = charset
        payload = m.group(3)
        if m.group(2) in b"Bb":
            run += _base64(payload)
        else:
            try:
                run += binascii.a2b_qp(payload, header=True)
            except (binascii.Error, ValueError):
                run += payload
        pos = m.end()
    flush()
    out.append(text_of_bytes(value[pos:]))
    return "".join(out)
