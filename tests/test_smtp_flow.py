"""End to end: submission at operator alpha, relay over mutual TLS, delivery at beta."""

from __future__ import annotations

import asyncio
import smtplib
import ssl

import pytest

from mssante.formats.dsn import parse_dsn
from mssante.testing.clients import (
    make_message,
    seed_professional_mailbox,
    submit,
    wait_for,
)
from mssante.testing.trust_space import LocalTrustSpace

PASSWORD = "correct horse battery staple"


async def _seed(space: LocalTrustSpace) -> tuple[str, str]:
    a = space["alpha.mssante.fr"].operator
    b = space["beta.mssante.fr"].operator
    assert a and b
    await asyncio.to_thread(
        seed_professional_mailbox,
        a.services.mailboxes,
        "camille.martin@alpha.mssante.fr",
        "10000000017",
        PASSWORD,
    )
    await asyncio.to_thread(
        seed_professional_mailbox,
        b.services.mailboxes,
        "lea.dubois@beta.mssante.fr",
        "10000000025",
        PASSWORD,
        family_name="Dubois",
        given_name="Léa",
    )
    return "camille.martin@alpha.mssante.fr", "lea.dubois@beta.mssante.fr"


async def test_message_crosses_the_trust_space(trust_space: LocalTrustSpace) -> None:
    sender, recipient = await _seed(trust_space)
    a = trust_space["alpha.mssante.fr"].operator
    b = trust_space["beta.mssante.fr"].operator
    assert a and b and a.submission
    data = make_message(sender, [recipient], extra_headers={"X-MSS-INS": "N"})
    refused = await asyncio.to_thread(
        submit,
        "127.0.0.1",
        a.submission.port,
        trust_space.ca_file,
        sender,
        PASSWORD,
        sender,
        [recipient],
        data,
        mail_options=["RET=HDRS", "ENVID=env-1"],
        rcpt_options=["NOTIFY=SUCCESS,FAILURE"],
    )
    assert refused == {}
    stored = await wait_for(lambda: b.services.store.list(recipient))
    message = b.services.store.read(stored[0])  # type: ignore[index]
    assert b"X-MSS-INS: N" in message
    assert data in message  # relayed untouched after the Received fields (R20)
    # The success DSN comes back to the sender at alpha (NOTIFY=SUCCESS, RFC 3461).
    inbox = await wait_for(lambda: a.services.store.list(sender))
    dsn = parse_dsn(a.services.store.read(inbox[0]))  # type: ignore[index]
    assert dsn.recipients[0]["action"] == "delivered"
    assert dsn.original_envelope_id == "env-1"
    # A copy in the sender's Sent folder.
    assert len(a.services.store.list(sender, "Sent")) == 1


async def test_outside_trust_space_refused_at_rcpt(trust_space: LocalTrustSpace) -> None:
    sender, _ = await _seed(trust_space)
    a = trust_space["alpha.mssante.fr"].operator
    assert a and a.submission
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await asyncio.to_thread(
            submit,
            "127.0.0.1",
            a.submission.port,
            trust_space.ca_file,
            sender,
            PASSWORD,
            sender,
            ["someone@gmail.com"],
            make_message(sender, ["someone@gmail.com"]),
        )
    code, text = info.value.recipients["someone@gmail.com"]
    assert code == 550 and text.startswith(b"5.7.1")
    assert b"espace de confiance" in text


async def test_auth_before_starttls_refused(trust_space: LocalTrustSpace) -> None:
    a = trust_space["alpha.mssante.fr"].operator
    assert a and a.submission

    def probe() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", a.submission.port) as client:
            client.ehlo("probe")
            assert not client.has_extn("auth")
            return client.docmd("AUTH", "PLAIN AGFiYwBkZWY=")

    code, text = await asyncio.to_thread(probe)
    assert code == 530 and text.startswith(b"5.7.0")


async def test_inbound_without_client_certificate_refused(trust_space: LocalTrustSpace) -> None:
    b = trust_space["beta.mssante.fr"].operator
    assert b and b.inbound

    def probe() -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(trust_space.ca_file))
        with smtplib.SMTP("127.0.0.1", b.inbound.port) as client:
            client.starttls(context=ctx)
            client.ehlo("probe")
            return client.mail("x@alpha.mssante.fr")

    code, text = await asyncio.to_thread(probe)
    assert code == 530 and b"certificat" in text.lower()
