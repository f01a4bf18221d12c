"""IMAP string encoders (RFC 3501 §4.3 / RFC 9051 §4.3) and the INTERNALDATE format.

Shared by the FETCH renderers (``message``) and the session:

- ``imap_string(value)``: an ``nstring``: ``NIL`` for ``None``, a quoted string when every
  octet is 7-bit, not NUL/CR/LF (``"`` and ``\\`` are escaped), a literal ``{n}\\r\\n…``
  otherwise (8-bit header bytes, line breaks);
- ``imap_astring(value)``: an atom when the value is a non-empty run of ASTRING-CHARs (and not
  ``NIL``, which a reader could mistake for the nil token), else ``imap_string``;
- ``nolf(value)`` and ``for_humans(value)``: how Dovecot cleans header values before quoting
  them (``nolf`` for dates, message-ids, Content-ID…; ``for_humans`` for subjects and display
  names: whitespace runs collapsed to one space, trimmed). Both turn NUL into U+FFFD, since a
  NUL may not appear in an IMAP string, quoted or literal;
- ``imap_literal(data)``: ``{n}\\r\\n`` and the data, NUL octets sent as 0x80 like Dovecot
  (CHAR8 excludes NUL; use ``literal8`` of RFC 3516 to send a NUL);
- ``internaldate_string(dt)``: ``"17-Jul-1996 02:44:25 -0700"`` (without the quotes).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = [
    "for_humans",
    "imap_astring",
    "imap_literal",
    "imap_string",
    "internaldate_string",
    "nolf",
]

NIL = b"NIL"
_REPLACEMENT = "\ufffd".encode()
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Octets that force a literal: NUL, CR, LF and anything 8-bit.
_NEEDS_LITERAL = re.compile(rb"[\x00\r\n\x80-\xff]")
# ASTRING-CHAR: CHAR (0x01-0x7f) except atom-specials, but "]" is allowed.
_ASTRING_ATOM = re.compile(rb"[!#$&'+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+")
_WSP_RUN = re.compile(rb"[ \t\r\n]+")


def _to_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def imap_string(value: bytes | str | None) -> bytes:
    """Encode ``value`` as an IMAP ``nstring``: NIL, a quoted string or a literal."""
    if value is None:
        return NIL
    data = _to_bytes(value)
    if _NEEDS_LITERAL.search(data) is None:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return imap_literal(data)


def imap_literal(data: bytes) -> bytes:
    """``data`` as an IMAP literal, NUL replaced by 0x80 as Dovecot does for BODY[]."""
    return b"{%d}\r\n" % len(data) + data.replace(b"\x00", b"\x80")


def imap_astring(value: bytes | str) -> bytes:
    """Encode ``value`` as an IMAP ``astring``: an atom when possible, else a string."""
    data = _to_bytes(value)
    if _ASTRING_ATOM.fullmatch(data) is not None and data.upper() != NIL:
        return data
    return imap_string(data)


def nolf(value: bytes) -> bytes:
    """A header value as Dovecot quotes it: leading blanks and CR/LF removed, NUL replaced."""
    data = value.lstrip(b" \t").replace(b"\r", b"").replace(b"\n", b"")
    return data.replace(b"\x00", _REPLACEMENT)


def for_humans(value: bytes) -> bytes:
    """A header value for display: whitespace runs become one space, trimmed, NUL replaced."""
    return _WSP_RUN.sub(b" ", value).strip(b" ").replace(b"\x00", _REPLACEMENT)


def internaldate_string(when: datetime) -> str:
    """Format ``when`` as an IMAP date-time, e.g. ``17-Jul-1996 02:44:25 -0700``.

    A naive datetime is taken as UTC (the server's time zone). The day is zero-padded
    (``date-day-fixed`` also allows a leading space; Dovecot pads with a zero too).
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )
