"""The IMAP listener and one connection's I/O loop (RFC 3501 / RFC 9051).

The sans-IO parser (`parser.py`) turns buffered bytes into commands; this module reads the
socket, answers literal continuations, enforces the limits (line length, literal size,
commands per second, 30-minute idle timeout, bad-command budget), and passes each command
through the state gate (`commands.GATE`) to its handler. A failure inside a handler is a
tagged `NO [SERVERBUG]` with an error id that is also in the log; the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mssante.imap import parser as P

if TYPE_CHECKING:
    from mssante.imap.session import Session

log = logging.getLogger("mssante.imap")


@dataclass
class ImapLimits:
    max_line: int = 64 * 1024
    max_literal: int = 50 * 1024 * 1024  # APPENDLIMIT (RFC 7889)
    idle_timeout: float = 30 * 60  # RFC 9051 §5.4: at least 30 minutes
    commands_per_second: int = 200
    max_bad_commands: int = 20


@dataclass
class Connection:
    """The byte stream of one client, with STARTTLS and literal continuations."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    limits: ImapLimits
    buffer: bytearray = field(default_factory=bytearray)
    acknowledged: set[int] = field(default_factory=set)
    skip: int = 0  # bytes still to discard (a refused non-synchronizing literal)
    closed: bool = False
    utf8: bool = False  # IMAP4rev2 enabled: mailbox names in UTF-8 (RFC 9051 §5.1)
    discarding: bool = False  # dropping the rest of an overlong line
    _window_start: float = 0.0
    _window_count: int = 0

    @property
    def peer(self) -> str:
        info = self.writer.get_extra_info("peername")
        return str(info[0]) if isinstance(info, tuple) else str(info)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    async def send(self, *lines: bytes | str) -> None:
        for line in lines:
            self.write((line.encode("utf-8") if isinstance(line, str) else line) + b"\r\n")
        await self.drain()

    async def drain(self) -> None:
        if not self.closed:
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                self.closed = True

    async def fill(self, timeout: float) -> bool:
        """Read more bytes into the buffer; False on EOF or timeout."""
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except (TimeoutError, ConnectionError, ssl.SSLError):
            return False
        if not chunk:
            return False
        if self.skip:
            dropped = min(self.skip, len(chunk))
            self.skip -= dropped
            chunk = chunk[dropped:]
        self.buffer += chunk
        return True

    async def next_command(self) -> P.Command | P.ParseError | None:
        """The next complete command, or None when the client is gone or idle too long."""
        while True:
            if self.discarding:
                idx = self.buffer.find(b"\n")
                if idx < 0:
                    self.buffer.clear()
                    if not await self.fill(self.limits.idle_timeout):
                        return None
                    continue
                del self.buffer[: idx + 1]
                self.discarding = False
            result = P.parse(
                self.buffer,
                max_literal=self.limits.max_literal,
                max_line=self.limits.max_line,
                continuation_sent=frozenset(self.acknowledged),
                utf8=self.utf8,
            )
            if isinstance(result, P.NeedContinuation):
                offset = len(self.buffer)
                if offset not in self.acknowledged:
                    self.acknowledged.add(offset)
                    await self.send("+ Pret pour le litteral / Ready for literal data")
            elif isinstance(result, P.Command | P.ParseError):
                consumed = result.consumed
                if consumed > len(self.buffer):
                    self.skip = consumed - len(self.buffer)
                    consumed = len(self.buffer)
                del self.buffer[:consumed]
                self.acknowledged = {o - consumed for o in self.acknowledged if o > consumed}
                if isinstance(result, P.ParseError) and result.discard_line:
                    self.discarding = True
                if isinstance(result, P.Command) and not self._rate_ok():
                    await asyncio.sleep(1.0)  # throttle rather than refuse
                return result
            if not await self.fill(self.limits.idle_timeout):
                return None

    async def readline(self) -> bytes | None:
        """One line (a SASL response, IDLE's DONE), or None on EOF, timeout or overflow."""
        while True:
            idx = self.buffer.find(b"\n")
            if idx >= 0:
                line = bytes(self.buffer[: idx + 1])
                del self.buffer[: idx + 1]
                return line
            if len(self.buffer) > self.limits.max_line:
                self.buffer.clear()
                return None
            if not await self.fill(self.limits.idle_timeout):
                return None

    def _rate_ok(self) -> bool:
        now = time.monotonic()
        if now - self._window_start > 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        return self._window_count <= self.limits.commands_per_second

    async def start_tls(self, context: ssl.SSLContext) -> None:
        # RFC 3207-style injection defence (RFC 9051 §6.2.1): drop what came in clear.
        self.buffer.clear()
        self.acknowledged.clear()
        await self.writer.start_tls(context)
        shrink_tls_buffer(self.writer)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)


TLS_READ_BUFFER = 16 * 1024  # one TLS record's plaintext


def shrink_tls_buffer(writer: asyncio.StreamWriter) -> None:
    """Give a TLS connection a 16 KiB read buffer instead of asyncio's 256 KiB.

    asyncio's SSLProtocol allocates and zero-fills `max_size` (256 KiB) per connection: most
    of the memory of an idle IMAP connection (about 300 KiB each, 70 KiB with this). Uses
    asyncio's private attributes; where they are missing nothing changes.
    """
    protocol = getattr(writer.transport, "_ssl_protocol", None)
    if protocol is None or not hasattr(protocol, "_ssl_buffer_view"):
        return
    buffer = bytearray(TLS_READ_BUFFER)
    protocol.max_size = TLS_READ_BUFFER
    protocol._ssl_buffer = buffer
    protocol._ssl_buffer_view = memoryview(buffer)


async def serve_connection(session: Session) -> None:
    """Run one client until LOGOUT, disconnection or timeout."""
    conn = session.conn
    try:
        await session.greet()
        while not conn.closed and not session.logged_out:
            command = await conn.next_command()
            if command is None:
                if not conn.closed:
                    await conn.send("* BYE Inactivite trop longue / Autologout; idle for too long")
                break
            if isinstance(command, P.ParseError):
                await session.bad(command)
                continue
            await run_command(session, command)
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        await session.close()
        await conn.close()


async def run_command(session: Session, command: P.Command) -> None:
    try:
        await session.dispatch(command)
    except asyncio.CancelledError:
        raise
    except (ConnectionError, ssl.SSLError):
        raise
    except Exception:
        error_id = secrets.token_hex(6)
        log.exception("error id %s in %s from %s", error_id, command.name, session.conn.peer)
        await session.conn.send(
            f"{command.tag} NO [SERVERBUG] Erreur interne (id {error_id}) / Internal error"
        )


class ImapListener:
    """Accepts connections on one port, STARTTLS (143 role) or implicit TLS (993 role)."""

    def __init__(self, make_session: Any, *, implicit_tls: ssl.SSLContext | None) -> None:
        self.make_session = make_session
        self.implicit_tls = implicit_tls
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(
            self._accept, host, port, ssl=self.implicit_tls, limit=256 * 1024
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            shrink_tls_buffer(writer)
            await serve_connection(self.make_session(reader, writer))
        except asyncio.CancelledError:
            pass  # listener shutdown: the connection is closed by serve_connection
        finally:
            if task is not None:
                self.tasks.discard(task)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)
