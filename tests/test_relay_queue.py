"""The outbound queue and the relay worker, against real peers (R6, R23, R24).

Alpha's relay is pointed at beta, at a closed port, or at small aiosmtpd servers that do not
behave like an operator of the trust space; retries are made short with the `relay`
settings of `LocalTrustSpace.create`.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as AiosmtpdServer
from sqlalchemy import select

from mssante.domain.errors import NotFound
from mssante.formats.dsn import ParsedDSN, parse_dsn
from mssante.pki import DemoCA, DistinguishedName
from mssante.runtime import Operator
from mssante.services import traces
from mssante.storage.schema import deliveries, envelopes
from mssante.testing.clients import make_message, seed_professional_mailbox, wait_for
from mssante.testing.trust_space import (
    LocalTrustSpace,
    OperatorSpec,
    TrustListEntry,
    build_trust_list_xml,
)

PASSWORD = "correct horse battery staple"
SENDER = "camille.martin@alpha.mssante.fr"
RECIPIENT = "lea.dubois@beta.mssante.fr"
ALPHA = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
BETA = OperatorSpec("beta.mssante.fr", "Operateur Beta", "1130000037", "Bouches-du-Rhone (13)")
FAST = {"retry_initial": 1, "retry_max": 1, "poll_interval": 0.1}

SpaceFactory = Callable[..., Awaitable[LocalTrustSpace]]


@pytest.fixture
async def make_space(
    tmp_path: Path, database_url: Callable[[], str]
) -> AsyncIterator[SpaceFactory]:
    """Start alpha and beta with the given `[relay]` settings, seeded with one BAL each."""
    spaces: list[LocalTrustSpace] = []

    async def make(**relay: int | float) -> LocalTrustSpace:
        space = LocalTrustSpace.create(
            tmp_path / f"space{len(spaces)}",
            [ALPHA, BETA],
            database_urls=[database_url(), database_url()],
            relay={**FAST, **relay},
        )
        spaces.append(space)
        await space.start()
        a, b = _ops(space)
        await asyncio.to_thread(
            seed_professional_mailbox, a.services.mailboxes, SENDER, "10000000017", PASSWORD
        )
        await asyncio.to_thread(
            seed_professional_mailbox,
            b.services.mailboxes,
            RECIPIENT,
            "10000000025",
            PASSWORD,
            family_name="Dubois",
            given_name="Léa",
        )
        return space

    yield make
    for space in spaces:
        await space.stop()


def _ops(space: LocalTrustSpace) -> tuple[Operator, Operator]:
    a = space["alpha.mssante.fr"].operator
    b = space["beta.mssante.fr"].operator
    assert a is not None and b is not None
    return a, b


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _beta_route(space: LocalTrustSpace) -> str:
    _, b = _ops(space)
    assert b.inbound is not None
    return f"127.0.0.1:{b.inbound.port}"


def _set_route(space: LocalTrustSpace, target: str) -> None:
    a, _ = _ops(space)
    assert a.relay is not None
    a.relay.routes["beta.mssante.fr"] = target


async def _submit(
    space: LocalTrustSpace,
    recipients: Sequence[tuple[str, Sequence[str]]],
    *,
    body: str = "Bonjour,\n\nMessage de test.\n",
    mail_options: Sequence[str] = (),
) -> None:
    """Submit at alpha as SENDER, with RCPT options per recipient."""
    a, _ = _ops(space)
    assert a.submission is not None
    port = a.submission.port
    data = make_message(SENDER, [r for r, _ in recipients], body=body)

    def run() -> None:
        context = ssl.create_default_context(cafile=str(space.ca_file))
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
            client.starttls(context=context)
            client.login(SENDER, PASSWORD)
            client.ehlo_or_helo_if_needed()
            code, text = client.mail(SENDER, list(mail_options))
            assert code == 250, text
            for rcpt, options in recipients:
                code, text = client.rcpt(rcpt, list(options))
                assert code == 250, text
            code, text = client.data(data)
            assert code == 250, text

    await asyncio.to_thread(run)


def _rows(operator: Operator, recipient: str) -> list[Any]:
    with operator.services.db.read() as conn:
        return list(
            conn.execute(select(deliveries).where(deliveries.c.recipient == recipient)).all()
        )


def _one_row(operator: Operator, recipient: str) -> Any:
    rows = _rows(operator, recipient)
    assert len(rows) == 1, rows
    return rows[0]


def _events(operator: Operator, action: str, mailbox: str | None = None) -> list[Any]:
    with operator.services.db.read() as conn:
        return traces.list_events(conn, action=action, mailbox=mailbox, limit=1000)


def _inbox(operator: Operator, address: str) -> list[bytes]:
    try:
        stored = operator.services.store.list(address)
    except NotFound:
        return []
    return [operator.services.store.read(m) for m in stored]


def _reports(operator: Operator, address: str) -> list[ParsedDSN]:
    return [parse_dsn(m) for m in _inbox(operator, address)]


async def test_peer_down_then_back_delivers_exactly_once(make_space: SpaceFactory) -> None:
    space = await make_space()
    a, b = _ops(space)
    _set_route(space, f"127.0.0.1:{_closed_port()}")
    await _submit(space, [(RECIPIENT, ())])

    await wait_for(lambda: _one_row(a, RECIPIENT).attempts >= 2, timeout=10)
    row = _one_row(a, RECIPIENT)
    assert row.status == "queued"
    assert "connection" in (row.last_error or "")
    deferred = _events(a, "delivery.deferred", RECIPIENT)
    assert len(deferred) >= 2 and all(e.outcome == "failed" for e in deferred)
    assert _inbox(b, RECIPIENT) == []

    _set_route(space, _beta_route(space))
    await wait_for(lambda: _inbox(b, RECIPIENT), timeout=10)
    await wait_for(lambda: _one_row(a, RECIPIENT).status == "relayed", timeout=5)
    # A few more polling rounds: nothing is sent twice.
    await asyncio.sleep(1.5)
    assert len(_inbox(b, RECIPIENT)) == 1
    assert len(_events(a, "delivery.relayed", RECIPIENT)) == 1
    assert a.services.queue.pending() == 0
    # Default NOTIFY is FAILURE,DELAY (RFC 3461 §4.1): no report at all here.
    assert _inbox(a, SENDER) == []


async def test_permanent_failure_at_the_peer_bounces_to_the_sender(
    make_space: SpaceFactory,
) -> None:
    space = await make_space()
    a, _ = _ops(space)
    ghost = "personne@beta.mssante.fr"  # accepted at alpha (listed domain), unknown at beta
    await _submit(space, [(ghost, ())], mail_options=["ENVID=env-bounce"])

    reports = await wait_for(lambda: _reports(a, SENDER), timeout=10)
    assert isinstance(reports, list) and len(reports) == 1
    report = reports[0]
    assert report.original_envelope_id == "env-bounce"
    block = report.recipients[0]
    assert block["action"] == "failed"
    assert block["status"] == "5.1.1"
    assert "rfc822;" in block["final-recipient"].replace(" ", "").lower()
    assert ghost in block["final-recipient"]
    assert "550" in block["diagnostic-code"]
    row = _one_row(a, ghost)
    assert row.status == "failed" and row.attempts == 0
    bounced = _events(a, "delivery.bounced", ghost)
    assert len(bounced) == 1 and bounced[0].outcome == "failed"


async def test_expiry_gives_a_failure_report_with_4_4_7(make_space: SpaceFactory) -> None:
    space = await make_space(queue_lifetime=2)
    a, b = _ops(space)
    _set_route(space, f"127.0.0.1:{_closed_port()}")
    await _submit(space, [(RECIPIENT, ())])

    reports = await wait_for(lambda: _reports(a, SENDER), timeout=10)
    assert isinstance(reports, list) and len(reports) == 1
    block = reports[0].recipients[0]
    assert block["action"] == "failed"
    assert block["status"] == "4.4.7"
    row = _one_row(a, RECIPIENT)
    assert row.status == "failed"
    assert row.attempts >= 1
    (bounced,) = _events(a, "delivery.bounced", RECIPIENT)
    assert (bounced.detail or "").startswith("expired")
    # The route comes back: an expired message is not sent any more.
    _set_route(space, _beta_route(space))
    await asyncio.sleep(1.0)
    assert _inbox(b, RECIPIENT) == []
    assert a.services.queue.pending() == 0


async def test_one_delayed_report_then_success(make_space: SpaceFactory) -> None:
    space = await make_space(delay_warning=1)
    a, b = _ops(space)
    _set_route(space, f"127.0.0.1:{_closed_port()}")
    await _submit(space, [(RECIPIENT, ("NOTIFY=SUCCESS,DELAY",))])

    await wait_for(lambda: _one_row(a, RECIPIENT).delay_notified, timeout=10)
    attempts = _one_row(a, RECIPIENT).attempts
    # Two more failed attempts after the warning: still one delayed report.
    await wait_for(lambda: _one_row(a, RECIPIENT).attempts >= attempts + 2, timeout=10)
    reports = _reports(a, SENDER)
    assert [r.recipients[0]["action"] for r in reports] == ["delayed"]
    delayed = reports[0].recipients[0]
    assert delayed["status"].startswith("4.")
    assert "will-retry-until" in delayed

    _set_route(space, _beta_route(space))
    await wait_for(lambda: _inbox(b, RECIPIENT), timeout=10)
    # NOTIFY travelled with the message: beta reports the delivery back to alpha.
    await wait_for(lambda: len(_inbox(a, SENDER)) >= 2, timeout=10)
    await asyncio.sleep(0.5)
    actions = sorted(r.recipients[0]["action"] for r in _reports(a, SENDER))
    assert actions == ["delayed", "delivered"]
    assert len(_inbox(b, RECIPIENT)) == 1


class _Recorder:
    """An aiosmtpd handler that records every MAIL, RCPT and DATA it receives."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.commands.append(f"MAIL {address}")
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.commands.append(f"RCPT {address}")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.commands.append("DATA")
        return "250 OK"


def _foreign_server_context(directory: Path) -> ssl.SSLContext:
    """A server certificate for beta's MX name, from a CA outside the trust space."""
    rogue = DemoCA.create("rogue CA")
    cert = rogue.issue(
        DistinguishedName("mx.beta.mssante.fr", "1130000037", "Operateur Beta"),
        dns_names=("mx.beta.mssante.fr", "localhost"),
        ip_addresses=("127.0.0.1",),
    )
    cert_file, key_file = directory / "rogue.pem", directory / "rogue.key"
    cert.write(cert_file, key_file, chain=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


@pytest.mark.parametrize("peer", ["no-starttls", "foreign-ca"])
async def test_untrusted_peer_never_receives_the_message(
    make_space: SpaceFactory, tmp_path: Path, peer: str
) -> None:
    space = await make_space(delay_warning=1)
    a, _ = _ops(space)
    recorder = _Recorder()
    tls_context = _foreign_server_context(tmp_path) if peer == "foreign-ca" else None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: AiosmtpdServer(
            recorder, hostname="mx.beta.mssante.fr", tls_context=tls_context, loop=loop
        ),
        "127.0.0.1",
        0,
    )
    try:
        _set_route(space, f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await _submit(space, [(RECIPIENT, ())])
        # Default NOTIFY includes DELAY: the delayed report carries the status.
        reports = await wait_for(lambda: _reports(a, SENDER), timeout=10)
        assert isinstance(reports, list) and len(reports) == 1
        block = reports[0].recipients[0]
        assert block["action"] == "delayed"
        assert block["status"] == "4.7.5"
        row = _one_row(a, RECIPIENT)
        assert row.status == "queued" and row.attempts >= 2
        expected = "does not offer STARTTLS" if peer == "no-starttls" else "TLS with"
        assert expected in (row.last_error or ""), row.last_error
        if peer == "foreign-ca":
            assert "certificate verify failed" in (row.last_error or "").lower()
        assert recorder.commands == []  # never a MAIL, let alone the message
    finally:
        server.close()
        await server.wait_closed()


async def test_notify_never_gets_no_report(make_space: SpaceFactory) -> None:
    space = await make_space()
    a, _ = _ops(space)
    silent, loud = "personne@beta.mssante.fr", "inconnu@beta.mssante.fr"
    await _submit(space, [(silent, ("NOTIFY=NEVER",)), (loud, ())])

    await wait_for(
        lambda: all(r.status == "failed" for r in _rows(a, silent) + _rows(a, loud)),
        timeout=10,
    )
    # Both failed in the same transaction; the one report names only `loud`.
    reports = _reports(a, SENDER)
    assert len(reports) == 1
    assert [loud in b["final-recipient"] for b in reports[0].recipients] == [True]
    (sent,) = _events(a, "dsn.sent", SENDER)
    assert silent not in (sent.detail or "")


async def test_a_failing_null_sender_message_is_not_bounced(make_space: SpaceFactory) -> None:
    space = await make_space()
    a, _ = _ops(space)
    assert a.inbound is not None
    ghost = "fantome@beta.mssante.fr"  # no such BAL at beta
    # Beta's MTA (its certificate) delivers a message from `ghost` to alpha asking for a
    # success report; alpha's report (null sender) then fails at beta with 550 5.1.1.
    tls = space["beta.mssante.fr"].config.tls
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    data = make_message(ghost, [SENDER])
    port = a.inbound.port

    def deliver() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as client:
            client.starttls(context=ctx)
            client.ehlo("mx.beta.mssante.fr")
            refused = client.sendmail(ghost, [SENDER], data, rcpt_options=["NOTIFY=SUCCESS"])
            assert refused == {}

    await asyncio.to_thread(deliver)
    await wait_for(lambda: [r for r in _rows(a, ghost) if r.status == "failed"], timeout=10)
    (row,) = _rows(a, ghost)
    assert "550" in (row.last_error or "")
    assert len(_events(a, "delivery.bounced", ghost)) == 1
    # One report only (the success report to ghost); nothing reports on its failure.
    await asyncio.sleep(0.5)
    assert len(_events(a, "dsn.sent")) == 1
    with a.services.db.read() as conn:
        origins = [r.origin for r in conn.execute(select(envelopes.c.origin)).all()]
    assert sorted(origins) == ["dsn", "inbound"]
    assert a.services.queue.pending() == 0
    assert len(_inbox(a, SENDER)) == 1


async def test_recipient_domain_case_does_not_matter(make_space: SpaceFactory) -> None:
    """RFC 5321 §2.4: domains are case-insensitive; the route table is lower case."""
    space = await make_space()
    _, b = _ops(space)
    await _submit(space, [("Lea.Dubois@BETA.MSSante.fr", ())])
    await wait_for(lambda: _inbox(b, RECIPIENT), timeout=10)


async def test_a_domain_removed_from_the_white_list_fails_at_once(
    make_space: SpaceFactory,
) -> None:
    """A queued message for a domain that left the trust space is not sent, and it is a
    permanent failure (5.7.1): no waiting for the queue lifetime (R4)."""
    space = await make_space()
    a, b = _ops(space)
    _set_route(space, f"127.0.0.1:{_closed_port()}")
    await _submit(space, [(RECIPIENT, ())])
    await wait_for(lambda: _one_row(a, RECIPIENT).attempts >= 1, timeout=10)

    alpha = space["alpha.mssante.fr"].spec
    xml = build_trust_list_xml(
        [TrustListEntry(alpha.domain, alpha.organization, alpha.dn().rfc4514())]
    )
    await asyncio.to_thread(a.services.trust.load, xml)
    _set_route(space, _beta_route(space))
    reports = await wait_for(lambda: _reports(a, SENDER), timeout=10)
    assert isinstance(reports, list) and len(reports) == 1
    block = reports[0].recipients[0]
    assert (block["action"], block["status"]) == ("failed", "5.7.1")
    assert _one_row(a, RECIPIENT).status == "failed"
    assert _inbox(b, RECIPIENT) == []
