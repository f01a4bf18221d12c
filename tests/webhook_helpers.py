"""Helpers of the delivery-status and webhook tests: a trust space with an APP BAL at alpha
and a PER BAL at beta, a real webhook receiver on 127.0.0.1 that checks every signature,
SMTP submission, IMAP reading and MDN sending as a mail client does.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import json
import secrets
import smtplib
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from conftest import ALPHA, BETA
from mssante.domain.mailboxes import MailboxType
from mssante.formats.mdn import AUTOMATIC, MANUAL, build_mdn, integration_error
from mssante.pki import DemoCA, DistinguishedName
from mssante.runtime import Operator
from mssante.testing.clients import (
    make_message,
    seed_professional_mailbox,
    seed_structure_mailbox,
    wait_for,
)
from mssante.testing.postgres import PostgresServer
from mssante.testing.trust_space import LocalTrustSpace
from mssante.webhook_signature import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

APP = "dui.ehpad@alpha.mssante.fr"
OTHER_APP = "lps.cabinet@alpha.mssante.fr"
LOCAL_PER = "camille.martin@alpha.mssante.fr"
PER = "lea.dubois@beta.mssante.fr"
PASSWORD = "Sesame-ouvre-toi 42!"
SECRET = "whsec_test_0123456789abcdef"
API_CONFIG = """
[api]
webhook_retry_initial = 0.2
webhook_retry_max = 0.8
webhook_poll_interval = 0.5
"""
FAST_RELAY = {"retry_initial": 1, "retry_max": 1, "poll_interval": 0.1}


# -- the receiver ------------------------------------------------------------------------


@dataclass
class Call:
    headers: dict[str, str]
    body: bytes
    answered: int
    verified: bool

    @property
    def event(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    """A subscriber's endpoint: answers `status` (200 by default) and records every call."""

    secret: str = SECRET
    status: int = 200
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    tls: ssl.SSLContext | None = None  # https with this server context
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k: v for k, v in self.headers.items()}
                verified = verify_signature(
                    receiver.secret,
                    self.headers.get(TIMESTAMP_HEADER),
                    body,
                    self.headers.get(SIGNATURE_HEADER),
                )
                answer = receiver.status
                with receiver._lock:
                    receiver.calls.append(Call(headers, body, answer, verified))
                self.send_response(answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hooks/mssante"

    def accepted(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if 200 <= c.answered < 300]

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [
            c.event for c in self.accepted() if event_type is None or c.event["type"] == event_type
        ]

    def statuses(self, send_id: str, recipient: str) -> list[str]:
        """The statuses of `recipient` in the accepted message.status events of `send_id`."""
        out = []
        for event in self.events("message.status"):
            if event["data"]["id"] == send_id:
                for r in event["data"]["recipients"]:
                    if r["address"] == recipient:
                        out.append(r["status"])
        return out


# -- the space ---------------------------------------------------------------------------


@dataclass
class Space:
    space: LocalTrustSpace
    alpha: Operator
    beta: Operator
    client: httpx.AsyncClient  # to alpha's HTTPS listener
    token: str = ""  # APP's client-credentials token
    other_token: str = ""  # OTHER_APP's

    @property
    def ca_file(self) -> Path:
        return self.space.ca_file

    async def api(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 500, response.text
        return response

    async def subscribe(self, receiver: Receiver, mailbox: str = APP) -> dict[str, Any]:
        response = await self.api(
            "POST",
            f"/api/v1/mailboxes/{quote(mailbox)}/webhooks",
            json={
                "url": receiver.url,
                "events": ["message.received", "message.status"],
                "secret": receiver.secret,
            },
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def unsubscribe_all(self, mailbox: str = APP) -> None:
        path = f"/api/v1/mailboxes/{quote(mailbox)}/webhooks"
        for sub in (await self.api("GET", path)).json():
            assert (await self.api("DELETE", f"{path}/{sub['id']}")).status_code == 204

    async def status(self, send_id: str, mailbox: str = APP) -> dict[str, Any]:
        response = await self.api("GET", f"/api/v1/mailboxes/{quote(mailbox)}/sent/{send_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_status(
        self, send_id: str, recipient: str, wanted: str, mailbox: str = APP, timeout: float = 20
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def check() -> bool:
            nonlocal found
            found = await self.status(send_id, mailbox)
            return any(
                r["address"] == recipient and r["status"] == wanted for r in found["recipients"]
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await check():
            assert loop.time() < deadline, f"{recipient} never {wanted}: {found}"
            await asyncio.sleep(0.1)
        return found


async def token_for(client: httpx.AsyncClient, operator: Operator, address: str) -> str:
    client_id, secret = await asyncio.to_thread(
        operator.services.machine_credentials.create_client, address, actor="test"
    )
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def start_space(root: Path, database_urls: Sequence[str]) -> Space:
    # The demo CA (written by `create` at root/ca.pem) verifies https subscribers.
    ca_line = f'webhook_ca_file = "{root / "ca.pem"}"\n'
    space = LocalTrustSpace.create(
        root,
        [ALPHA, BETA],
        database_urls=list(database_urls),
        relay=FAST_RELAY,
        extra_config=API_CONFIG + ca_line,
    )
    await space.start()
    alpha = space["alpha.mssante.fr"].operator
    beta = space["beta.mssante.fr"].operator
    assert alpha is not None and beta is not None and alpha.http_url is not None

    def seed() -> None:
        boxes = alpha.services.mailboxes
        seed_structure_mailbox(
            boxes, APP, "1750000010", "EHPAD Les Tilleuls", PASSWORD, type=MailboxType.APP
        )
        seed_structure_mailbox(
            boxes, OTHER_APP, "1750000028", "Cabinet", PASSWORD, type=MailboxType.APP
        )
        seed_professional_mailbox(boxes, LOCAL_PER, "10000000017", PASSWORD)
        seed_professional_mailbox(
            beta.services.mailboxes,
            PER,
            "10000000025",
            PASSWORD,
            family_name="Dubois",
            given_name="Léa",
        )

    await asyncio.to_thread(seed)
    context = ssl.create_default_context(cafile=str(space.ca_file))
    client = httpx.AsyncClient(base_url=alpha.http_url, verify=context, timeout=20)
    result = Space(space, alpha, beta, client)
    result.token = await token_for(client, alpha, APP)
    result.other_token = await token_for(client, alpha, OTHER_APP)
    return result


def database_url_for(postgres: PostgresServer | None) -> str:
    """A fresh database for a module-scoped space ("" = SQLite in the data directory)."""
    if postgres is None:
        return ""
    return postgres.create_database(f"t_{secrets.token_hex(6)}")


async def close_space(space: Space) -> None:
    await space.client.aclose()
    await space.space.stop()


# -- mail clients --------------------------------------------------------------------------


def _smtp(operator: Operator, ca_file: Path) -> smtplib.SMTP:
    assert operator.submission is not None
    client = smtplib.SMTP("127.0.0.1", operator.submission.port, timeout=15)
    client.starttls(context=ssl.create_default_context(cafile=str(ca_file)))
    return client


async def submit(
    operator: Operator,
    ca_file: Path,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    *,
    rcpt_options: Sequence[str] = (),
    mail_options: Sequence[str] = (),
) -> str:
    """Submit as `sender` (its password); returns the queue id (the API's send id)."""

    def run() -> str:
        with _smtp(operator, ca_file) as client:
            client.login(sender, PASSWORD)
            code, text = client.mail(sender, list(mail_options))
            assert code == 250, text
            for rcpt in recipients:
                code, text = client.rcpt(rcpt, list(rcpt_options))
                assert code == 250, text
            code, reply = client.data(data)
            assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[-1]

    return await asyncio.to_thread(run)


async def send_report_request(
    space: Space, recipients: Sequence[str] = (PER,), subject: str = "CR de consultation"
) -> str:
    """APP sends a message asking for a success DSN (NOTIFY) and a read receipt (MDN)."""
    data = make_message(
        APP,
        list(recipients),
        subject=subject,
        body="Bonjour,\n\nVeuillez trouver le compte rendu.\n",
        extra_headers={"Disposition-Notification-To": APP},
    )
    return await submit(
        space.alpha,
        space.ca_file,
        APP,
        recipients,
        data,
        rcpt_options=["NOTIFY=SUCCESS,FAILURE"],
    )


def _imap_fetch_latest(operator: Operator, ca_file: Path, login: str) -> bytes:
    assert operator.imap is not None
    client = imaplib.IMAP4("127.0.0.1", operator.imap.port, timeout=15)
    try:
        client.starttls(ssl.create_default_context(cafile=str(ca_file)))
        client.login(login, PASSWORD)
        client.select("INBOX")
        typ, data = client.uid("SEARCH", "ALL")
        assert typ == "OK" and data[0], data
        uid = data[0].split()[-1]
        typ, fetched = client.uid("FETCH", uid, "(BODY[])")
        assert typ == "OK"
        for item in fetched:
            if isinstance(item, tuple):
                return bytes(item[1])
        raise AssertionError(f"no body in {fetched!r}")
    finally:
        try:
            client.logout()
        except Exception:
            pass


async def read_and_acknowledge(
    space: Space,
    reader: str = PER,
    *,
    operator: Operator | None = None,
    error_code: str | None = None,
    disposition: Literal["displayed", "processed"] = "displayed",
) -> bytes:
    """`reader` reads its latest message over IMAP, then its mail client sends the MDN by
    submission (MAIL FROM the reader, as Thunderbird does): displayed, or processed with
    an integration error (R44) when `error_code` is given."""
    operator = operator or space.beta
    original = await wait_for(
        lambda: _imap_fetch_latest(operator, space.ca_file, reader), timeout=20
    )
    assert isinstance(original, bytes)
    headers = original.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    mdn = build_mdn(
        headers,
        reporting_ua="Thunderbird; test",
        final_recipient=reader,
        message_id_domain=reader.rpartition("@")[2],
        disposition="processed" if error_code else disposition,
        mode=MANUAL if disposition == "displayed" and not error_code else AUTOMATIC,
        error=integration_error(error_code) if error_code else None,
    )
    to = email.message_from_bytes(mdn, policy=email.policy.compat32)["To"].strip("<>")
    await submit(operator, space.ca_file, reader, [to], mdn)
    return original


def tls_context(space: Space, tmp: Path, trusted: bool = True) -> ssl.SSLContext:
    """A server context for 127.0.0.1 with a certificate of the demo CA (or of another CA
    the operator does not trust)."""
    ca = space.space.ca if trusted else DemoCA.create("untrusted CA")
    cert = ca.issue(DistinguishedName(common_name="127.0.0.1"), ip_addresses=("127.0.0.1",))
    cert.write(tmp / "hook.pem", tmp / "hook.key", chain=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "hook.pem", tmp / "hook.key")
    return context


def signed_calls_ok(receiver: Receiver) -> None:
    for call in receiver.calls:
        assert call.verified, "a webhook call's signature did not verify"
        assert call.headers.get(ID_HEADER) == call.event["id"]


def wait_until(predicate: Callable[[], object], timeout: float = 20) -> Any:
    return wait_for(predicate, timeout=timeout)
