"""SASL EXTERNAL on SMTP submission and IMAP with an APP mailbox's client certificate (R18)."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import ssl
from pathlib import Path

from mssante.domain.mailboxes import MailboxType
from mssante.pki import DistinguishedName
from mssante.testing.clients import make_message, seed_structure_mailbox, wait_for
from mssante.testing.trust_space import LocalTrustSpace

APP = "dui@alpha.mssante.fr"


def _client_context(space: LocalTrustSpace, tmp: Path, name: str) -> ssl.SSLContext:
    cert = space.ca.issue(DistinguishedName(f"{name}.dui.example", organization="DUI"),
                          server=False)  # fmt: skip
    cert.write(tmp / f"{name}.pem", tmp / f"{name}.key", chain=True)
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    ctx.load_cert_chain(tmp / f"{name}.pem", tmp / f"{name}.key")
    return ctx


async def test_external_with_bound_certificate(
    trust_space: LocalTrustSpace, tmp_path: Path
) -> None:
    a = trust_space["alpha.mssante.fr"].operator
    assert a and a.submission and a.imaps
    await asyncio.to_thread(
        seed_structure_mailbox,
        a.services.mailboxes,
        APP,
        "1750000028",
        "EHPAD Alpha",
        "un mot de passe tres long",
        type=MailboxType.APP,
    )
    bound = _client_context(trust_space, tmp_path, "bound")
    await asyncio.to_thread(
        a.services.machine_credentials.bind_certificate,
        APP, (tmp_path / "bound.pem").read_bytes().split(b"-----END CERTIFICATE-----")[0]
        + b"-----END CERTIFICATE-----\n", actor="test",
    )  # fmt: skip
    unbound = _client_context(trust_space, tmp_path, "unbound")

    def smtp(ctx: ssl.SSLContext) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", a.submission.port, timeout=30) as client:
            client.starttls(context=ctx)
            client.ehlo("dui")
            assert "EXTERNAL" in client.esmtp_features["auth"]
            code, text = client.docmd("AUTH", "EXTERNAL =")
            if code == 235:
                client.sendmail(APP, [APP], make_message(APP, [APP], subject="par certificat"))
            return code, text

    code, _ = await asyncio.to_thread(smtp, bound)
    assert code == 235
    code, text = await asyncio.to_thread(smtp, unbound)
    assert code == 535 and text.startswith(b"5.7.8")
    await wait_for(lambda: a.services.store.list(APP))

    def imap(ctx: ssl.SSLContext) -> str:
        client = imaplib.IMAP4_SSL("127.0.0.1", a.imaps.port, ssl_context=ctx, timeout=30)
        try:
            typ, _ = client.authenticate("EXTERNAL", lambda _challenge: b"")
            return typ
        except imaplib.IMAP4.error:
            return "NO"
        finally:
            client.shutdown()

    assert await asyncio.to_thread(imap, bound) == "OK"
    assert await asyncio.to_thread(imap, unbound) == "NO"
