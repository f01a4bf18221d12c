"""SMTP submission with professionals' bearer tokens (R14–R17): XOAUTH2 and OAUTHBEARER
with real clients (smtplib, curl), against the PSC-like demo provider."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import smtplib
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from conftest import ALPHA, BETA
from mssante.identity.demo_provider import DemoProfessional, DemoProvider, generate_key
from mssante.services.traces import list_events
from mssante.testing.clients import make_message, seed_professional_mailbox, wait_for
from mssante.testing.trust_space import LocalTrustSpace

CAMILLE = DemoProfessional("810000000017", "Camille", "Martin", "Médecin")
LEA = DemoProfessional("810000000025", "Léa", "Dubois", "Médecin généraliste")
CAMILLE_BOX = "camille.martin@alpha.mssante.fr"
LEA_BOX = "lea.dubois@alpha.mssante.fr"
BETA_BOX = "hugo.bernard@beta.mssante.fr"
KEY = generate_key()
OTHER_KEY = generate_key()


@pytest.fixture
async def provider() -> AsyncIterator[DemoProvider]:
    demo = DemoProvider(
        [CAMILLE, LEA],
        {"mssante-mail": ("mail-secret", ["http://127.0.0.1/cb"])},
        signing_key=KEY,
    )
    await demo.start(allow_demo=True)
    try:
        yield demo
    finally:
        await demo.stop()


@pytest.fixture
async def space(
    tmp_path: Path, database_url: Callable[[], str], provider: DemoProvider
) -> AsyncIterator[LocalTrustSpace]:
    built = LocalTrustSpace.create(
        tmp_path / "space",
        [ALPHA, BETA],
        database_urls=[database_url(), database_url()],
        identity=provider.settings_for("mssante-mail", "mail-secret"),
    )
    await built.start()
    a = built["alpha.mssante.fr"].operator
    b = built["beta.mssante.fr"].operator
    assert a and b
    await asyncio.to_thread(
        seed_professional_mailbox, a.services.mailboxes, CAMILLE_BOX, "10000000017", "pw-camille"
    )
    await asyncio.to_thread(
        seed_professional_mailbox,
        a.services.mailboxes,
        LEA_BOX,
        "10000000025",
        "pw-lea",
        family_name="Dubois",
        given_name="Léa",
    )
    await asyncio.to_thread(
        seed_professional_mailbox,
        b.services.mailboxes,
        BETA_BOX,
        "10000000033",
        "pw-hugo",
        family_name="Bernard",
        given_name="Hugo",
    )
    try:
        yield built
    finally:
        await built.stop()


def _client(space: LocalTrustSpace) -> smtplib.SMTP:
    a = space["alpha.mssante.fr"].operator
    assert a and a.submission
    client = smtplib.SMTP("127.0.0.1", a.submission.port, timeout=30)
    client.starttls(context=ssl.create_default_context(cafile=str(space.ca_file)))
    client.ehlo("test")
    return client


def _xoauth2(user: str, token: str) -> str:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def _oauthbearer(user: str, token: str) -> str:
    msg = f"n,a={user},\x01host=127.0.0.1\x01port=587\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(msg.encode()).decode()


async def test_token_login_sends_as_own_mailbox(
    space: LocalTrustSpace, provider: DemoProvider
) -> None:
    token = provider.mint_access_token(CAMILLE.id_nat_ps)

    def run() -> tuple[int, bytes]:
        with _client(space) as client:
            assert "XOAUTH2" in client.esmtp_features["auth"]
            assert "OAUTHBEARER" in client.esmtp_features["auth"]
            code, _ = client.docmd("AUTH", "XOAUTH2 " + _xoauth2(CAMILLE_BOX, token))
            assert code == 235
            refused = client.sendmail(
                CAMILLE_BOX, [BETA_BOX], make_message(CAMILLE_BOX, [BETA_BOX])
            )
            assert refused == {}
            # R15: a token for Camille cannot send as Léa's BAL.
            return client.mail(LEA_BOX)

    code, text = await asyncio.to_thread(run)
    assert code == 550 and text.startswith(b"5.7.1")
    b = space["beta.mssante.fr"].operator
    assert b
    await wait_for(lambda: b.services.store.list(BETA_BOX))


async def test_oauthbearer_works(space: LocalTrustSpace, provider: DemoProvider) -> None:
    token = provider.mint_access_token(LEA.id_nat_ps)

    def run() -> int:
        with _client(space) as client:
            code, _ = client.docmd("AUTH", "OAUTHBEARER " + _oauthbearer(LEA_BOX, token))
            return code

    assert await asyncio.to_thread(run) == 235


@pytest.mark.parametrize(
    "case", ["expired", "wrong-key", "wrong-issuer", "acr", "not-yet-valid", "garbage"]
)
async def test_bad_tokens_refused(
    space: LocalTrustSpace, provider: DemoProvider, case: str
) -> None:
    mint = provider.mint_access_token
    token = {
        "expired": lambda: mint(CAMILLE.id_nat_ps, expires_in=-120),
        "wrong-key": lambda: mint(CAMILLE.id_nat_ps, key=OTHER_KEY),
        "wrong-issuer": lambda: mint(CAMILLE.id_nat_ps, issuer="https://evil.example/realm"),
        "acr": lambda: mint(CAMILLE.id_nat_ps, acr="eidas2"),
        "not-yet-valid": lambda: mint(CAMILLE.id_nat_ps, not_before=time.time() + 3600),
        "garbage": lambda: "not.a.token",
    }[case]()

    def run() -> tuple[int, bytes, int, bytes]:
        with _client(space) as client:
            code, challenge = client.docmd("AUTH", "XOAUTH2 " + _xoauth2(CAMILLE_BOX, token))
            final, text = client.docmd("")  # RFC 7628 §3.2.3: the client's empty answer
            return code, challenge, final, text

    code, challenge, final, text = await asyncio.to_thread(run)
    assert code == 334  # the RFC 7628 error challenge
    error = json.loads(base64.b64decode(challenge))
    assert error["status"] in ("invalid_token", "insufficient_user_authentication")
    assert final == 535 and text.startswith(b"5.7.8")
    a = space["alpha.mssante.fr"].operator
    assert a
    with a.services.db.read() as conn:
        events = list_events(conn, action="login")
    assert events and events[0].outcome == "refused"
    for event in events:  # R17: never the token, only its hash
        assert token not in (event.detail or "")


async def test_session_closed_when_token_expires(
    space: LocalTrustSpace, provider: DemoProvider
) -> None:
    token = provider.mint_access_token(CAMILLE.id_nat_ps, expires_in=3)

    def run() -> tuple[int, bytes]:
        with _client(space) as client:
            code, _ = client.docmd("AUTH", "XOAUTH2 " + _xoauth2(CAMILLE_BOX, token))
            assert code == 235
            time.sleep(4.5)
            return client.getreply()

    code, text = await asyncio.to_thread(run)
    assert code == 421 and text.startswith(b"4.7.0")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_oauth2_bearer(
    space: LocalTrustSpace, provider: DemoProvider, tmp_path: Path
) -> None:
    a = space["alpha.mssante.fr"].operator
    assert a and a.submission
    token = provider.mint_access_token(CAMILLE.id_nat_ps)
    message = tmp_path / "message.eml"
    message.write_bytes(make_message(CAMILLE_BOX, [LEA_BOX], subject="curl --oauth2-bearer"))
    cmd = [
        "curl",
        "--silent",
        "--show-error",
        "--ssl-reqd",
        "--cacert",
        str(space.ca_file),
        "--url",
        f"smtp://127.0.0.1:{a.submission.port}",
        "--user",
        f"{CAMILLE_BOX}:",
        "--oauth2-bearer",
        token,
        "--mail-from",
        CAMILLE_BOX,
        "--mail-rcpt",
        LEA_BOX,
        "--upload-file",
        str(message),
    ]
    result = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stored = await wait_for(lambda: a.services.store.list(LEA_BOX))
    assert b"curl --oauth2-bearer" in a.services.store.read(stored[0])  # type: ignore[index]


async def test_unknown_professional_refused(space: LocalTrustSpace, provider: DemoProvider) -> None:
    token = provider.mint_access_token("8" + "10000000041")

    def run() -> int:
        with _client(space) as client:
            client.docmd("AUTH", "XOAUTH2 " + _xoauth2("x@alpha.mssante.fr", token))
            return client.docmd("")[0]

    assert await asyncio.to_thread(run) == 535
