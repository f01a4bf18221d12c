"""The inbound role between operators: mutual TLS and the white list decide (R5, R7).

Every test talks to beta's inbound listener with the standard library's `smtplib` and an
`ssl.SSLContext` that presents a client certificate, the way another operator's MTA would.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mssante.domain.errors import NotFound
from mssante.formats.dsn import RecipientStatus, build_dsn, parse_dsn
from mssante.pki import DemoCA, DistinguishedName
from mssante.runtime import Operator
from mssante.services import traces
from mssante.storage.database import utcnow
from mssante.storage.schema import envelopes
from mssante.testing.clients import make_message, seed_professional_mailbox, wait_for
from mssante.testing.trust_space import LocalTrustSpace

PASSWORD = "mot de passe de test"
RECIPIENT = "lea.dubois@beta.mssante.fr"
ALPHA_SENDER = "camille.martin@alpha.mssante.fr"


def _operators(space: LocalTrustSpace) -> tuple[Operator, Operator]:
    a = space["alpha.mssante.fr"].operator
    b = space["beta.mssante.fr"].operator
    assert a is not None and b is not None and b.inbound is not None
    return a, b


async def _seed_recipient(space: LocalTrustSpace) -> Operator:
    _, b = _operators(space)
    await asyncio.to_thread(
        seed_professional_mailbox,
        b.services.mailboxes,
        RECIPIENT,
        "10000000025",
        PASSWORD,
        family_name="Dubois",
        given_name="Léa",
    )
    return b


def _client_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


def _alpha_context(space: LocalTrustSpace) -> ssl.SSLContext:
    tls = space["alpha.mssante.fr"].config.tls
    return _client_context(space.ca_file, tls.cert_file, tls.key_file)


def _issue(
    ca: DemoCA, dn: DistinguishedName, directory: Path, *, expired: bool = False
) -> tuple[Path, Path]:
    if expired:
        now = datetime.now(UTC)
        cert = ca.issue(
            dn,
            dns_names=(dn.common_name,),
            not_before=now - timedelta(days=30),
            not_after=now - timedelta(days=1),
        )
    else:
        cert = ca.issue(dn, dns_names=(dn.common_name,))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "client.pem", directory / "client.key"
    cert.write(cert_file, key_file, chain=True)
    return cert_file, key_file


@contextmanager
def _inbound(port: int, ctx: ssl.SSLContext) -> Iterator[smtplib.SMTP]:
    """An inbound session after STARTTLS and EHLO, as another operator opens it."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=15)
    try:
        client.ehlo("mx.peer.mssante.fr")
        client.starttls(context=ctx)
        client.ehlo("mx.peer.mssante.fr")
        yield client
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _stored(operator: Operator, address: str) -> int:
    try:
        return len(operator.services.store.list(address))
    except NotFound:
        return 0


def _refusals(operator: Operator, action: str) -> list[traces.TraceEvent]:
    with operator.services.db.read() as conn:
        return [e for e in traces.list_events(conn, action=action) if e.outcome == "refused"]


def _envelope_count(operator: Operator) -> int:
    with operator.services.db.read() as conn:
        return len(conn.execute(select(envelopes.c.id)).all())


@pytest.mark.parametrize("case", ["other-ca", "expired"])
async def test_client_certificate_that_does_not_verify_is_refused(
    trust_space: LocalTrustSpace, tmp_path: Path, case: str
) -> None:
    """The very DN the white list names for alpha, but from a CA beta does not trust, or
    expired (R5, R8, R10): the TLS session never carries a transaction."""
    b = await _seed_recipient(trust_space)
    assert b.inbound
    ca = DemoCA.create("rogue CA") if case == "other-ca" else trust_space.ca
    dn = trust_space["alpha.mssante.fr"].spec.dn()
    cert_file, key_file = _issue(ca, dn, tmp_path, expired=case == "expired")
    ctx = _client_context(trust_space.ca_file, cert_file, key_file)

    def attempt() -> tuple[int, bytes] | None:
        client = smtplib.SMTP("127.0.0.1", b.inbound.port, timeout=15)  # type: ignore[union-attr]
        try:
            client.ehlo("mx.alpha.mssante.fr")
            client.starttls(context=ctx)
            # TLS 1.3: the server checks the client certificate after the client has
            # finished its side of the handshake, so the failure shows on the next read.
            client.ehlo("mx.alpha.mssante.fr")
            reply = client.mail(ALPHA_SENDER)
            return reply
        except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError):
            return None
        finally:
            client.close()

    assert await asyncio.to_thread(attempt) is None
    assert _stored(b, RECIPIENT) == 0
    assert _envelope_count(b) == 0


async def test_dn_not_matching_the_white_list_gets_550_at_mail(
    trust_space: LocalTrustSpace, tmp_path: Path
) -> None:
    b = await _seed_recipient(trust_space)
    assert b.inbound
    # Issued by the trust space CA, but not the DN listed for alpha.mssante.fr.
    dn = DistinguishedName("mx.intrus.example", "1750000036", "Intrus SA", "Paris (75)")
    cert_file, key_file = _issue(trust_space.ca, dn, tmp_path)
    ctx = _client_context(trust_space.ca_file, cert_file, key_file)

    def attempt() -> tuple[tuple[int, bytes], tuple[int, bytes], tuple[int, bytes]]:
        with _inbound(b.inbound.port, ctx) as client:  # type: ignore[union-attr]
            mail = client.mail(ALPHA_SENDER)
            rcpt = client.rcpt(RECIPIENT)
            data = client.docmd("DATA")
            return mail, rcpt, data

    mail, rcpt, data = await asyncio.to_thread(attempt)
    assert mail[0] == 550 and mail[1].startswith(b"5.7.1")
    assert rcpt[0] == 503 and data[0] == 503  # no transaction was opened
    assert _stored(b, RECIPIENT) == 0
    assert _envelope_count(b) == 0
    refused = _refusals(b, "inbound.mail")
    assert refused and refused[0].mailbox == ALPHA_SENDER


async def test_right_dn_for_an_unlisted_sender_domain_is_refused(
    trust_space: LocalTrustSpace,
) -> None:
    b = await _seed_recipient(trust_space)
    assert b.inbound
    ctx = _alpha_context(trust_space)

    def attempt() -> list[tuple[int, bytes]]:
        replies = []
        with _inbound(b.inbound.port, ctx) as client:  # type: ignore[union-attr]
            # A domain outside the white list, then a listed domain of another operator.
            for sender in ("x@gamma.mssante.fr", "lea.dubois@beta.mssante.fr"):
                replies.append(client.mail(sender))
                client.rset()
            # The sender alpha is listed for is accepted on the same connection.
            replies.append(client.mail(ALPHA_SENDER))
        return replies

    gamma, beta, alpha = await asyncio.to_thread(attempt)
    assert gamma[0] == 550 and gamma[1].startswith(b"5.7.1")
    assert beta[0] == 550 and beta[1].startswith(b"5.7.1")
    assert alpha[0] == 250
    assert {e.mailbox for e in _refusals(b, "inbound.mail")} == {
        "x@gamma.mssante.fr",
        "lea.dubois@beta.mssante.fr",
    }


async def test_null_sender_from_a_listed_operator_is_accepted(
    trust_space: LocalTrustSpace,
) -> None:
    b = await _seed_recipient(trust_space)
    assert b.inbound
    original = make_message(RECIPIENT, [ALPHA_SENDER], subject="Compte rendu")
    dsn = build_dsn(
        reporting_mta="mx.alpha.mssante.fr",
        from_address="MAILER-DAEMON@alpha.mssante.fr",
        to_address=RECIPIENT,
        recipients=[RecipientStatus(ALPHA_SENDER, "delivered", "2.0.0")],
        original_headers=original.split(b"\r\n\r\n", 1)[0] + b"\r\n",
        original_message=None,
        ret="HDRS",
        envid="env-42",
        arrival_date=utcnow(),
        original_message_id=None,
        original_subject="Compte rendu",
        message_id_domain="alpha.mssante.fr",
    )
    ctx = _alpha_context(trust_space)

    def send() -> dict[str, tuple[int, bytes]]:
        with _inbound(b.inbound.port, ctx) as client:  # type: ignore[union-attr]
            return client.sendmail("<>", [RECIPIENT], dsn)

    assert await asyncio.to_thread(send) == {}
    stored = await wait_for(lambda: b.services.store.list(RECIPIENT))
    report = parse_dsn(b.services.store.read(stored[0]))  # type: ignore[index]
    assert report.recipients[0]["action"] == "delivered"
    assert report.original_envelope_id == "env-42"


async def test_null_sender_needs_a_listed_operator_certificate(
    trust_space: LocalTrustSpace, tmp_path: Path
) -> None:
    b = await _seed_recipient(trust_space)
    assert b.inbound
    dn = DistinguishedName("mx.intrus.example", "1750000036", "Intrus SA", "Paris (75)")
    cert_file, key_file = _issue(trust_space.ca, dn, tmp_path)
    ctx = _client_context(trust_space.ca_file, cert_file, key_file)

    def attempt() -> tuple[int, bytes]:
        with _inbound(b.inbound.port, ctx) as client:  # type: ignore[union-attr]
            return client.mail("<>")

    code, text = await asyncio.to_thread(attempt)
    assert code == 550 and text.startswith(b"5.7.1")


async def test_rcpt_to_a_domain_not_hosted_here_is_relay_denied(
    trust_space: LocalTrustSpace,
) -> None:
    b = await _seed_recipient(trust_space)
    assert b.inbound
    ctx = _alpha_context(trust_space)

    def attempt() -> list[tuple[int, bytes]]:
        with _inbound(b.inbound.port, ctx) as client:  # type: ignore[union-attr]
            mail = client.mail(ALPHA_SENDER)
            # alpha.mssante.fr is in the trust space, but beta does not host it; a domain
            # outside the trust space is no better.
            return [mail, client.rcpt("autre@alpha.mssante.fr"), client.rcpt("x@gmail.com")]

    mail, listed, outside = await asyncio.to_thread(attempt)
    assert mail[0] == 250
    for code, text in (listed, outside):
        assert code == 550 and text.startswith(b"5.7.1")
        assert b"relais" in text.lower() or b"relay" in text.lower()
    assert {e.mailbox for e in _refusals(b, "inbound.rcpt")} == {
        "autre@alpha.mssante.fr",
        "x@gmail.com",
    }


def _tls11_client_works(tmp_path: Path) -> bool:
    """Whether this OpenSSL can speak TLS 1.1 at all (checked against a lenient server)."""
    if not getattr(ssl, "HAS_TLSv1_1", False):
        return False
    ca = DemoCA.create("lenient CA")
    cert = ca.issue(DistinguishedName("localhost"), ip_addresses=("127.0.0.1",))
    cert_file, key_file = tmp_path / "lenient.pem", tmp_path / "lenient.key"
    cert.write(cert_file, key_file)
    try:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        server_ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        server_ctx.load_cert_chain(cert_file, key_file)
        client_ctx = _tls11_context()
    except (ssl.SSLError, ValueError):
        return False
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: list[str | None] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                result.append(tls.version())
        except (ssl.SSLError, OSError):
            result.append(None)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw) as tls,
        ):
            ok = tls.version() == "TLSv1.1"
    except (ssl.SSLError, OSError):
        ok = False
    thread.join(5)
    listener.close()
    return ok


def _tls11_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_1_client_is_refused(trust_space: LocalTrustSpace, tmp_path: Path) -> None:
    if not await asyncio.to_thread(_tls11_client_works, tmp_path):
        pytest.skip("the local OpenSSL cannot negotiate TLS 1.1 even with a lenient server")
    b = await _seed_recipient(trust_space)
    assert b.inbound
    tls = trust_space["alpha.mssante.fr"].config.tls
    ctx = _tls11_context()
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))

    def attempt() -> str | None:
        client = smtplib.SMTP("127.0.0.1", b.inbound.port, timeout=15)  # type: ignore[union-attr]
        try:
            client.ehlo("mx.alpha.mssante.fr")
            client.starttls(context=ctx)
            sock = client.sock
            return sock.version() if isinstance(sock, ssl.SSLSocket) else None
        except (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError):
            return None
        finally:
            client.close()

    assert await asyncio.to_thread(attempt) is None


async def test_auth_is_not_offered_on_the_inbound_role(trust_space: LocalTrustSpace) -> None:
    b = await _seed_recipient(trust_space)
    assert b.inbound
    ctx = _alpha_context(trust_space)

    def probe() -> tuple[bool, bool, tuple[int, bytes]]:
        client = smtplib.SMTP("127.0.0.1", b.inbound.port, timeout=15)  # type: ignore[union-attr]
        try:
            client.ehlo("mx.alpha.mssante.fr")
            before = client.has_extn("auth")
            client.starttls(context=ctx)
            client.ehlo("mx.alpha.mssante.fr")
            after = client.has_extn("auth")
            # PLAIN with the credentials of a real BAL of beta: still refused.
            reply = client.docmd("AUTH", "PLAIN AGxlYS5kdWJvaXNAYmV0YS5tc3NhbnRlLmZyAG1vdA==")
            return before, after, reply
        finally:
            client.close()

    before, after, (code, text) = await asyncio.to_thread(probe)
    assert not before and not after
    assert code == 503 and text.startswith(b"5.5.1")
    with b.services.db.read() as conn:
        assert traces.list_events(conn, action="login") == []
