"""Hostile clients on a real socket: the server answers with codes, stays up, and never
stores a partial message.

Random bytes before and after STARTTLS (hypothesis), overlong and badly terminated command
lines (RFC 5321 §4.5.3.1.4, §2.3.8), non-ASCII commands, too many errors, a 10 MB header
section, messages over the SIZE limit (RFC 1870), a client that stalls (RFC 5321 §4.5.3.2),
a connection cut during DATA, pipelining (RFC 2920) and the STARTTLS command injection of
RFC 3207 §4.2 (CVE-2011-0411). After each test a fresh connection still gets its 220.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssante.runtime import Operator
from mssante.testing.clients import make_message, seed_professional_mailbox
from mssante.testing.trust_space import LocalTrustSpace, OperatorSpec, TrustListEntry
from smtp_wire import (
    REPLY_LINE,
    Wire,
    assert_alive,
    client_context,
    greet,
    open_submission,
    open_tls,
)

PASSWORD = "mot de passe de test assez long"
SENDER = "camille.martin@alpha.mssante.fr"
RECIPIENT = "claire.petit@alpha.mssante.fr"
BETA_RECIPIENT = "lea.dubois@beta.mssante.fr"
SMALL_SIZE = 64 * 1024
SHORT_TIMEOUT = 2

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


async def _seed(operator: Operator, *boxes: tuple[str, str, str]) -> None:
    for address, rpps, family in boxes:
        await asyncio.to_thread(
            seed_professional_mailbox,
            operator.services.mailboxes,
            address,
            rpps,
            PASSWORD,
            family_name=family,
        )


async def _alpha(space: LocalTrustSpace) -> Operator:
    a = space["alpha.mssante.fr"].operator
    assert a and a.submission
    await _seed(a, (SENDER, "10000000017", "Martin"), (RECIPIENT, "10000000025", "Petit"))
    return a


@pytest.fixture(autouse=True)
def no_internal_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Hostile input is answered by the protocol, never by the `451` of an exception."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def limited_space(
    tmp_path: Path, database_url: Callable[[], str]
) -> AsyncIterator[LocalTrustSpace]:
    """One operator whose submission listener has a 64 KiB SIZE and a 2 s timeout."""
    alpha = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
    space = LocalTrustSpace.create(tmp_path / "limited", [alpha], database_urls=[database_url()])
    local = space.operators[0]
    smtp = local.config.smtp
    submission = smtp.submission.model_copy(
        update={"max_message_size": SMALL_SIZE, "timeout": SHORT_TIMEOUT}
    )
    local.config = local.config.model_copy(
        update={"smtp": smtp.model_copy(update={"submission": submission})}
    )
    await space.start()
    try:
        yield space
    finally:
        await space.stop()


def _submission(a: Operator, space: LocalTrustSpace) -> Wire:
    assert a.submission
    return open_submission(a.submission.port, space.ca_file, SENDER, PASSWORD)


def _stored(a: Operator, address: str = RECIPIENT) -> int:
    return len(a.services.store.list(address))


def _message(subject: str, body: str = "Bonjour.\n") -> bytes:
    return make_message(SENDER, [RECIPIENT], subject=subject, body=body)


def _transaction(wire: Wire, data: bytes) -> None:
    """MAIL, RCPT, DATA up to 354; the caller sends the content (already dot-safe)."""
    wire.expect(f"MAIL FROM:<{SENDER}>", 250)
    wire.expect(f"RCPT TO:<{RECIPIENT}>", 250)
    wire.expect("DATA", 354)
    wire.send(data)


def _check_lines(lines: list[bytes]) -> None:
    for line in lines:
        assert REPLY_LINE.match(line), f"not an SMTP reply line: {line[:200]!r}"
        assert not line.startswith(b"451 "), f"an internal error: {line!r}"


# -- random bytes --------------------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b"\x00",
        b"\xff\xfe",
        b"\xc3\xa9",
        b".",
        b"\r\n.\r\n",
        b" ",
        b":",
        b"<",
        b">",
        b"=",
        b"*",
        b"EHLO x",
        b"HELO x",
        b"NOOP",
        b"RSET",
        b"VRFY x",
        b"HELP",
        b"EXPN x",
        b"BDAT 10 LAST",
        b"AUTH PLAIN",
        b"AUTH LOGIN",
        b"AUTH PLAIN AGNhbWlsbGUAbm9wZQ==",
        b"AUTH CRAM-MD5",
        b"SIZE=99999999999",
        b"MAIL FROM:<" + SENDER.encode() + b">",
        b"MAIL FROM:<>",
        b"MAIL FROM:<x@gmail.com>",
        b"RCPT TO:<" + BETA_RECIPIENT.encode() + b">",
        b"RCPT TO:<" + RECIPIENT.encode() + b">",
        b"NOTIFY=SUCCESS",
        b"ORCPT=rfc822;a+40b",
        b"DATA",
        b"QUIT",
    ]
)
PAYLOAD = st.lists(st.one_of(st.binary(max_size=300), TOKENS), max_size=40).map(b"".join)
# Whatever state the payload left: end a DATA, then leave (AUTH LOGIN may eat two lines).
TRAILER = b"\r\n.\r\nQUIT\r\nQUIT\r\nQUIT\r\n"


async def test_random_bytes_before_starttls(trust_space: LocalTrustSpace) -> None:
    a = await _alpha(trust_space)
    b = trust_space["beta.mssante.fr"].operator
    assert a.submission and b and b.inbound
    ports = [a.submission.port, b.inbound.port]

    @FUZZ
    @given(payload=PAYLOAD, which=st.sampled_from([0, 1]))
    def fuzz(payload: bytes, which: int) -> None:
        with greet(ports[which]) as wire:
            wire.send(payload)
            wire.send(TRAILER)
            _check_lines(wire.read_to_end())
        assert_alive(ports[which])

    await asyncio.to_thread(fuzz)
    assert _stored(a) == 0 and _stored(a, SENDER) == 0


async def test_random_bytes_after_starttls(trust_space: LocalTrustSpace) -> None:
    """In TLS, on submission (with or without AUTH) and on inbound with alpha's
    certificate; the payload may start inside DATA. Every stored message is one that was
    answered `250`: nothing partial is ever kept."""
    a = await _alpha(trust_space)
    b = trust_space["beta.mssante.fr"].operator
    assert a.submission and b and b.inbound
    await _seed(b, (BETA_RECIPIENT, "10000000025", "Dubois"))
    tls = trust_space["alpha.mssante.fr"].config.tls
    operator_ctx = client_context(trust_space.ca_file, tls.cert_file, tls.key_file)
    plain_ctx = client_context(trust_space.ca_file)
    auth = b"AUTH PLAIN " + base64.b64encode(f"\0{SENDER}\0{PASSWORD}".encode()) + b"\r\n"
    targets = [
        (a, a.submission.port, plain_ctx, RECIPIENT, b""),
        (a, a.submission.port, plain_ctx, RECIPIENT, auth),
        (b, b.inbound.port, operator_ctx, BETA_RECIPIENT, b""),
    ]

    @FUZZ
    @given(payload=PAYLOAD, which=st.sampled_from([0, 1, 2]), in_data=st.booleans())
    def fuzz(payload: bytes, which: int, in_data: bool) -> None:
        operator, port, ctx, recipient, prefix = targets[which]
        if in_data:
            prefix += f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()
        before = _stored(operator, recipient)
        with open_tls(port, ctx, helo="mx.alpha.mssante.fr") as wire:
            wire.send(prefix + payload)
            wire.send(TRAILER)
            lines = wire.read_to_end()
        _check_lines(lines)
        accepted = sum(1 for line in lines if line.startswith(b"250 2.0.0 Message accepte"))
        assert _stored(operator, recipient) - before == accepted
        assert_alive(port)

    await asyncio.to_thread(fuzz)


# -- command lines -------------------------------------------------------------------------


async def test_overlong_command_line(trust_space: LocalTrustSpace) -> None:
    a = await _alpha(trust_space)
    assert a.submission
    port = a.submission.port

    def run() -> None:
        with greet(port) as wire:
            reply = wire.cmd(b"EHLO " + b"a" * 100_000)
            assert reply.lines == [b"500 5.5.6 Ligne trop longue / Line too long"]
            wire.expect("EHLO client.test", 250)  # the session goes on
        with _submission(a, trust_space) as wire:
            wire.expect(f"MAIL FROM:<{SENDER}>", 250)
            assert wire.cmd(b"RCPT TO:<" + b"x" * 100_000 + b"@alpha.mssante.fr>").code == 500
            wire.expect(f"RCPT TO:<{RECIPIENT}>", 250)  # the transaction is still open
            wire.expect("DATA", 354)
            wire.send(_message("after long line") + b".\r\n")
            assert wire.reply().code == 250
            wire.expect("QUIT", 221)
        assert _stored(a) == 1
        assert_alive(port)

    await asyncio.to_thread(run)


async def test_bad_line_endings_and_non_ascii(trust_space: LocalTrustSpace) -> None:
    a = await _alpha(trust_space)
    assert a.submission
    port = a.submission.port

    def run() -> None:
        with greet(port) as wire:
            wire.send(b"NOOP\n")  # bare LF
            assert wire.reply().lines[0].startswith(b"500 5.5.2 ")
            wire.send(b"NO\rOP\r\n")  # bare CR
            assert wire.reply().lines[0].startswith(b"500 5.5.2 ")
            wire.send(b"EHLO x\r\r\n")
            assert wire.reply().lines[0].startswith(b"500 5.5.2 ")
            reply = wire.cmd("NÖOP".encode())
            assert reply.lines == [b"500 5.5.2 Commande non ASCII / Command must be ASCII"]
            assert wire.cmd(b"EHLO \xff\xfe").lines[0].startswith(b"500 5.5.2 ")
            assert wire.cmd(b"NOOP\x00").code == 502
            assert wire.cmd(b"").code == 502
            wire.expect("NOOP", 250)
            wire.expect("QUIT", 221)
        with _submission(a, trust_space) as wire:
            assert wire.cmd("MAIL FROM:<cämille@alpha.mssante.fr>").code == 553
            assert wire.cmd(b"MAIL FROM:<\xff@alpha.mssante.fr>").code == 500
            wire.expect(f"MAIL FROM:<{SENDER}>", 250)
        assert_alive(port)

    await asyncio.to_thread(run)


async def test_too_many_errors_closes(trust_space: LocalTrustSpace) -> None:
    a = await _alpha(trust_space)
    assert a.submission
    port = a.submission.port

    def run() -> None:
        with greet(port) as wire:
            wire.send(b"".join(b"BOGUS %d\r\n" % i for i in range(11)))
            lines = wire.read_to_end()
        assert lines[:10] == [b"502 5.5.1 Commande inconnue / Command not recognized"] * 10
        assert lines[10:] == [
            b"421 4.7.0 Trop d'erreurs, connexion fermee / Too many errors, closing"
        ]
        assert_alive(port)

    await asyncio.to_thread(run)


# -- DATA: sizes ---------------------------------------------------------------------------


async def test_ten_megabyte_header_refused(trust_space: LocalTrustSpace) -> None:
    a = await _alpha(trust_space)

    def run() -> None:
        # One header field folded over ~140 000 lines: 10 MB without a blank line.
        fold = b" " + b"h" * 70 + b"\r\n"
        big = b"Subject: big header\r\nX-Big: start\r\n" + fold * (10 * 1024 * 1024 // len(fold))
        with _submission(a, trust_space) as wire:
            _transaction(wire, big + b"\r\nbody\r\n.\r\n")
            reply = wire.reply()
            assert reply.lines == [
                b"552 5.3.4 En-tetes trop volumineux / Message header section too big"
            ]
            # The session is in sync: a normal message goes through on the same connection.
            _transaction(wire, _message("after big header") + b".\r\n")
            assert wire.reply().code == 250
            wire.expect("QUIT", 221)
        stored = a.services.store.list(RECIPIENT)
        assert len(stored) == 1
        assert b"X-Big" not in a.services.store.read(stored[0])
        assert a.submission
        assert_alive(a.submission.port)

    await asyncio.to_thread(run)


async def test_message_over_size_limit(limited_space: LocalTrustSpace) -> None:
    a = await _alpha(limited_space)

    def run() -> None:
        with _submission(a, limited_space) as wire:
            ehlo = wire.cmd("EHLO client.test")
            assert f"250-SIZE {SMALL_SIZE}".encode() in ehlo
            too_big = f"552 5.3.4 Message trop volumineux (maximum {SMALL_SIZE} octets)"
            # Announced with SIZE (RFC 1870 §6.1): refused at MAIL.
            reply = wire.cmd(f"MAIL FROM:<{SENDER}> SIZE={SMALL_SIZE + 1}")
            assert reply.lines[0].startswith(too_big.encode())
            # Not announced: read to the end, then refused.
            body = "x" * 76 + "\n"
            _transaction(wire, _message("too big", body * 2000) + b".\r\n")
            assert wire.reply().lines[0].startswith(too_big.encode())
            # Just under the limit still passes, on the same session.
            _transaction(wire, _message("fits", body * 500) + b".\r\n")
            assert wire.reply().code == 250
            wire.expect("QUIT", 221)
        stored = a.services.store.list(RECIPIENT)
        assert len(stored) == 1
        assert b"Subject: fits" in a.services.store.read(stored[0])
        assert a.submission
        assert_alive(a.submission.port)

    await asyncio.to_thread(run)


PATIENT = "279035121518989@patient.mssante.fr"
PATIENT_LIMIT = 8 * 1024


@pytest.fixture
async def patient_space(
    tmp_path: Path, database_url: Callable[[], str]
) -> AsyncIterator[LocalTrustSpace]:
    """One operator with an 8 KiB limit towards patients (R29) and the patient domain listed."""
    alpha = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
    space = LocalTrustSpace.create(
        tmp_path / "patient",
        [alpha],
        database_urls=[database_url()],
        extra_trust_entries=[TrustListEntry("patient.mssante.fr", "MES", alpha.dn().rfc4514())],
        extra_config=f"\n[api]\npatient_max_bytes = {PATIENT_LIMIT}\n",
    )
    await space.start()
    try:
        yield space
    finally:
        await space.stop()


async def test_patient_size_limit_at_submission(patient_space: LocalTrustSpace) -> None:
    """R29: over 25 Mo (here 8 KiB) towards a patient is refused at submission, with the
    reason, never relayed then bounced; other recipients keep the general limit."""
    a = await _alpha(patient_space)
    too_big = b"552 5.3.4 Message trop volumineux pour une messagerie patient"
    body = "x" * 76 + "\n"

    def run() -> None:
        with _submission(a, patient_space) as wire:
            wire.cmd("EHLO client.test")
            # Announced with SIZE: the patient recipient is refused at RCPT, others pass.
            wire.expect(f"MAIL FROM:<{SENDER}> SIZE={PATIENT_LIMIT + 1}", 250)
            assert wire.cmd(f"RCPT TO:<{PATIENT}>").lines[0].startswith(too_big)
            wire.expect(f"RCPT TO:<{RECIPIENT}>", 250)
            wire.expect("RSET", 250)
            # Not announced: read to the end, then refused whole (nothing queued).
            wire.expect(f"MAIL FROM:<{SENDER}>", 250)
            wire.expect(f"RCPT TO:<{PATIENT}>", 250)
            wire.expect(f"RCPT TO:<{RECIPIENT}>", 250)
            wire.expect("DATA", 354)
            data = make_message(SENDER, [PATIENT, RECIPIENT], subject="gros", body=body * 200)
            wire.send(data + b".\r\n")
            assert wire.reply().lines[0].startswith(too_big)
            # Under the limit: accepted.
            wire.expect(f"MAIL FROM:<{SENDER}>", 250)
            wire.expect(f"RCPT TO:<{PATIENT}>", 250)
            wire.expect("DATA", 354)
            wire.send(make_message(SENDER, [PATIENT], subject="petit", body=body * 20) + b".\r\n")
            assert wire.reply().code == 250
            wire.expect("QUIT", 221)
        assert _stored(a) == 0  # the refused message reached nobody

    await asyncio.to_thread(run)


# -- DATA: stalls and cuts -----------------------------------------------------------------


async def test_stalled_clients_time_out(limited_space: LocalTrustSpace) -> None:
    """Clients that stall (after the greeting, mid-command, mid-DATA) get `421 4.4.2` after
    the timeout and are closed; nothing is stored; another client sends meanwhile."""
    a = await _alpha(limited_space)
    assert a.submission
    port = a.submission.port
    in_data = threading.Event()
    timings: dict[str, float] = {}

    def stall(name: str, wire: Wire) -> list[bytes]:
        start = time.monotonic()
        lines = wire.read_to_end()
        timings[name] = time.monotonic() - start
        return lines

    def mid_data() -> list[bytes]:
        with _submission(a, limited_space) as wire:
            _transaction(wire, b"Subject: stalled\r\n\r\npartial body\r\n.")
            in_data.set()
            return stall("data", wire)

    def mid_command() -> list[bytes]:
        with greet(port) as wire:
            wire.send(b"EHLO half")
            return stall("command", wire)

    def silent() -> list[bytes]:
        with greet(port) as wire:
            return stall("silent", wire)

    def in_handshake() -> list[bytes]:
        with greet(port) as wire:
            wire.expect("EHLO client.test", 250)
            wire.expect("STARTTLS", 220)  # and no ClientHello
            start = time.monotonic()
            _wait_closed(wire.sock)
            timings["handshake"] = time.monotonic() - start
            return []

    def other() -> None:
        assert in_data.wait(10)
        with _submission(a, limited_space) as wire:
            _transaction(wire, _message("meanwhile") + b".\r\n")
            assert wire.reply().code == 250
            wire.expect("QUIT", 221)

    results = await asyncio.gather(
        asyncio.to_thread(mid_data),
        asyncio.to_thread(mid_command),
        asyncio.to_thread(silent),
        asyncio.to_thread(in_handshake),
        asyncio.to_thread(other),
    )
    timeout_line = b"421 4.4.2 Delai depasse, connexion fermee / Timeout, closing connection"
    for lines in results[:3]:
        assert lines == [timeout_line]
    for name, elapsed in timings.items():
        assert SHORT_TIMEOUT - 0.5 < elapsed < SHORT_TIMEOUT + 8, (name, elapsed)
    stored = a.services.store.list(RECIPIENT)
    assert len(stored) == 1
    assert b"Subject: meanwhile" in a.services.store.read(stored[0])
    await asyncio.to_thread(assert_alive, port)


CUT_TAILS = [b"partial", b"partial\r\n", b"partial\r\n.", b"partial\r\n.\r", b"partial\n.\n"]


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_connection_cut_during_data_stores_nothing(
    trust_space: LocalTrustSpace, reset: bool
) -> None:
    a = await _alpha(trust_space)

    def run() -> None:
        for tail in CUT_TAILS:
            wire = _submission(a, trust_space)
            _transaction(wire, b"Subject: cut\r\n\r\n" + tail)
            if reset:  # RST instead of FIN
                linger = struct.pack("ii", 1, 0)
                wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            wire.close()
        # A message sent afterwards is the only one stored.
        with _submission(a, trust_space) as other:
            _transaction(other, _message("after the cut") + b".\r\n")
            assert other.reply().code == 250
            other.expect("QUIT", 221)
        stored = a.services.store.list(RECIPIENT)
        assert len(stored) == 1
        assert b"Subject: after the cut" in a.services.store.read(stored[0])
        assert a.submission
        assert_alive(a.submission.port)

    await asyncio.to_thread(run)


# -- the TLS layer ------------------------------------------------------------------------


def _wait_closed(sock: socket.socket, timeout: float = 15) -> None:
    """Read (and ignore) until the server closes; fail if it keeps the connection."""
    raw = socket.socket(fileno=os.dup(sock.fileno()))
    raw.settimeout(timeout)
    try:
        while raw.recv(65536):
            pass
    except ConnectionError:
        pass
    except TimeoutError:
        raise AssertionError("the server kept the connection open") from None
    finally:
        raw.close()


TLS_GARBAGE = [
    b"QUIT\r\n",
    bytes(range(256)),
    b"\x16\x03\x01\xff\xff" + b"\x00" * 100,  # a handshake record that claims 64 KiB
    b"\x17\x03\x03\x00\x20" + b"\xaa" * 32,  # application data that does not decrypt
    b"\x15\x03\x03\x00\x02\x02\x28",  # a fatal alert
]


async def test_garbage_at_the_tls_layer(trust_space: LocalTrustSpace) -> None:
    """Bytes that are not TLS, instead of the handshake or inside the session: the
    connection is dropped and the listener stays up."""
    a = await _alpha(trust_space)
    assert a.submission
    port = a.submission.port
    ctx = client_context(trust_space.ca_file)

    def send_and_half_close(sock: socket.socket, junk: bytes) -> None:
        raw = socket.socket(fileno=os.dup(sock.fileno()))  # under the TLS layer
        raw.sendall(junk)
        raw.shutdown(socket.SHUT_WR)
        raw.close()

    def run() -> None:
        for junk in TLS_GARBAGE:
            with greet(port) as wire:
                wire.expect("EHLO client.test", 250)
                wire.expect("STARTTLS", 220)
                send_and_half_close(wire.sock, junk)
                _wait_closed(wire.sock)
            with open_tls(port, ctx) as wire:
                send_and_half_close(wire.sock, junk)
                _wait_closed(wire.sock)
            assert_alive(port)

    await asyncio.to_thread(run)


# -- pipelining and STARTTLS injection ---------------------------------------------------


async def test_pipelining(trust_space: LocalTrustSpace) -> None:
    a = await _alpha(trust_space)
    first, second, third = (_message(f"pipelined {i}") for i in (1, 2, 3))

    def run() -> None:
        with _submission(a, trust_space) as wire:
            # RFC 2920 §3.1: MAIL, RCPT (one of them refused) and DATA in one write.
            wire.send(
                f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\n"
                f"RCPT TO:<someone@gmail.com>\r\nDATA\r\n".encode()
            )
            assert [wire.reply().code for _ in range(4)] == [250, 250, 550, 354]
            # The end of one message and the next transaction in one write.
            wire.send(
                first + f".\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode()
            )
            assert [wire.reply().code for _ in range(4)] == [250, 250, 250, 354]
            wire.send(second + b".\r\nRSET\r\nNOOP\r\n")
            assert [wire.reply().code for _ in range(3)] == [250, 250, 250]
            # Everything, message included, in one write (more than the client may do).
            wire.send(
                f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n".encode()
                + third
                + b".\r\nQUIT\r\n"
            )
            lines = wire.read_to_end()
        assert [line[:3] for line in lines] == [b"250", b"250", b"354", b"250", b"221"]
        stored = a.services.store.list(RECIPIENT)
        assert len(stored) == 3
        for message, original in zip(
            (a.services.store.read(m) for m in stored), (first, second, third), strict=True
        ):
            subject = original.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
            assert b"Subject: " + subject + b"\r\n" in message
            assert message.endswith(original.split(b"\r\n\r\n", 1)[1])
        assert a.submission
        assert_alive(a.submission.port)

    await asyncio.to_thread(run)


async def test_starttls_command_injection(trust_space: LocalTrustSpace) -> None:
    """RFC 3207 §4.2: commands sent in clear with STARTTLS are discarded, not run in TLS."""
    a = await _alpha(trust_space)
    assert a.submission
    port = a.submission.port
    token = base64.b64encode(f"\0{SENDER}\0{PASSWORD}".encode())

    def run() -> None:
        with greet(port) as wire:
            wire.expect("EHLO client.test", 250)
            wire.send(b"STARTTLS\r\nRSET\r\nEHLO evil\r\nAUTH PLAIN " + token + b"\r\n")
            assert wire.reply().code == 220
            assert not wire._buf
            wire.sock = client_context(trust_space.ca_file).wrap_socket(
                wire.sock, server_hostname="127.0.0.1"
            )
            # The first answer in TLS is to our HELP, not to the injected RSET or EHLO.
            assert wire.cmd("HELP").code == 214
            # The injected EHLO and AUTH were not kept either.
            assert wire.cmd(f"MAIL FROM:<{SENDER}>").lines[0].startswith(b"503 5.5.1 ")
            reply = wire.expect("EHLO client.test", 250)
            assert b"250-AUTH PLAIN LOGIN" in reply  # not authenticated
            assert wire.cmd(f"MAIL FROM:<{SENDER}>").code == 530
            wire.expect("QUIT", 221)
        assert_alive(port)

    await asyncio.to_thread(run)
