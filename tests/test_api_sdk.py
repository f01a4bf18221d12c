"""The SDK end to end (issue 7 "Must show"): a CR with a CDA from an APP BAL of operator A to
a PER BAL of operator B; B reads it over IMAP and its mail client sends the read receipt
(RFC 8098 MDN, by SMTP submission); A's status turns "read" in the API and A's webhook
receiver gets a signed ``message.status`` event that the SDK's ``verify_webhook`` accepts.

Two real operators (``trust_space``), the real HTTPS API, Python's imaplib and smtplib for
B's mail client, a real HTTP server on 127.0.0.1 for the webhook; plus ``mssante send`` run
as a subprocess. Everything waits on conditions, never on timings.
"""

from __future__ import annotations

import asyncio
import email
import imaplib
import json
import os
import queue
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import SHARED_DATA
from mssante.client import (
    AsyncClient,
    Client,
    Document,
    Forbidden,
    NotFound,
    Patient,
    Unauthenticated,
    WebhookEvent,
    parse_webhook,
    verify_webhook,
)
from mssante.domain.mailboxes import MailboxType
from mssante.formats.mdn import MANUAL, build_mdn
from mssante.testing.clients import seed_professional_mailbox, seed_structure_mailbox, submit
from mssante.testing.trust_space import LocalTrustSpace

APP = "dui@alpha.mssante.fr"
PER_B = "hugo.bernard@beta.mssante.fr"
PASSWORD = "un mot de passe tres long"
CR = SHARED_DATA / "cda" / "examples" / "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml"
CR_PATIENT = Patient(
    "279035121518989", "PAT-TROIS", "DOMINIQUE", "1979-03-28", "F", ins_oid="1.2.250.1.213.1.4.10"
)
WAIT = 60.0
# The installed `mssante` script (beside this Python), run as a real subprocess.
MSSANTE = [sys.executable, "-c", "from mssante.cli import main; main()"]
T = TypeVar("T")


def _until(condition: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Receiver:
    """A webhook subscriber: a real HTTP server on 127.0.0.1 that queues what it gets."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                calls.put((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_event(self, secret: str, want: Callable[[WebhookEvent], bool]) -> WebhookEvent:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                headers, body = self.calls.get(timeout=0.5)
            except queue.Empty:
                continue
            assert verify_webhook(secret, headers, body)
            assert not verify_webhook("not-the-secret", headers, body)
            assert not verify_webhook(secret, headers, body + b" ")
            event = parse_webhook(secret, headers, body)
            if want(event):
                return event
        raise AssertionError("no matching webhook event")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Setup:
    space: LocalTrustSpace
    url_a: str
    url_b: str
    client_id: str
    secret: str


@pytest.fixture
async def setup(trust_space: LocalTrustSpace, tmp_path: Path) -> AsyncIterator[Setup]:
    a = trust_space["alpha.mssante.fr"].operator
    b = trust_space["beta.mssante.fr"].operator
    assert a and b and a.http_url and b.http_url
    await asyncio.to_thread(
        seed_structure_mailbox,
        a.services.mailboxes,
        APP,
        "1750000010",
        "CH Alpha",
        PASSWORD,
        type=MailboxType.APP,
    )
    await asyncio.to_thread(
        seed_professional_mailbox,
        b.services.mailboxes,
        PER_B,
        "10000000033",
        PASSWORD,
        family_name="Bernard",
        given_name="Hugo",
    )
    client_id, secret = await asyncio.to_thread(
        a.services.machine_credentials.create_client, APP, actor="test"
    )
    yield Setup(trust_space, a.http_url, b.http_url, client_id, secret)


def _imap_read(space: LocalTrustSpace, message_id: str) -> bytes:
    """B's mail client: find the message, read it whole (\\Seen); its header section."""
    b = space["beta.mssante.fr"].operator
    assert b and b.imaps
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    with imaplib.IMAP4_SSL("127.0.0.1", b.imaps.port, ssl_context=ctx, timeout=30) as imap:
        imap.login(PER_B, PASSWORD)

        def find() -> bytes | None:
            imap.select("INBOX")
            typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", message_id)
            assert typ == "OK"
            return data[0] or None

        uid = _until(find, "the message in B's INBOX").split()[-1]
        typ, data = imap.uid("FETCH", uid, "(BODY[])")
        assert typ == "OK"
        raw = data[0][1]
        typ, data = imap.uid("FETCH", uid, "(FLAGS)")
        assert b"\\Seen" in data[0]
    return raw


def _send_mdn(space: LocalTrustSpace, original: bytes) -> None:
    """B's mail client sends the read receipt it was asked for (RFC 8098), as the user."""
    b = space["beta.mssante.fr"].operator
    assert b and b.submission
    headers = original.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    parsed = email.message_from_bytes(original)
    assert parsed["Disposition-Notification-To"]
    mdn = build_mdn(
        headers,
        reporting_ua="imaplib; mssante tests",
        final_recipient=PER_B,
        message_id_domain="beta.mssante.fr",
        disposition="displayed",
        mode=MANUAL,
    )
    to = email.utils.parseaddr(parsed["Disposition-Notification-To"])[1]
    submit("127.0.0.1", b.submission.port, space.ca_file, PER_B, PASSWORD, PER_B, [to], mdn)


def _scenario(s: Setup) -> None:
    receiver = Receiver()
    try:
        with Client(
            s.url_a, client_id=s.client_id, client_secret=s.secret, verify=s.space.ca_file
        ) as api:
            me = api.me()
            assert me.kind == "application" and me.mailboxes == [APP]
            sub = api.subscribe(APP, receiver.url, ["message.status"])
            assert sub.secret and sub.events == ["message.status"]
            assert [x.id for x in api.subscriptions(APP)] == [sub.id]
            assert all(x.secret is None for x in api.subscriptions(APP))

            sent = api.send(
                APP,
                [PER_B],
                "Compte rendu d'imagerie",
                "Bonjour,\n\nLe compte rendu de l'examen de ce jour.\n",
                documents=[Document(CR, type_code="18748-4")],
                patient=CR_PATIENT,
                read_receipt=True,
            )
            assert sent.id and sent.message_id and sent.location
            assert [r.address for r in sent.recipients] == [PER_B]
            assert sent.recipients[0].status in {"queued", "relayed"}
            assert api.status(APP, sent.id).message_id == sent.message_id

            raw = _imap_read(s.space, sent.message_id)
            assert b"IHE_XDM.ZIP" in raw
            _send_mdn(s.space, raw)

            status = api.wait_status(APP, sent.id, until=frozenset({"read"}), timeout=WAIT)
            assert status.recipient(PER_B).status == "read", status.raw

            event = receiver.next_event(
                sub.secret,
                lambda e: (
                    e.type == "message.status"
                    and e.data.get("id") == sent.id
                    and e.status().recipient(PER_B).status == "read"
                ),
            )
            assert event.mailbox == APP
            log = api.deliveries(APP, sub.id)
            assert any(d.event_id == event.id for d in log)
            api.unsubscribe(APP, sub.id)
            assert api.subscriptions(APP) == []
    finally:
        receiver.close()


async def test_sdk_cr_from_app_to_other_operator_read_over_imap(setup: Setup) -> None:
    if not CR.is_file():
        pytest.skip(f"shared data missing: {CR}")
    await asyncio.to_thread(_scenario, setup)


def _idempotency_and_errors(s: Setup) -> None:
    with Client(
        s.url_a, client_id=s.client_id, client_secret=s.secret, verify=s.space.ca_file
    ) as api:
        first = api.send(
            APP,
            PER_B,
            "Avec pièce jointe",
            "Bonjour",
            attachments=[("note.txt", b"une note\n", "text/plain")],
            idempotency_key="cle-test-0001",
        )
        again = api.send(
            APP,
            PER_B,
            "Avec pièce jointe",
            "Bonjour",
            attachments=[("note.txt", b"une note\n", "text/plain")],
            idempotency_key="cle-test-0001",
        )
        assert again.id == first.id and again.message_id == first.message_id
        with pytest.raises(NotFound):
            api.status(APP, "no-such-send")
        with pytest.raises(Forbidden) as forbidden:
            api.send("someone@alpha.mssante.fr", PER_B, "x", "y")
        assert forbidden.value.status == 403 and forbidden.value.detail
        assert forbidden.value.type == "https://mssante.fr/problems/forbidden"
    with (
        Client(s.url_a, token="not-a-token", verify=s.space.ca_file) as bad,
        pytest.raises(Unauthenticated),
    ):
        bad.me()


async def test_sdk_idempotency_and_problem_errors(setup: Setup) -> None:
    await asyncio.to_thread(_idempotency_and_errors, setup)


async def test_async_client_sends_and_lists(setup: Setup, tmp_path: Path) -> None:
    big = tmp_path / "scan.bin"
    big.write_bytes(os.urandom(300 * 1024))
    async with AsyncClient(
        setup.url_a,
        client_id=setup.client_id,
        client_secret=setup.secret,
        verify=setup.space.ca_file,
    ) as api:
        me = await api.me()
        assert me.mailboxes == [APP]
        sent = await api.send(APP, [APP], "À moi-même", "Test asynchrone", attachments=[big])
        assert sent.recipients[0].address == APP

        async def arrived() -> Any:
            async for item in api.list_messages(APP, page_size=1):
                if item.message_id == sent.message_id:
                    return item
            return None

        deadline = time.monotonic() + WAIT
        found = await arrived()
        while found is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            found = await arrived()
        assert found is not None and found.attachments_count == 1
        detail = await api.get_message(APP, found.id, peek=True)
        assert detail.attachments[0].size == big.stat().st_size
        out = tmp_path / "back.bin"
        written = await api.download_attachment(APP, found.id, detail.attachments[0].index, out)
        assert written == big.stat().st_size and out.read_bytes() == big.read_bytes()


async def test_mssante_send_command(setup: Setup, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(setup.secret + "\n")
    attachment = tmp_path / "ordonnance.txt"
    attachment.write_text("Paracétamol 1 g\n", encoding="utf-8")
    args = [
        *MSSANTE, "send",
        "--api", setup.url_a,
        "--client-id", setup.client_id,
        "--client-secret-file", str(secret_file),
        "--ca-file", str(setup.space.ca_file),
        "--from", APP, "--to", PER_B,
        "--subject", "Envoyé par la ligne de commande",
        "--text", "Bonjour",
        "--attach", str(attachment),
        "--json",
    ]  # fmt: skip
    done = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await done.communicate()
    assert done.returncode == 0, err.decode()
    status = json.loads(out)
    assert status["id"] and status["recipients"][0]["address"] == PER_B

    refused = await asyncio.create_subprocess_exec(
        *[a if a != APP else "autre@alpha.mssante.fr" for a in args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await refused.communicate()
    assert refused.returncode == 1
    assert "erreur" in err.decode() and "403" in err.decode()


class FlakyOperator:
    """A stand-in HTTP server (real sockets) that answers the first send 503, then 202, and
    whose first token is refused once: what the SDK must ride over by itself."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self.tokens_issued = 0
        self.refused_once = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any], ctype: str) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/oauth/token":
                    outer.tokens_issued += 1
                    token = f"token-{outer.tokens_issued}"
                    self._answer(
                        200, {"access_token": token, "expires_in": 300}, "application/json"
                    )
                    return
                if self.headers["Authorization"] == "Bearer token-1" and not outer.refused_once:
                    outer.refused_once = True
                    problem = {"type": "https://mssante.fr/problems/unauthenticated",
                               "title": "Authentification requise", "status": 401,
                               "detail": "Jeton d'accès invalide ou expiré."}  # fmt: skip
                    self._answer(401, problem, "application/problem+json")
                    return
                outer.keys.append(self.headers.get("Idempotency-Key"))
                if len(outer.keys) == 1:
                    problem = {"type": "https://mssante.fr/problems/unavailable",
                               "title": "Service momentanément indisponible", "status": 503,
                               "detail": "Réessayez."}  # fmt: skip
                    self._answer(503, problem, "application/problem+json")
                    return
                status = {"id": "q1", "message_id": "<m@x>", "submitted_at": "2026-01-01T00:00:00Z",
                          "recipients": [{"address": PER_B, "status": "queued",
                                          "updated_at": "2026-01-01T00:00:00Z"}]}  # fmt: skip
                self._answer(202, status, "application/json")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sdk_renews_token_and_retries_with_the_same_key() -> None:
    flaky = FlakyOperator()
    try:
        with Client(flaky.url, client_id="mss-app-x", client_secret="s") as api:
            sent = api.send(APP, [PER_B], "Objet", "Texte")
        assert sent.id == "q1" and sent.recipients[0].status == "queued"
        assert flaky.tokens_issued == 2  # the refused token was replaced once
        assert len(flaky.keys) == 2 and flaky.keys[0] == flaky.keys[1] and flaky.keys[0]
    finally:
        flaky.close()
