"""IMAP command parser without I/O (pymap style): bytes in, one result out.

The server keeps a bytearray of what the client sent and calls `parse(buf, …)`:

* `NeedMore()`: no complete command yet; read more and call again.
* `NeedContinuation(size, tag)`: the command has reached a synchronizing literal `{n}`
  whose octets the client will only send after `+ Ready for literal data`. Send it,
  read more, call again. The literal counts as acknowledged once any octet follows its
  CRLF in the buffer; if you call `parse` again before new octets arrive, pass
  `continuation_sent={len(buf)}` (the offset of the literal's first octet, i.e. the
  buffer length when NeedContinuation was returned). Offsets are relative to the buffer
  start: clear them whenever you drop bytes. To refuse instead (e.g. NO [TOOBIG] for a
  mailbox's own APPENDLIMIT, or NO [OVERQUOTA]), answer with `tag` and drop the whole
  buffer: it ends right after the `{n}` line and the client sends nothing more.
* `Command(tag, name, args, consumed)`: drop `consumed` bytes and execute.
* `ParseError(tag, message, consumed, code, discard_line)`: answer `tag BAD [code] message`
  (`* BAD` when tag is None) and drop `consumed` bytes. Special cases:
  - `code="TOOBIG"` for a literal over the limit: refused before the continuation for
    `{n}` (the client sends nothing more); for `{n+}` the octets come anyway, so
    `consumed` covers them and may exceed len(buf): keep discarding what arrives until
    `consumed` octets are gone (or close the connection). The same code is used for a
    command line longer than `max_line`. For APPEND you may answer NO [TOOBIG] instead
    (RFC 7889, RFC 9051 §7.1).
  - `code="BADCHARSET"`: SEARCH with an unknown CHARSET; RFC 3501 §6.4.4 wants a tagged
    `NO [BADCHARSET (US-ASCII UTF-8)]`, not a BAD.
  - `discard_line=True`: the line was too long and its end has not arrived; after
    dropping `consumed` (= everything buffered) keep discarding up to and including the
    next LF, then resume parsing.
  Syntax errors have `code=None` (`PARSE` means a message-parsing problem in RFC 3501).

Framing: lines end with CRLF (a bare LF is tolerated); a line ending in `{n}`, `{n+}`,
`~{n}` or `~{n+}` continues after n octets of literal. Empty lines between commands are
skipped (counted in the next result's `consumed`; beyond MAX_BLANK octets of them, an
untagged BAD consumes them). Limits: the command text without literals is at most
`max_line` octets; the literals of APPEND may total `max_literal` octets, those of other
commands min(max_literal, max_line); at most MAX_LITERALS literals per command (TOOBIG).
Only a command's first literal has its prefix checked by the grammar before the
continuation (`a FOO {5}` is refused at once); later errors show once the command is
complete. `utf8=True` once the client has enabled IMAP4rev2 or UTF8=ACCEPT: mailbox names
are then UTF-8, not modified UTF-7.

After STARTTLS the server must discard whatever is still buffered (command injection).

No exception escapes `parse`, every error has `consumed > 0`, there is no recursion, and
the work is linear in the size of the buffer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mssante.imap.grammar import parse_command_body
from mssante.imap.lexer import TAG, LiteralSpan, Reader, StopAtLiteral, SyntaxErr

__all__ = [
    "MAX_LITERALS",
    "Command",
    "Line",
    "NeedContinuation",
    "NeedMore",
    "ParseError",
    "ParseResult",
    "parse",
    "parse_line",
]


@dataclass(frozen=True)
class NeedMore:
    """The buffer does not hold a complete command yet."""


@dataclass(frozen=True)
class NeedContinuation:
    """A synchronizing literal {n}: send "+ …" before the client sends n octets."""

    size: int
    tag: str | None  # the tag if already read (for a NO/BAD [TOOBIG] refusal)


@dataclass(frozen=True)
class ParseError:
    """Tagged BAD (or untagged BAD when tag is None); drop `consumed` bytes."""

    tag: str | None
    message: str  # short English text for the BAD line
    consumed: int
    code: str | None = None  # "TOOBIG", "BADCHARSET" or None
    discard_line: bool = False  # keep discarding input through the next LF


@dataclass(frozen=True)
class Command:
    tag: str
    name: str  # upper-case, "UID FETCH" style for UID commands
    args: tuple[Any, ...]  # () or (XxxArgs(...),), see command_args.py
    consumed: int  # bytes of the buffer this command used


@dataclass(frozen=True)
class Line:
    """A bare line (IDLE's DONE, an AUTHENTICATE response), without its CRLF."""

    text: bytes
    consumed: int


ParseResult = NeedMore | NeedContinuation | ParseError | Command

_LF = 0x0A
_CR = 0x0D
_MARKER = re.compile(rb"\{([0-9]+)(\+?)\}")
_FIRST_WORDS = re.compile(rb"[^ \r\n]* +(?:[Uu][Ii][Dd] +)?([A-Za-z]+)")
MAX_LITERALS = 64  # per command
MAX_BLANK = 1024  # octets of empty lines skipped silently before a command
_BLANK_LINES = re.compile(rb"(?:\r?\n)+")
_INTERNAL = "Internal error while parsing the command"
_HUGE = 1 << 64  # stands for a literal size too long to be a number


@dataclass(frozen=True)
class _Framed:
    """A command located in the buffer: text from `start` to `end` (without the final
    CRLF), with its literals. `stop`: ("continue" | "toobig", size) when framing
    stopped at a literal whose octets are not to be read."""

    start: int
    end: int
    consumed: int
    literals: dict[int, LiteralSpan]
    stop: tuple[str, int] | None = None


def _tag_of(buf: bytes | bytearray, start: int, end: int) -> str | None:
    m = TAG.match(buf, start, end)
    if m is None or m.end() >= end or buf[m.end()] != 0x20:
        return None
    return m.group().decode("ascii")


def _marker(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int, bool, bool] | None:
    """(offset of `{` or `~`, size, synchronizing, literal8) if the line ends in one."""
    if end <= pos or buf[end - 1] != ord("}"):
        return None
    brace = buf.rfind(b"{", pos, end)
    m = _MARKER.fullmatch(buf, brace, end) if brace >= 0 else None
    if m is None:
        return None
    digits = m.group(1)
    size = int(digits) if len(digits) <= 20 else _HUGE
    binary = brace > pos and buf[brace - 1] == ord("~")
    return (brace - 1 if binary else brace), size, not m.group(2), binary


def _frame(
    buf: bytes | bytearray,
    start: int,
    max_literal: int,
    max_line: int,
    continuation_sent: frozenset[int],
) -> _Framed | NeedMore | ParseError:
    n = len(buf)
    pos = start
    text = 0
    literal_total = 0
    limit: int | None = None
    literals: dict[int, LiteralSpan] = {}
    while True:
        budget = max_line - text
        lf = buf.find(b"\n", pos, min(n, pos + budget + 2))
        if lf < 0:
            if n - pos < budget + 2:
                return NeedMore()
            tag = _tag_of(buf, start, min(n, start + max_line))
            lf = buf.find(b"\n", pos)
            if lf < 0:
                return ParseError(tag, "Command line too long", n, "TOOBIG", discard_line=True)
            return ParseError(tag, "Command line too long", lf + 1, "TOOBIG")
        end = lf - 1 if lf > pos and buf[lf - 1] == _CR else lf
        text += end - pos
        if text > max_line:
            return ParseError(_tag_of(buf, start, end), "Command line too long", lf + 1, "TOOBIG")
        if limit is None:
            first = _FIRST_WORDS.match(buf, start, end)
            is_append = first is not None and first.group(1).upper() == b"APPEND"
            limit = max_literal if is_append else min(max_literal, max_line)
        mark = _marker(buf, pos, end)
        if mark is None:
            return _Framed(start, end, lf + 1, literals)
        at, size, sync, binary = mark
        data = lf + 1
        too_many = len(literals) >= MAX_LITERALS
        if too_many or size > limit - literal_total:
            literals[at] = LiteralSpan(data, size, binary, stop=True)
            consumed = data if sync else data + size
            return _Framed(
                start, end, consumed, literals, ("toomany" if too_many else "toobig", size)
            )
        if sync and data >= n and data not in continuation_sent:
            literals[at] = LiteralSpan(data, size, binary, stop=True)
            return _Framed(start, end, data, literals, ("continue", size))
        if data + size > n:
            return NeedMore()
        literals[at] = LiteralSpan(data, size, binary)
        literal_total += size
        pos = data + size


def _stopped(framed: _Framed, tag: str | None) -> NeedContinuation | ParseError:
    assert framed.stop is not None
    kind, size = framed.stop
    if kind == "continue":
        return NeedContinuation(size, tag)
    message = "Too many literals" if kind == "toomany" else "Literal too big"
    return ParseError(tag, message, framed.consumed, "TOOBIG")


def _skip_blank_lines(buf: bytes | bytearray) -> int:
    m = _BLANK_LINES.match(buf, 0, MAX_BLANK + 2)
    return m.end() if m else 0


def _parse(
    buf: bytes | bytearray,
    max_literal: int,
    max_line: int,
    continuation_sent: frozenset[int],
    utf8: bool,
) -> ParseResult:
    start = _skip_blank_lines(buf)
    if start > MAX_BLANK:
        return ParseError(None, "Too many empty lines", start)
    if start >= len(buf):
        return NeedMore()
    framed = _frame(buf, start, max_literal, max_line, continuation_sent)
    if not isinstance(framed, _Framed):
        return framed
    if framed.stop is not None and len(framed.literals) > 1:
        # Only a command's first literal has its prefix checked by the grammar: doing it
        # for each literal would re-parse the prefix each time, a cost a client could
        # make quadratic. Later errors are found once the command is complete.
        return _stopped(framed, _tag_of(buf, framed.start, framed.end))
    reader = Reader(buf, framed.start, framed.end, framed.literals, utf8)
    tag: str | None = None
    try:
        raw_tag = reader.match(TAG, "a tag")
        if not reader.at_end() and reader.peek() != ord(" "):
            reader.fail("Invalid tag")
        tag = raw_tag.decode("ascii")
        reader.space()
        name, args = parse_command_body(reader)
    except SyntaxErr as exc:
        return ParseError(tag, exc.message, framed.consumed, exc.code)
    except StopAtLiteral:
        return _stopped(framed, tag)
    except Exception:  # noqa: BLE001 - a grammar bug: refuse this command, keep in sync
        return ParseError(tag, _INTERNAL, framed.consumed)
    if framed.stop is not None:  # cannot happen: the grammar must read or refuse `{`
        return ParseError(tag, "Unexpected literal", framed.consumed)
    return Command(tag, name, args, framed.consumed)


def _fallback_consumed(buf: bytes | bytearray) -> int:
    lf = buf.find(b"\n")
    return lf + 1 if lf >= 0 else max(len(buf), 1)


def parse(
    buffer: bytes | bytearray,
    *,
    max_literal: int,
    max_line: int = 65536,
    continuation_sent: frozenset[int] = frozenset(),
    utf8: bool = False,
) -> ParseResult:
    """Parse the first command in `buffer`; see the module docstring."""
    try:
        return _parse(buffer, max(max_literal, 0), max(max_line, 1), continuation_sent, utf8)
    except Exception:  # noqa: BLE001 - a parser bug must become a BAD, not kill the session
        if not buffer:
            return NeedMore()
        return ParseError(None, _INTERNAL, _fallback_consumed(buffer))


def parse_line(buffer: bytes | bytearray, *, max_line: int = 65536) -> NeedMore | Line | ParseError:
    """One line without any IMAP syntax: IDLE's `DONE`, a SASL response, `*` to cancel."""
    lf = buffer.find(b"\n", 0, max_line + 2)
    if lf < 0:
        if len(buffer) < max_line + 2:
            return NeedMore()
        lf = buffer.find(b"\n")
        if lf < 0:
            return ParseError(None, "Line too long", len(buffer), "TOOBIG", discard_line=True)
    end = lf - 1 if lf > 0 and buffer[lf - 1] == _CR else lf
    if end > max_line:
        return ParseError(None, "Line too long", lf + 1, "TOOBIG")
    return Line(bytes(buffer[:end]), lf + 1)
