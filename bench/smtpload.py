"""A small SMTP load generator on asyncio streams (the client side of `make bench`).

Each client opens one connection, does EHLO, STARTTLS (optionally with a client
certificate) and AUTH PLAIN once, then runs many transactions on it without pipelining:
MAIL, RCPT, DATA, the body, and the final reply. Two latencies are recorded per message:

* acceptance: from the last byte of the body (`CRLF.CRLF`) written to the `250` reply,
  i.e. the time the server takes to make the message durable and answer;
* transaction: from `MAIL FROM` written to that `250` (the client's view of one message).

The client is deliberately minimal (pre-built message bytes, no dot-stuffing needed
because generated lines never start with a dot) so that it costs the machine as little
CPU as possible.
"""

from __future__ import annotations

import asyncio
import base64
import math
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime


class SmtpError(Exception):
    def __init__(self, stage: str, code: int, text: bytes) -> None:
        super().__init__(f"{stage}: {code} {text.decode('utf-8', 'replace')}")
        self.stage = stage
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where and how a client connects."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None  # STARTTLS with this context when set
    server_hostname: str | None = None
    login: tuple[str, str] | None = None  # AUTH PLAIN after STARTTLS
    ehlo: str = "loadgen.bench.test"


@dataclass(frozen=True)
class Route:
    """One client's connection target and envelope."""

    target: Target
    sender: str
    recipient: str


def make_payload(size: int, sender: str, recipient: str) -> tuple[bytes, bytes]:
    """Header prefix and rest of a message of about `size` bytes (Message-ID goes between).

    The whole message is `prefix + b"Message-ID: <id>\\r\\n" + rest`; `rest` ends with the
    end-of-data marker. Lines are 76 characters, none starts with a dot.
    """
    head = (
        f"From: <{sender}>\r\n"
        f"To: <{recipient}>\r\n"
        f"Subject: mssante bench {size} bytes\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
    ).encode("ascii")
    tail_head = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    overhead = len(head) + len(tail_head) + len("Message-ID: <>\r\n") + 48
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    line = (alphabet * 2)[:76] + b"\r\n"
    count = max(1, math.ceil((size - overhead) / len(line)))
    body = line * count
    return head, tail_head + body + b".\r\n"


class SmtpClient:
    def __init__(self, target: Target, timeout: float = 60.0) -> None:
        self.target = target
        self.timeout = timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _reply(self) -> tuple[int, bytes]:
        assert self.reader is not None
        lines: list[bytes] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not line:
                raise ConnectionResetError("server closed the connection")
            lines.append(line[4:].rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    async def command(self, line: bytes, stage: str, expect: int) -> bytes:
        assert self.writer is not None
        self.writer.write(line + b"\r\n")
        code, text = await self._reply()
        if code != expect:
            raise SmtpError(stage, code, text)
        return text

    async def connect(self) -> None:
        t = self.target
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(t.host, t.port, limit=1 << 20), self.timeout
        )
        code, text = await self._reply()
        if code != 220:
            raise SmtpError("greeting", code, text)
        ehlo = b"EHLO " + t.ehlo.encode("ascii")
        await self.command(ehlo, "ehlo", 250)
        if t.tls is not None:
            await self.command(b"STARTTLS", "starttls", 220)
            await self.writer.start_tls(t.tls, server_hostname=t.server_hostname)
            await self.command(ehlo, "ehlo", 250)
        if t.login is not None:
            user, password = t.login
            token = base64.b64encode(f"\0{user}\0{password}".encode())
            await self.command(b"AUTH PLAIN " + token, "auth", 235)

    async def send(self, sender: str, recipient: str, message: bytes) -> tuple[float, float]:
        """One transaction; returns (acceptance latency, transaction latency) in seconds."""
        assert self.writer is not None
        start = time.perf_counter()
        await self.command(f"MAIL FROM:<{sender}>".encode(), "mail", 250)
        await self.command(f"RCPT TO:<{recipient}>".encode(), "rcpt", 250)
        await self.command(b"DATA", "data", 354)
        self.writer.write(message)
        await self.writer.drain()
        sent = time.perf_counter()
        code, text = await self._reply()
        end = time.perf_counter()
        if code != 250:
            raise SmtpError("end of data", code, text)
        return end - sent, end - start

    async def close(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self._reply(), 5)
        except (OSError, TimeoutError, ValueError, ssl.SSLError, ConnectionError):
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError):
            pass
        self.writer = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LoadResult:
    size: int
    clients: int
    messages: int = 0
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    accept: list[float] = field(default_factory=list)
    transaction: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        rate = self.messages / self.elapsed if self.elapsed else 0.0
        return {
            "message_size_bytes": self.size,
            "clients": self.clients,
            "duration_s": round(self.elapsed, 3),
            "accepted": self.messages,
            "errors": self.errors,
            "error_samples": self.error_samples[:5],
            "msgs_per_s": round(rate, 1),
            "mb_per_s": round(self.bytes / self.elapsed / 1e6, 2) if self.elapsed else 0.0,
            "accept_latency_ms": {
                "p50": ms(percentile(self.accept, 50)),
                "p99": ms(percentile(self.accept, 99)),
                "max": ms(max(self.accept) if self.accept else None),
            },
            "transaction_latency_ms": {
                "p50": ms(percentile(self.transaction, 50)),
                "p99": ms(percentile(self.transaction, 99)),
            },
        }


async def run_load(
    routes: Sequence[Route],
    size: int,
    *,
    duration: float | None = None,
    messages_per_client: int | None = None,
    on_start: Callable[[], object] | None = None,
    on_stop: Callable[[], object] | None = None,
) -> LoadResult:
    """All clients connect first, then send for `duration` seconds (or a fixed count).

    `on_start` and `on_stop` are called right before the first message and right after
    the last reply (CPU accounting of the measured window only, not of the handshakes).
    """
    if duration is None and messages_per_client is None:
        raise ValueError("give a duration or a message count")
    result = LoadResult(size=size, clients=len(routes))
    clients = [SmtpClient(route.target) for route in routes]
    await asyncio.gather(*(c.connect() for c in clients))
    payloads = [make_payload(size, r.sender, r.recipient) for r in routes]
    go = asyncio.Event()
    deadline = 0.0

    async def worker(index: int) -> None:
        client, route = clients[index], routes[index]
        head, rest = payloads[index]
        await go.wait()
        sent = 0
        tag = secrets.token_hex(4)
        while True:
            if duration is not None and time.perf_counter() >= deadline:
                return
            if messages_per_client is not None and sent >= messages_per_client:
                return
            sent += 1
            mid = f"Message-ID: <bench-{tag}-{index}-{sent}@loadgen.bench.test>\r\n"
            message = head + mid.encode("ascii") + rest
            try:
                accept, txn = await client.send(route.sender, route.recipient, message)
            except SmtpError as exc:
                result.errors += 1
                result.error_samples.append(str(exc))
                if result.errors > 100:
                    return
                if exc.stage != "end of data":
                    try:
                        await client.command(b"RSET", "rset", 250)
                    except (SmtpError, OSError, TimeoutError, ssl.SSLError):
                        return
                continue
            except (OSError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
                result.errors += 1
                result.error_samples.append(f"connection: {exc!r}")
                return
            result.messages += 1
            result.bytes += len(message) - 3
            result.accept.append(accept)
            result.transaction.append(txn)

    tasks = [asyncio.create_task(worker(i)) for i in range(len(routes))]
    if on_start is not None:
        on_start()
    start = time.perf_counter()
    deadline = start + (duration or 0.0)
    go.set()
    await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    if on_stop is not None:
        on_stop()
    await asyncio.gather(*(c.close() for c in clients))
    return result
