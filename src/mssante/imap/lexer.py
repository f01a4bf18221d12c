"""Tokens of the IMAP command grammar (RFC 3501 §9, RFC 9051 §9) over a framed command.

The framer (parser.py) has already located every literal: `literals` maps the offset of
a literal's `{` (or the `~` of a literal8) to where its octets are. The reader walks the
buffer by offsets, never copies it, and uses only regular expressions that cannot
backtrack, so a command is read in time linear in its size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import NoReturn, TypeVar

from mssante.imap.sequence import SequenceSet, parse_sequence_set
from mssante.imap.utf7 import decode_mailbox_name, normalize_mailbox_name

T = TypeVar("T")

MAX_MODSEQ = 2**63 - 1  # RFC 7162: mod-sequence values are 63-bit
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 number64

_SPECIALS = frozenset(b'(){%*"\\]')
_ATOM_CHARS = [c for c in range(0x21, 0x7F) if c not in _SPECIALS]


def _charclass(chars: list[int]) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % c for c in chars) + b"]+"


ATOM = re.compile(_charclass(_ATOM_CHARS))
ASTRING_ATOM = re.compile(_charclass([*_ATOM_CHARS, ord("]")]))
TAG = re.compile(_charclass([c for c in [*_ATOM_CHARS, ord("]")] if c != ord("+")]))
LIST_ATOM = re.compile(_charclass([*_ATOM_CHARS, ord("]"), ord("%"), ord("*")]))
QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*+)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
DIGITS = re.compile(rb"[0-9]+")
SEQUENCE = re.compile(rb"[0-9*:,$]+")
_SPACES = re.compile(rb" +")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) '
    rb'([+-])([0-9]{2})([0-9]{2})"'
)
SYSTEM_FLAGS = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}


class SyntaxErr(Exception):
    """A grammar violation; becomes a ParseError (tagged BAD)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class StopAtLiteral(Exception):
    """The reader reached the literal the framer stopped at (waiting or too big)."""


@dataclass(frozen=True)
class LiteralSpan:
    start: int  # offset of the first octet
    size: int
    binary: bool  # literal8 `~{n}`
    stop: bool = False  # the framer stopped here: octets are not (all) in the buffer


class Reader:
    def __init__(
        self,
        buf: bytes | bytearray,
        pos: int,
        end: int,
        literals: dict[int, LiteralSpan],
        utf8: bool,
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.literals = literals
        self.utf8 = utf8

    # -- primitives -------------------------------------------------------------------

    @staticmethod
    def fail(message: str, code: str | None = None) -> NoReturn:
        raise SyntaxErr(message, code)

    def peek(self) -> int:
        return self.buf[self.pos] if self.pos < self.end else -1

    def at_end(self) -> bool:
        """End of the command, trailing spaces tolerated."""
        if self.pos >= self.end:
            return True
        if self.buf[self.pos] != 0x20:
            return False
        if self.pos + 1 < self.end and self.buf[self.pos + 1] != 0x20:
            return False
        m = _SPACES.match(self.buf, self.pos, self.end)
        return (m.end() if m else self.pos) >= self.end

    def finish(self) -> None:
        if not self.at_end():
            self.fail("Unexpected characters after the command")
        self.pos = self.end

    def accept(self, text: bytes) -> bool:
        """Consume `text` (ASCII, case-insensitive) if it comes next."""
        n = len(text)
        if self.pos + n <= self.end and bytes(self.buf[self.pos : self.pos + n]).upper() == text:
            self.pos += n
            return True
        return False

    def expect(self, text: bytes, what: str) -> None:
        if not self.accept(text):
            self.fail(f"Expected {what}")

    def space(self) -> None:
        if self.pos + 1 < self.end and self.buf[self.pos] == 0x20 != self.buf[self.pos + 1]:
            self.pos += 1
            return
        m = _SPACES.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail("Expected a space")
        self.pos = m.end()

    def more(self) -> bool:
        """Consume a space if one comes and is followed by something (an optional part)."""
        m = _SPACES.match(self.buf, self.pos, self.end)
        if m is None or m.end() >= self.end:
            return False
        self.pos = m.end()
        return True

    def match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail(f"Expected {what}")
        self.pos = m.end()
        return m.group()

    # -- atoms, numbers -----------------------------------------------------------------

    def atom(self, what: str = "an atom") -> bytes:
        return self.match(ATOM, what)

    def keyword(self, what: str = "a keyword") -> str:
        return self.atom(what).decode("ascii").upper()

    def peek_keyword(self) -> str:
        """The atom that comes next, upper-cased ("" if none), without consuming it."""
        m = ATOM.match(self.buf, self.pos, self.end)
        return m.group().decode("ascii").upper() if m else ""

    def number(self, maximum: int = 4294967295, minimum: int = 0, what: str = "a number") -> int:
        digits = self.match(DIGITS, what)
        if len(digits) > 20 or not minimum <= int(digits) <= maximum:
            self.fail(f"{what.capitalize()} out of range")
        return int(digits)

    def modseq(self, minimum: int = 0) -> int:
        return self.number(MAX_MODSEQ, minimum, "a mod-sequence value")

    def sequence_set(self, allow_saved: bool = True, allow_star: bool = True) -> SequenceSet:
        token = self.match(SEQUENCE, "a sequence set")
        try:
            result = parse_sequence_set(token, allow_saved=allow_saved)
        except ValueError as exc:
            self.fail(f"Invalid sequence set: {exc}")
        if not allow_star and result.uses_star:
            self.fail("'*' is not allowed in this sequence set")
        return result

    # -- strings --------------------------------------------------------------------------

    def literal(self, allow_binary: bool = False) -> bytes:
        lit = self.literals.get(self.pos)
        if lit is None:
            self.fail("Unexpected '{'" if self.peek() == ord("{") else "Expected a string")
        if lit.binary and not allow_binary:
            self.fail("literal8 is only allowed for message data")
        if lit.stop:
            raise StopAtLiteral
        self.pos = lit.start + lit.size
        return bytes(self.buf[lit.start : self.pos])

    def quoted(self) -> bytes:
        m = QUOTED.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail("Invalid quoted string")
        self.pos = m.end()
        return _UNESCAPE.sub(rb"\1", m.group(1))

    def at_literal(self) -> bool:
        """`{` or `~{` comes next (`~` alone is an ordinary atom character)."""
        c = self.peek()
        return c == ord("{") or (c == ord("~") and self.buf[self.pos + 1 : self.pos + 2] == b"{")

    def at_string(self) -> bool:
        return self.peek() == ord('"') or self.at_literal()

    def string(self) -> bytes:
        if self.peek() == ord('"'):
            return self.quoted()
        if self.at_literal():
            return self.literal()
        self.fail("Expected a string")

    def astring(self, pattern: re.Pattern[bytes] = ASTRING_ATOM) -> bytes:
        if self.at_string():
            return self.string()
        return self.match(pattern, "a string")

    def nstring(self) -> bytes | None:
        if not self.at_string():
            save = self.pos
            if self.atom("NIL").upper() == b"NIL":
                return None
            self.pos = save
        return self.string()

    def text(self, raw: bytes, what: str = "string") -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"Invalid UTF-8 in {what}")

    def astring_text(self, what: str = "string") -> str:
        return self.text(self.astring(), what)

    def mailbox(self, pattern: re.Pattern[bytes] = ASTRING_ATOM) -> str:
        name = self.text(self.astring(pattern), "mailbox name")
        try:
            decoded = decode_mailbox_name(name, utf8=self.utf8)
        except ValueError as exc:
            self.fail(f"Invalid mailbox name: {exc}")
        return normalize_mailbox_name(decoded)

    # -- lists ---------------------------------------------------------------------------

    def paren_list(self, item: Callable[[], T], allow_empty: bool = True) -> list[T]:
        self.expect(b"(", "'('")
        items: list[T] = []
        if self.accept(b")"):
            if not allow_empty:
                self.fail("Empty list")
            return items
        while True:
            items.append(item())
            if self.accept(b")"):
                return items
            self.space()

    def flag(self, allow_recent: bool = False) -> str:
        """`\\System` flags are returned in canonical case; keywords as written."""
        if self.accept(b"\\"):
            name = "\\" + self.atom("a flag").decode("ascii")
            canonical = SYSTEM_FLAGS.get(name.upper(), name)
            if canonical == "\\Recent" and not allow_recent:
                self.fail("\\Recent cannot be set by clients")
            return canonical
        return self.atom("a flag").decode("ascii")

    # -- dates ---------------------------------------------------------------------------

    def date(self) -> date:
        """RFC 3501 `date` (SEARCH): `1-Feb-1994` or `"01-Feb-1994"`."""
        quoted = self.accept(b'"')
        m = self.match(_DATE, "a date (dd-Mon-yyyy)")
        if quoted:
            self.expect(b'"', "'\"'")
        found = _DATE.fullmatch(m)
        assert found is not None
        month = _MONTHS.get(found.group(2).decode("ascii").upper())
        try:
            if month is None:
                raise ValueError
            return date(int(found.group(3)), month, int(found.group(1)))
        except ValueError:
            self.fail("Invalid date")

    def date_time(self) -> datetime:
        """RFC 3501 `date-time` (APPEND): `"17-Jul-1996 02:44:25 -0700"`."""
        m = _DATE_TIME.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail("Invalid date-time")
        self.pos = m.end()
        day, mon, year, hh, mm, ss, sign, zh, zm = (g.decode("ascii") for g in m.groups())
        month = _MONTHS.get(mon.upper())
        try:
            if month is None or int(zm) > 59:
                raise ValueError
            offset = timedelta(hours=int(zh), minutes=int(zm))
            tz = timezone(-offset if sign == "-" else offset)
            return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
        except ValueError:
            self.fail("Invalid date-time")
