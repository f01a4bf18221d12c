"""A raw SMTP client for hostile-input tests: plain `socket` and `ssl`, no smtplib.

smtplib normalises what it sends (it fixes line endings and dot-stuffs DATA), so the tests
that attack the server's parser write bytes themselves. Everything here blocks: call it
from a thread (`asyncio.to_thread`) since the servers run on the test's event loop.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

REPLY_LINE = re.compile(rb"^\d{3}[ -]")
READ_TIMEOUT = 15.0


class Closed(Exception):
    """The server closed the connection; `lines` holds what it said before."""


@dataclass
class Reply:
    code: int
    lines: list[bytes]

    @property
    def text(self) -> bytes:
        return b"\n".join(self.lines)

    def __contains__(self, needle: bytes) -> bool:
        return needle in self.text


class Wire:
    def __init__(self, port: int, timeout: float = READ_TIMEOUT) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout
        )
        self._buf = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- bytes ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            return False
        if not chunk:
            return False
        self._buf += chunk
        return True

    def line(self) -> bytes:
        """One reply line without its CRLF; `Closed` at end of stream."""
        while b"\n" not in self._buf:
            if not self._fill():
                raise Closed(self._buf)
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> Reply:
        """One whole (possibly multi-line) reply; every line must look like one."""
        lines: list[bytes] = []
        while True:
            line = self.line()
            assert REPLY_LINE.match(line), f"not an SMTP reply line: {line[:200]!r}"
            lines.append(line)
            if line[3:4] == b" ":
                return Reply(int(line[:3]), lines)

    def cmd(self, command: str | bytes) -> Reply:
        raw = command.encode() if isinstance(command, str) else command
        self.send(raw + b"\r\n")
        return self.reply()

    def expect(self, command: str | bytes, code: int) -> Reply:
        reply = self.cmd(command)
        assert reply.code == code, (command, reply.lines)
        return reply

    def read_to_end(self) -> list[bytes]:
        """Every line until the server closes; a read that times out is a failure."""
        lines: list[bytes] = []
        try:
            while True:
                lines.append(self.line())
        except TimeoutError:
            raise AssertionError(f"the server neither answered nor closed: {lines!r}") from None
        except (Closed, OSError):
            pass
        if self._buf:
            lines.append(self._buf)
            self._buf = b""
        return lines

    # -- TLS -----------------------------------------------------------------------------

    def starttls(self, context: ssl.SSLContext) -> None:
        self.expect("STARTTLS", 220)
        assert not self._buf, "the server spoke in clear after 220"
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")


def client_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


def greet(port: int, timeout: float = READ_TIMEOUT) -> Wire:
    wire = Wire(port, timeout)
    greeting = wire.reply()
    assert greeting.code == 220, greeting.lines
    return wire


def open_tls(
    port: int, context: ssl.SSLContext, helo: str = "client.test", timeout: float = READ_TIMEOUT
) -> Wire:
    """Greeting, EHLO, STARTTLS, EHLO: ready for AUTH (submission) or MAIL (inbound)."""
    wire = greet(port, timeout)
    wire.expect(f"EHLO {helo}", 250)
    wire.starttls(context)
    wire.expect(f"EHLO {helo}", 250)
    return wire


def open_submission(
    port: int, ca_file: Path, login: str, password: str, timeout: float = READ_TIMEOUT
) -> Wire:
    wire = open_tls(port, client_context(ca_file), timeout=timeout)
    token = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
    wire.expect(f"AUTH PLAIN {token}", 235)
    return wire


def assert_alive(port: int) -> None:
    """The listener still greets, and answers EHLO on a fresh connection."""
    with greet(port, timeout=10) as wire:
        reply = wire.expect("EHLO alive.test", 250)
        assert b"ENHANCEDSTATUSCODES" in reply
        wire.expect("QUIT", 221)
