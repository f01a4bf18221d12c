"""Reading the DATA section in large chunks (RFC 5321 §4.1.1.4, §4.5.2).

aiosmtpd reads DATA one line at a time; this reader consumes the stream in 64 KiB chunks,
removes dot-stuffing, finds the `<CRLF>.<CRLF>` terminator, and refuses bare CR or LF
(RFC 5321 §2.3.8), which closes the SMTP smuggling hole (CVE-2023-51764 family): a line
that is not terminated by CRLF can never end the message. Oversized messages are read to
their end and dropped, so the session stays in sync and can answer 552.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

MAX_LINE = 1024 * 1024  # longer lines are refused (RFC 5321 §4.5.3.1.6 says 1000 octets)


class DataOutcome(Enum):
    OK = "ok"
    TOO_BIG = "too-big"
    HEADER_TOO_BIG = "header-too-big"
    BARE_NEWLINE = "bare-newline"


@dataclass
class DataCollector:
    """Feed chunks; `done` turns True at the terminator, `leftover` holds what follows."""

    max_size: int
    max_header_size: int = 1024 * 1024
    body: bytearray = field(default_factory=bytearray)
    done: bool = False
    leftover: bytes = b""
    outcome: DataOutcome = DataOutcome.OK
    size: int = 0
    _pending: bytes = b""
    _header_done: bool = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            self.leftover += chunk
            return
        data = self._pending + chunk
        last = data.rfind(b"\r\n")
        if last < 0:
            self._pending = data
            self._check_pending()
            return
        complete, self._pending = data[: last + 2], data[last + 2 :]
        self._consume(complete)
        if not self.done:
            self._check_pending()

    def _check_pending(self) -> None:
        # An unterminated line may not grow without bound: past MAX_LINE it is an error
        # that we remember (bare LF somewhere, or garbage), and we keep only its tail.
        # (+1: the pending bytes may end with the CR of the line's CRLF.)
        if len(self._pending) > MAX_LINE + 1:
            self._mark(DataOutcome.BARE_NEWLINE)
            # Only the last byte matters (a CR that the next LF completes), and it is the
            # middle of a line: the filler byte keeps it from being read as the start of
            # one, or a tail `.\r` followed by `\n` would pass for `<CRLF>.<CRLF>` and
            # what follows would be read as commands (smuggling).
            self._pending = b"\x00" + self._pending[-1:]

    def _mark(self, outcome: DataOutcome) -> None:
        if self.outcome is DataOutcome.OK:
            self.outcome = outcome
            self.body.clear()

    def _consume(self, complete: bytes) -> None:
        """`complete` ends with CRLF; it may hold the terminator line."""
        # Fast path: no line starts with a dot and no bare CR/LF in the chunk (and no
        # line can be longer than MAX_LINE).
        if (
            len(complete) <= MAX_LINE
            and not complete.startswith(b".")
            and b"\n." not in complete
            and complete.count(b"\n") == complete.count(b"\r\n") == complete.count(b"\r")
        ):
            self._append(complete)
            return
        start = 0
        while start < len(complete):
            end = complete.index(b"\r\n", start) + 2
            line = complete[start:end]
            start = end
            if line == b".\r\n":
                self.done = True
                self.leftover = complete[start:] + self._pending
                self._pending = b""
                return
            # The same limit as `_check_pending`, whatever the chunk boundaries were.
            if len(line) > MAX_LINE + 2 or b"\n" in line[:-2] or b"\r" in line[:-2]:
                self._mark(DataOutcome.BARE_NEWLINE)
            if line.startswith(b"."):
                line = line[1:]  # RFC 5321 §4.5.2 transparency
            self._append(line)

    def _append(self, data: bytes) -> None:
        self.size += len(data)
        if self.outcome is not DataOutcome.OK:
            return
        if self.size > self.max_size:
            self._mark(DataOutcome.TOO_BIG)
            return
        scan_from = max(0, len(self.body) - 3)
        self.body += data
        if not self._header_done:
            if self.body.startswith(b"\r\n"):
                header_end = 0  # no header field at all
            else:
                blank = self.body.find(b"\r\n\r\n", scan_from)
                header_end = blank + 2 if blank >= 0 else -1
            if header_end >= 0:
                self._header_done = True
                # One large chunk may bring an oversized header section and its end at once.
                if header_end > self.max_header_size:
                    self._mark(DataOutcome.HEADER_TOO_BIG)
            elif len(self.body) > self.max_header_size:
                self._mark(DataOutcome.HEADER_TOO_BIG)
