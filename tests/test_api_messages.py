"""The integration API's messages (issue 7) through two running operators.

Tokens are real: client credentials of an APP BAL (``POST /oauth/token``) and Pro Santé
Connect-like tokens of the demo provider. Mail really travels: from alpha's API over SMTP
to beta, read back over IMAP and beta's API; read receipts come back as RFC 8098 MDNs.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import ALPHA, BETA, SHARED_DATA
from mssante.domain.mailboxes import MailboxType
from mssante.identity.demo_provider import DemoProfessional, DemoProvider, generate_key
from mssante.runtime import Operator
from mssante.storage.schema import envelopes
from mssante.testing.clients import seed_professional_mailbox, seed_structure_mailbox, wait_for
from mssante.testing.trust_space import LocalTrustSpace, TrustListEntry

CAMILLE = DemoProfessional("810000000017", "Camille", "Martin", "Médecin")
LEA = DemoProfessional("810000000025", "Léa", "Dubois", "Médecin généraliste")
HUGO = DemoProfessional("810000000033", "Hugo", "Bernard", "Médecin")
CAMILLE_BOX = "camille.martin@alpha.mssante.fr"
LEA_BOX = "lea.dubois@alpha.mssante.fr"
DUI_BOX = "dui@alpha.mssante.fr"
HUGO_BOX = "hugo.bernard@beta.mssante.fr"
PATIENT = "279035121518989@patient.mssante.fr"
PASSWORD = "Sesame-ouvre-toi 42!"
APP_LIMIT = 300_000
KEY = generate_key()
PROBLEM = "application/problem+json"


@pytest.fixture
async def provider() -> AsyncIterator[DemoProvider]:
    demo = DemoProvider(
        [CAMILLE, LEA, HUGO], {"mssante-api": ("api-secret", ["http://127.0.0.1/cb"])},
        signing_key=KEY,
    )  # fmt: skip
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
        identity=provider.settings_for("mssante-api", "api-secret"),
        # R29 needs the patient domain in the trust space (routed like any other domain).
        extra_trust_entries=[TrustListEntry("patient.mssante.fr", "MES", BETA.dn().rfc4514())],
        extra_config=f"\n[api]\nmax_message_size_app = {APP_LIMIT}\n",
    )
    await built.start()
    a, b = _op(built, "alpha"), _op(built, "beta")

    def seed() -> None:
        seed_structure_mailbox(
            a.services.mailboxes, DUI_BOX, "1750000010", "EHPAD Les Tilleuls", PASSWORD,
            type=MailboxType.APP,
        )  # fmt: skip
        seed_professional_mailbox(a.services.mailboxes, CAMILLE_BOX, "10000000017", PASSWORD)
        seed_professional_mailbox(
            a.services.mailboxes, LEA_BOX, "10000000025", PASSWORD,
            family_name="Dubois", given_name="Léa",
        )  # fmt: skip
        seed_professional_mailbox(
            b.services.mailboxes, HUGO_BOX, "10000000033", PASSWORD,
            family_name="Bernard", given_name="Hugo",
        )  # fmt: skip

    await asyncio.to_thread(seed)
    try:
        yield built
    finally:
        await built.stop()


def _op(space: LocalTrustSpace, name: str) -> Operator:
    op = space[f"{name}.mssante.fr"].operator
    assert op is not None and op.http_url
    return op


def _client(space: LocalTrustSpace, name: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=_op(space, name).http_url or "",
        verify=ssl.create_default_context(cafile=str(space.ca_file)),
        headers=headers,
        timeout=60,
    )


async def _app_token(space: LocalTrustSpace) -> str:
    a = _op(space, "alpha")
    client_id, secret = await asyncio.to_thread(
        a.services.machine_credentials.create_client, DUI_BOX, actor="test"
    )
    async with _client(space, "alpha") as http:
        answer = await http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _url(address: str, *rest: str) -> str:
    return "/".join([f"/api/v1/mailboxes/{address}", *rest])


def _assert_problem(answer: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    assert body["type"] == f"https://mssante.fr/problems/{slug}"
    assert body["title"] and body["status"] == status and body["detail"]
    for leak in ("Traceback", "sqlalchemy", "SELECT ", 'File "'):
        assert leak not in answer.text
    return dict(body)


async def _items(http: httpx.AsyncClient, address: str, **params: Any) -> list[dict[str, Any]]:
    answer = await http.get(_url(address, "messages"), params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def _wait_items(
    http: httpx.AsyncClient, address: str, count: int, **params: Any
) -> list[dict[str, Any]]:
    for _ in range(300):
        items = await _items(http, address, **params)
        if len(items) >= count:
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"{address}: {count} message(s) expected")


def _imap(space: LocalTrustSpace, user: str) -> imaplib.IMAP4_SSL:
    b = _op(space, "beta")
    assert b.imaps is not None
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    client = imaplib.IMAP4_SSL("127.0.0.1", b.imaps.port, ssl_context=ctx, timeout=30)
    client.login(user, PASSWORD)
    return client


def _imap_flags(space: LocalTrustSpace, folder: str) -> list[bytes]:
    client = _imap(space, HUGO_BOX)
    try:
        client.select(folder)
        _, data = client.fetch("1:*", "(FLAGS)")
        return [d for d in data if isinstance(d, bytes)]
    finally:
        client.logout()


def _envelopes(op: Operator) -> int:
    with op.services.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(envelopes)).scalar_one())


# -- sending, reading, flags, receipts ------------------------------------------------------


async def test_send_read_flags_and_read_receipt(
    space: LocalTrustSpace, provider: DemoProvider
) -> None:
    attachment = bytes(range(256)) * 40
    async with _client(space, "alpha", await _app_token(space)) as dui:
        sent = await dui.post(
            _url(DUI_BOX, "messages"),
            json={
                "to": [HUGO_BOX], "subject": "Compte rendu — séjour", "text": "Bonjour Hugo,\n",
                "read_receipt": True, "notify": ["success", "failure"],
                "attachments": [{"filename": "résultats.bin", "content_type":
                                 "application/octet-stream", "content_base64": _b64(attachment)}],
            },
        )  # fmt: skip
        assert sent.status_code == 202, sent.text
        status = sent.json()
        assert status["recipients"][0]["address"] == HUGO_BOX
        assert sent.headers["location"].endswith(f"/sent/{status['id']}")
        # Over SMTP to beta, then over IMAP: the message is there.
        hugo_token = provider.mint_access_token(HUGO.id_nat_ps)
        async with _client(space, "beta", hugo_token) as hugo:
            items = await _wait_items(hugo, HUGO_BOX, 1)
            assert items[0]["subject"] == "Compte rendu — séjour" and not items[0]["seen"]
            assert items[0]["from"] == DUI_BOX and items[0]["attachments_count"] == 1
            flags = await asyncio.to_thread(_imap_flags, space, "INBOX")
            assert b"\\Seen" not in flags[0]
            mid = items[0]["id"]
            detail = await hugo.get(_url(HUGO_BOX, "messages", mid))
            assert detail.status_code == 200, detail.text
            body = detail.json()
            assert body["text"].startswith("Bonjour Hugo")
            assert body["headers"]["Disposition-Notification-To"] == [DUI_BOX]
            assert body["read_receipt_requested"] and body["read_receipt_sent"]
            (info,) = body["attachments"]
            assert info["filename"] == "résultats.bin" and info["size"] == len(attachment)
            download = await hugo.get(info["url"])
            assert download.status_code == 200 and download.content == attachment
            # Reading marked it \Seen for IMAP too; a second read sends no second MDN.
            flags = await asyncio.to_thread(_imap_flags, space, "INBOX")
            assert b"\\Seen" in flags[0] and b"$MDNSent" in flags[0]
            again = await hugo.get(_url(HUGO_BOX, "messages", mid))
            assert again.json()["read_receipt_sent"]
            # The MDN "displayed" (R25) reaches the sender's INBOX on alpha.
            reports = await _wait_items(dui, DUI_BOX, 2)  # the MDN and the success DSN
            (mdn,) = [r for r in reports if r["subject"].startswith("Accusé de lecture")]
            report = (await dui.get(_url(DUI_BOX, "messages", mdn["id"]))).json()
            assert "disposition-notification" in report["headers"]["Content-Type"][0]
            assert any(r["from"].startswith("MAILER-DAEMON@") for r in reports)  # NOTIFY=SUCCESS
            await asyncio.sleep(0.5)
            assert len(await _items(dui, DUI_BOX)) == 2  # only one MDN
            assert (await hugo.post(_url(HUGO_BOX, "messages", mid, "receipt"))).status_code == 409

            # Flags both ways: API → IMAP and IMAP → API.
            patched = await hugo.patch(
                _url(HUGO_BOX, "messages", mid), json={"flagged": True, "seen": False}
            )
            assert patched.status_code == 200 and "\\Flagged" in patched.json()["flags"]
            flags = await asyncio.to_thread(_imap_flags, space, "INBOX")
            assert b"\\Flagged" in flags[0] and b"\\Seen" not in flags[0]

            def imap_answered() -> None:
                client = _imap(space, HUGO_BOX)
                client.select("INBOX")
                client.store("1", "+FLAGS", "(\\Answered)")
                client.logout()

            await asyncio.to_thread(imap_answered)
            (item,) = await _items(hugo, HUGO_BOX, unread="true")
            assert "\\Answered" in item["flags"]
            # Move, then delete (to Trash), then delete for good.
            moved = await hugo.patch(_url(HUGO_BOX, "messages", mid), json={"folder": "Archive"})
            assert moved.status_code == 200 and moved.json()["folder"] == "Archive"
            assert await _items(hugo, HUGO_BOX) == []
            assert len(await asyncio.to_thread(_imap_flags, space, "Archive")) == 1
            new_id = moved.json()["id"]
            assert (await hugo.delete(_url(HUGO_BOX, "messages", new_id))).status_code == 204
            (trashed,) = await _items(hugo, HUGO_BOX, folder="Trash")
            assert (await hugo.delete(_url(HUGO_BOX, "messages", trashed["id"]))).status_code == 204
            assert await _items(hugo, HUGO_BOX, folder="Trash") == []
            folders = (await hugo.get(_url(HUGO_BOX, "folders"))).json()
            assert {f["name"]: f["total"] for f in folders}["Archive"] == 0


async def _document() -> bytes:
    shared = SHARED_DATA / "cda" / "examples" / "LDL-SES_2022.01.xml"
    if shared.is_file():
        return shared.read_bytes()
    return resources.files("mssante.data").joinpath("cda/LDL-SES-DEMO.xml").read_bytes()


async def test_documents_filters_and_paging(space: LocalTrustSpace, provider: DemoProvider) -> None:
    cda = await _document()
    camille = _client(space, "alpha", provider.mint_access_token(CAMILLE.id_nat_ps))
    lea = _client(space, "alpha", provider.mint_access_token(LEA.id_nat_ps))
    async with camille, lea:
        sent = await camille.post(
            _url(CAMILLE_BOX, "messages"),
            json={
                "to": [LEA_BOX], "text": "Lettre de liaison ci-jointe.",
                "use_case": "hopital-lettre-liaison-sortie",
                "documents": [{"filename": "ldl.xml", "content_type": "text/xml",
                               "content_base64": _b64(cda)}],
            },
        )  # fmt: skip
        assert sent.status_code == 202, sent.text
        assert sent.json()["recipients"][0]["status"] == "delivered"  # local BAL
        for n in range(5):
            answer = await camille.post(
                _url(CAMILLE_BOX, "messages"), json={"to": [LEA_BOX], "subject": f"Note {n}"}
            )
            assert answer.status_code == 202, answer.text
        everything = await _items(lea, LEA_BOX)
        assert len(everything) == 6 and everything[0]["subject"] == "Note 4"  # newest first
        (doc_item,) = [i for i in everything if i["has_documents"]]
        assert doc_item["subject"].startswith("XDM/1.0/DDM+")  # R41
        detail = (await lea.get(_url(LEA_BOX, "messages", doc_item["id"]))).json()
        assert detail["headers"]["X-MSS-CODECDA"] and detail["headers"]["X-MSS-INS"] == ["O"]
        (document,) = detail["documents"]
        assert document["type_code"] == "11490-0" and document["patient_ins"]
        names = [a["filename"] for a in detail["attachments"]]
        assert "IHE_XDM.ZIP" in names
        content = await lea.get(document["url"])
        assert content.status_code == 200 and content.content == cda
        # Filters: patient INS, document type, unread, since; then cursor paging to the end.
        ins = document["patient_ins"]
        assert [i["id"] for i in await _items(lea, LEA_BOX, patient_ins=ins)] == [doc_item["id"]]
        assert await _items(lea, LEA_BOX, patient_ins="100000000000000") == []
        assert len(await _items(lea, LEA_BOX, document_type="11490-0")) == 1
        assert len(await _items(lea, LEA_BOX, unread="true")) == 5  # the document was read
        assert len(await _items(lea, LEA_BOX, unread="false")) == 1
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert await _items(lea, LEA_BOX, since=future) == []
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        assert len(await _items(lea, LEA_BOX, since=past)) == 6
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 4}
            if cursor:
                params["cursor"] = cursor
            page = (await lea.get(_url(LEA_BOX, "messages"), params=params)).json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [i["id"] for i in everything]
        bad = await lea.get(_url(LEA_BOX, "messages"), params={"cursor": "pas-un-curseur"})
        _assert_problem(bad, 422, "invalid-request")
        # Documents index follows a move (patient filter in the new folder).
        await lea.patch(_url(LEA_BOX, "messages", doc_item["id"]), json={"folder": "Archive"})
        assert len(await _items(lea, LEA_BOX, folder="Archive", patient_ins=ins)) == 1


# -- authorisation and problems ---------------------------------------------------------------


async def test_authorisation(space: LocalTrustSpace, provider: DemoProvider) -> None:
    camille = _client(space, "alpha", provider.mint_access_token(CAMILLE.id_nat_ps))
    lea = _client(space, "alpha", provider.mint_access_token(LEA.id_nat_ps))
    dui = _client(space, "alpha", await _app_token(space))
    anonymous = _client(space, "alpha")
    async with camille, lea, dui, anonymous:
        sent = await lea.post(
            _url(LEA_BOX, "messages"),
            json={"to": [CAMILLE_BOX], "subject": "Privé", "attachments": [
                {"filename": "a.txt", "content_type": "text/plain", "content_base64": _b64(b"x")}
            ]},
        )  # fmt: skip
        assert sent.status_code == 202
        (item,) = await _items(camille, CAMILLE_BOX)
        mid = item["id"]
        for who in (lea, dui):  # a token for A: B's messages do not exist
            for path in ("messages", f"messages/{mid}", f"messages/{mid}/attachments/0", "folders"):
                _assert_problem(await who.get(_url(CAMILLE_BOX, path)), 404, "not-found")
            _assert_problem(
                await who.patch(_url(CAMILLE_BOX, "messages", mid), json={"seen": True}),
                404, "not-found",
            )  # fmt: skip
            _assert_problem(await who.delete(_url(CAMILLE_BOX, "messages", mid)), 404, "not-found")
            forbidden = await who.post(
                _url(CAMILLE_BOX, "messages"), json={"to": [LEA_BOX], "subject": "Usurpation"}
            )
            _assert_problem(forbidden, 403, "forbidden")
        # An id of Camille's folder under Léa's own BAL: not found either.
        _assert_problem(await lea.get(_url(LEA_BOX, "messages", mid)), 404, "not-found")
        missing = await anonymous.get(_url(CAMILLE_BOX, "messages"))
        _assert_problem(missing, 401, "unauthenticated")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        bogus = _client(space, "alpha", "not-a-token")
        async with bogus:
            _assert_problem(await bogus.get(_url(CAMILLE_BOX, "messages")), 401, "unauthenticated")
        # Problems of the send itself: invalid JSON, unknown recipient, media type.
        bad = await camille.post(_url(CAMILLE_BOX, "messages"), json={"to": "pas une liste"})
        _assert_problem(bad, 400, "invalid-request")
        unknown = await camille.post(
            _url(CAMILLE_BOX, "messages"), json={"to": ["personne@alpha.mssante.fr"]}
        )
        assert (
            "personne@alpha.mssante.fr"
            in _assert_problem(unknown, 422, "invalid-request")["detail"]
        )
        outside = await camille.post(
            _url(CAMILLE_BOX, "messages"), json={"to": ["x@ailleurs.example.fr"]}
        )
        _assert_problem(outside, 422, "not-in-trust-space")
        text = await camille.post(
            _url(CAMILLE_BOX, "messages"), content=b"hello", headers={"content-type": "text/plain"}
        )
        _assert_problem(text, 415, "unsupported-media-type")
        schema = (await anonymous.get("/api/openapi.json")).json()
        assert schema["openapi"].startswith("3.1")
        assert "bearer" in schema["components"]["securitySchemes"]
        assert "/openapi.json" not in schema["paths"]
        assert (await anonymous.get("/openapi.json")).status_code == 200
        docs = await anonymous.get("/api/docs")
        assert docs.status_code == 200 and "/api/v1/mailboxes/{address}/messages" in docs.text


# -- limits (R28, R29) ------------------------------------------------------------------------


async def test_size_limits(space: LocalTrustSpace, provider: DemoProvider) -> None:
    a = _op(space, "alpha")
    before = await asyncio.to_thread(_envelopes, a)
    async with _client(space, "alpha", await _app_token(space)) as dui:
        big = await dui.post(
            _url(DUI_BOX, "messages"),
            json={"to": [HUGO_BOX], "attachments": [{"filename": "big.bin",
                  "content_base64": _b64(b"\0" * (APP_LIMIT + 1))}]},
        )  # fmt: skip
        _assert_problem(big, 413, "message-too-large")
        streamed = await dui.post(
            _url(DUI_BOX, "messages"),
            data={"message": '{"to": ["' + HUGO_BOX + '"]}'},
            files={"attachment": ("big.bin", b"\0" * (APP_LIMIT + 1), "application/octet-stream")},
        )
        _assert_problem(streamed, 413, "message-too-large")
    # R29: 25 MiB towards a patient, refused with an explicit message before anything is kept.
    huge = b"\0" * (25 * 1024 * 1024 + 1)
    async with _client(space, "alpha", provider.mint_access_token(CAMILLE.id_nat_ps)) as camille:
        answer = await camille.post(
            _url(CAMILLE_BOX, "messages"),
            files={
                "message": (None, '{"to": ["' + PATIENT + '"], "subject": "Imagerie"}',
                            "application/json"),
                "attachment": ("irm.bin", huge, "application/octet-stream"),
            },
        )  # fmt: skip
        detail = _assert_problem(answer, 413, "message-too-large")["detail"]
        assert "patient" in detail and "25 Mo" in detail
        small = await camille.post(
            _url(CAMILLE_BOX, "messages"),
            json={"to": [PATIENT], "subject": "Rendez-vous", "attachments": [
                {"filename": "x.bin", "content_base64": _b64(b"\0" * 19_500_000)}]},
        )  # fmt: skip
        assert "patient" in _assert_problem(small, 413, "message-too-large")["detail"]
    assert await asyncio.to_thread(_envelopes, a) == before  # nothing queued


# -- idempotency ------------------------------------------------------------------------------


async def test_idempotency_across_restart(space: LocalTrustSpace) -> None:
    token = await _app_token(space)
    request = {"to": [HUGO_BOX], "subject": "Une seule fois", "text": "Idempotent."}
    headers = {"Idempotency-Key": "envoi-2026-0001"}
    async with _client(space, "alpha", token) as dui:
        first = await dui.post(_url(DUI_BOX, "messages"), json=request, headers=headers)
        assert first.status_code == 202, first.text
        again = await dui.post(_url(DUI_BOX, "messages"), json=request, headers=headers)
        assert again.status_code == 202 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = await dui.post(
            _url(DUI_BOX, "messages"), json={**request, "text": "Autre."}, headers=headers
        )
        _assert_problem(other, 422, "idempotency-conflict")
        # The same files inline or as multipart parts are the same request.
        inline = {**request, "attachments": [{"filename": "a.txt", "content_type": "text/plain",
                                               "content_base64": _b64(b"abc")}]}  # fmt: skip
        key2 = {"Idempotency-Key": "envoi-2026-0002"}
        one = await dui.post(_url(DUI_BOX, "messages"), json=inline, headers=key2)
        two = await dui.post(
            _url(DUI_BOX, "messages"),
            headers=key2,
            files={
                "message": (None, '{"to": ["' + HUGO_BOX + '"], "subject": "Une seule fois", '
                            '"text": "Idempotent."}', "application/json"),
                "attachment": ("a.txt", b"abc", "text/plain"),
            },
        )  # fmt: skip
        assert one.status_code == two.status_code == 202 and one.json() == two.json()
        sent = await _items(dui, DUI_BOX, folder="Sent")
        assert len(sent) == 2
    # Restart alpha on the same data: the key is still known, nothing is sent again.
    local = space["alpha.mssante.fr"]
    assert local.operator is not None
    await local.operator.stop()
    local.operator = Operator(local.config)
    await local.operator.start()
    space.connect_routes()
    async with _client(space, "alpha", token) as dui:
        after = await dui.post(_url(DUI_BOX, "messages"), json=request, headers=headers)
        assert after.status_code == 202 and after.json() == first.json()
        assert len(await _items(dui, DUI_BOX, folder="Sent")) == 2
    b = _op(space, "beta")
    await wait_for(lambda: len(b.services.store.list(HUGO_BOX)) >= 2)
    await asyncio.sleep(0.3)
    assert len(b.services.store.list(HUGO_BOX)) == 2
