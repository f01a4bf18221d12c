"""SMTP smuggling over a real socket (CVE-2023-51764/51765/51766 family, SEC Consult 2023).

A sending MTA that ends DATA only on `<CRLF>.<CRLF>` passes the message below as one; a
receiver that also accepts `<LF>.<LF>` or `<CR>.<CR>` would see two, the second one with a
forged envelope. RFC 5321 §2.3.8 forbids bare CR and LF; our reader refuses them, so the
whole DATA is either refused with `554 5.6.11` or stored as ONE message, and the smuggled
`MAIL FROM`/`RCPT TO`/`DATA` are never answered. Checked on both roles (inbound from
another operator with its certificate, submission after AUTH), with the sequence sent in
one write and byte by byte, and by reading the recipient's store afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from mssante.runtime import Operator
from mssante.testing.clients import seed_professional_mailbox
from mssante.testing.trust_space import LocalTrustSpace
from smtp_wire import Wire, assert_alive, client_context, open_submission, open_tls

PASSWORD = "mot de passe de test assez long"
ALPHA_SENDER = "camille.martin@alpha.mssante.fr"
ALPHA_RECIPIENT = "claire.petit@alpha.mssante.fr"
BETA_RECIPIENT = "lea.dubois@beta.mssante.fr"

# The payloads of the SMTP smuggling research and of Postfix's smtpd_forbid_bare_newline
# tests: each stands where a receiver might see the end of DATA.
SEQUENCES = [
    b"\n.\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r\n.\r",
    b"\r.\r\n",
    b"\n.\r",
    b"\r\n.\r\r\n",
    b"\r\n.\n\r\n",
    b"\n\n.\n\n",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
    b"\r\n \r\n.\n",
]


@pytest.fixture(autouse=True)
def no_internal_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Smuggling attempts are answered by the protocol, never by an exception's `451`."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@dataclass
class Target:
    operator: Operator
    port: int
    sender: str
    recipient: str
    connect: Callable[[], Wire]


async def _targets(space: LocalTrustSpace) -> dict[str, Target]:
    a = space["alpha.mssante.fr"].operator
    b = space["beta.mssante.fr"].operator
    assert a and b and a.submission and b.inbound
    for operator, address, rpps, family in (
        (a, ALPHA_SENDER, "10000000017", "Martin"),
        (a, ALPHA_RECIPIENT, "10000000025", "Petit"),
        (b, BETA_RECIPIENT, "10000000025", "Dubois"),
    ):
        await asyncio.to_thread(
            seed_professional_mailbox,
            operator.services.mailboxes,
            address,
            rpps,
            PASSWORD,
            family_name=family,
        )
    tls = space["alpha.mssante.fr"].config.tls
    alpha_ctx = client_context(space.ca_file, tls.cert_file, tls.key_file)
    sub_port, in_port = a.submission.port, b.inbound.port
    return {
        # Another operator's MTA (alpha's certificate) delivering to beta: the classic case.
        "inbound": Target(
            b,
            in_port,
            ALPHA_SENDER,
            BETA_RECIPIENT,
            lambda: open_tls(in_port, alpha_ctx, helo="mx.alpha.mssante.fr"),
        ),
        "submission": Target(
            a,
            sub_port,
            ALPHA_SENDER,
            ALPHA_RECIPIENT,
            lambda: open_submission(sub_port, space.ca_file, ALPHA_SENDER, PASSWORD),
        ),
    }


def _smuggle(
    wire: Wire, target: Target, tag: str, sequence: bytes, *, bytewise: bool
) -> list[bytes]:
    """One transaction whose DATA hides a second one; returns the replies after 354, up to
    the answer to the HELP sent right after it (the marker: 214)."""
    head = (
        f"From: {target.sender}\r\nTo: {target.recipient}\r\nSubject: legit {tag}\r\n"
        f"Message-ID: <legit.{tag}@alpha.mssante.fr>\r\n\r\nHello"
    ).encode()
    smuggled = (
        f"MAIL FROM:<{target.sender}>\r\nRCPT TO:<{target.recipient}>\r\nDATA\r\n"
        f"From: {target.sender}\r\nTo: {target.recipient}\r\nSubject: SMUGGLED {tag}\r\n"
        f"\r\nsmuggled\r\n"
    ).encode()
    wire.expect(f"MAIL FROM:<{target.sender}>", 250)
    wire.expect(f"RCPT TO:<{target.recipient}>", 250)
    wire.expect("DATA", 354)
    if bytewise:
        # Every byte of the sequence in its own segment: each is a separate read.
        wire.send(head)
        for byte in sequence + smuggled[:4]:
            time.sleep(0.003)
            wire.send(bytes([byte]))
        wire.send(smuggled[4:] + b".\r\nHELP\r\n")
    else:
        wire.send(head + sequence + smuggled + b".\r\nHELP\r\n")
    lines: list[bytes] = []
    while not lines or not lines[-1].startswith(b"214 "):
        lines.append(wire.line())
    return lines


def _check_outcome(
    target: Target, tag: str, sequence: bytes, lines: list[bytes], before: int
) -> None:
    stored = target.operator.services.store.list(target.recipient)
    codes = [line[:3] for line in lines]
    # One answer for the DATA, one for HELP: nothing for the smuggled commands.
    assert codes in ([b"554", b"214"], [b"250", b"214"]), (sequence, lines)
    if codes[0] == b"554":
        assert lines[0].startswith(b"554 5.6.11 "), lines
        assert len(stored) == before, (sequence, "a refused message was stored")
        return
    assert len(stored) == before + 1, (sequence, "accepted but not stored once")
    message = target.operator.services.store.read(stored[-1])
    assert f"Subject: legit {tag}".encode() in message
    assert f"Subject: SMUGGLED {tag}".encode() in message  # inside the one message
    assert message.count(b"MAIL FROM:<") == 1


@pytest.mark.parametrize("role", ["inbound", "submission"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-by-byte"])
async def test_smuggling_sequences(trust_space: LocalTrustSpace, role: str, bytewise: bool) -> None:
    target = (await _targets(trust_space))[role]

    def run() -> None:
        outcomes: dict[bytes, bytes] = {}
        # One session for all the sequences: after each refusal it must be back in sync.
        with target.connect() as wire:
            for i, sequence in enumerate(SEQUENCES):
                before = len(target.operator.services.store.list(target.recipient))
                tag = f"{role}-{int(bytewise)}-{i}"
                lines = _smuggle(wire, target, tag, sequence, bytewise=bytewise)
                _check_outcome(target, tag, sequence, lines, before)
                outcomes[sequence] = lines[0][:3]
            wire.expect("QUIT", 221)
            assert wire.read_to_end() == []
        # Every sequence with a bare CR or LF is refused; a NUL alone is only content.
        for sequence, code in outcomes.items():
            bare = sequence.replace(b"\r\n", b"")
            assert code == (b"554" if b"\r" in bare or b"\n" in bare else b"250"), sequence
        assert_alive(target.port)

    await asyncio.to_thread(run)


@pytest.mark.parametrize("role", ["inbound", "submission"])
async def test_pipelined_smuggling_after_refusal_is_not_answered_twice(
    trust_space: LocalTrustSpace, role: str
) -> None:
    """The refused DATA ends only at the real terminator; the commands the client
    pipelines after it are answered once each, in order (RFC 2920)."""
    target = (await _targets(trust_space))[role]

    def run() -> None:
        with target.connect() as wire:
            wire.send(
                f"MAIL FROM:<{target.sender}>\r\nRCPT TO:<{target.recipient}>\r\nDATA\r\n".encode()
            )
            assert [wire.reply().code for _ in range(3)] == [250, 250, 354]
            wire.send(
                b"Subject: a\r\n\r\nx\n.\nMAIL FROM:<" + target.sender.encode() + b">\n"
                b"RCPT TO:<" + target.recipient.encode() + b">\nDATA\nSubject: b\n\n"
                b"y\r\n.\r\nNOOP\r\nQUIT\r\n"
            )
            lines = wire.read_to_end()
        assert [line[:10] for line in lines] == [b"554 5.6.11", b"250 2.0.0 ", b"221 2.0.0 "]
        assert target.operator.services.store.list(target.recipient) == []
        assert_alive(target.port)

    await asyncio.to_thread(run)


async def test_megabyte_line_cut_before_lf_is_not_a_terminator(
    trust_space: LocalTrustSpace,
) -> None:
    """A line longer than the reader keeps is cut down to its tail; if that tail is `.\\r`
    and the `\\n` comes in the next read, it must not pass for `<CRLF>.<CRLF>`."""
    target = (await _targets(trust_space))["inbound"]
    mb = 1024 * 1024

    def run() -> None:
        with target.connect() as wire:
            wire.expect(f"MAIL FROM:<{target.sender}>", 250)
            wire.expect(f"RCPT TO:<{target.recipient}>", 250)
            wire.expect("DATA", 354)
            wire.send(b"Subject: long\r\n\r\n" + b"a" * (mb - 8))
            time.sleep(0.3)  # the server has read all of it
            wire.send(b"a" * 9 + b".\r")  # the line is now 1 MB + 3: cut to its tail
            time.sleep(0.3)
            wire.send(
                b"\nMAIL FROM:<" + target.sender.encode() + b">\r\n"
                b"RCPT TO:<" + target.recipient.encode() + b">\r\nDATA\r\n"
                b"Subject: SMUGGLED\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n"
            )
            lines = wire.read_to_end()
        assert [line[:10] for line in lines] == [b"554 5.6.11", b"221 2.0.0 "], lines
        assert target.operator.services.store.list(target.recipient) == []
        assert_alive(target.port)

    await asyncio.to_thread(run)
