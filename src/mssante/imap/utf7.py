"""Mailbox names: modified UTF-7 (RFC 3501 §5.1.3) and the INBOX rule.

IMAP4rev1 clients send names in modified UTF-7: printable US-ASCII stands for itself
except "&", written "&-"; anything else is UTF-16BE in base64 with "," for "/", no
padding, between "&" and "-". Once the client has enabled IMAP4rev2 or UTF8=ACCEPT
(RFC 9051 §5.1, RFC 9755), names travel as plain UTF-8 and "&" is an ordinary character.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode_mailbox_name", "encode_mailbox_name", "normalize_mailbox_name"]

_B64_SEGMENT = re.compile(r"[A-Za-z0-9+,]+")


def _encode_segment(chars: list[str]) -> str:
    raw = "".join(chars).encode("utf-16-be", "surrogatepass")
    return "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"


def encode_mailbox_name(name: str) -> str:
    """Unicode name → modified UTF-7 (for IMAP4rev1 clients)."""
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append(_encode_segment(pending))
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append(_encode_segment(pending))
    return "".join(out)


def _check_no_controls(name: str) -> None:
    for ch in name:
        if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            raise ValueError("control character in mailbox name")


def decode_mailbox_name(name: str, *, utf8: bool = False) -> str:
    """Wire name → Unicode. Raises ValueError on malformed modified UTF-7.

    With ``utf8=True`` (IMAP4rev2 or UTF8=ACCEPT enabled) the name is already Unicode
    and only control characters are refused. Without it, "&…-" segments are decoded;
    non-ASCII characters outside them (sent raw by some old clients) are kept as is.
    """
    _check_no_controls(name)
    if utf8 or "&" not in name:
        return name
    out: list[str] = []
    i = 0
    while i < len(name):
        amp = name.find("&", i)
        if amp < 0:
            out.append(name[i:])
            break
        out.append(name[i:amp])
        dash = name.find("-", amp + 1)
        if dash < 0:
            raise ValueError("unterminated modified UTF-7 segment")
        if dash == amp + 1:
            out.append("&")
        else:
            out.append(_decode_segment(name[amp + 1 : dash]))
        i = dash + 1
    return "".join(out)


def _decode_segment(segment: str) -> str:
    if not _B64_SEGMENT.fullmatch(segment):
        raise ValueError("invalid modified base64")
    padded = segment.replace(",", "/") + "=" * (-len(segment) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("invalid modified base64") from exc
    # Canonical form only: no stray bits, an even number of octets, valid UTF-16.
    if base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") != segment:
        raise ValueError("non-canonical modified base64")
    if len(raw) % 2:
        raise ValueError("odd number of UTF-16 octets")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise ValueError("invalid UTF-16 in mailbox name") from exc
    _check_no_controls(text)
    return text


def normalize_mailbox_name(name: str) -> str:
    """ "INBOX" is case-insensitive (RFC 3501 §5.1): any spelling becomes "INBOX".

    Only the whole name is normalised; the parser does not know the hierarchy
    separator, so "inbox/Sub" is left for the server to handle.
    """
    return "INBOX" if name.isascii() and name.upper() == "INBOX" else name
