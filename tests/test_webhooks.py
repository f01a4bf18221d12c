"""Webhooks of the integration API (issue 7 item 5), end to end on two operators.

An APP BAL of operator alpha subscribes a real HTTP receiver on 127.0.0.1 that checks
every signature; its messages to a PER BAL of operator beta come back as DSNs and MDNs
(beta's mail client reads over IMAP and sends the read receipt), which move the status and
fire signed ``message.status`` and ``message.received`` events. A receiver that is down
gets every event once it is back, in order per message.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from sqlalchemy import select

from mssante.services.delivery_status import RANK
from mssante.storage.schema import trace_events
from mssante.storage.schema_webhooks import webhook_subscriptions
from mssante.testing.postgres import PostgresServer
from mssante.webhook_signature import sign, signature_headers, verify_signature
from webhook_helpers import (
    APP,
    LOCAL_PER,
    OTHER_APP,
    PER,
    Receiver,
    Space,
    close_space,
    database_url_for,
    read_and_acknowledge,
    send_report_request,
    signed_calls_ok,
    start_space,
    tls_context,
    wait_until,
)

# One trust space for the module (starting two operators and hashing their passwords takes
# seconds); each test starts from no subscription.
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def space(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer | None
) -> AsyncIterator[Space]:
    urls = [database_url_for(postgres) for _ in range(2)]
    started = await start_space(tmp_path_factory.mktemp("webhooks") / "space", urls)
    try:
        yield started
    finally:
        await close_space(started)


@pytest_asyncio.fixture(loop_scope="module")
async def receiver(space: Space) -> AsyncIterator[Receiver]:
    await space.unsubscribe_all()
    found = Receiver()
    found.start()
    yield found
    found.stop()
    await space.unsubscribe_all()


def _forward_only(statuses: list[str]) -> bool:
    return all(RANK[a] < RANK[b] for a, b in itertools.pairwise(statuses))


@module_loop
async def test_report_to_read_fires_signed_webhooks(space: Space, receiver: Receiver) -> None:
    sub = await space.subscribe(receiver)
    assert sub["secret"] == receiver.secret and sub["url"] == receiver.url
    send_id = await send_report_request(space)

    # queued (at acceptance) → relayed → delivered (beta's success DSN, RFC 3461 §6.3)
    status = await space.wait_status(send_id, PER, "delivered")
    assert status["id"] == send_id and status["message_id"]
    await wait_until(lambda: "delivered" in receiver.statuses(send_id, PER))

    # beta's mail client reads over IMAP and sends the MDN (RFC 8098): "read".
    original = await read_and_acknowledge(space)
    assert b"Disposition-Notification-To: " + APP.encode() in original
    status = await space.wait_status(send_id, PER, "read")
    (recipient,) = status["recipients"]
    assert recipient["address"] == PER and recipient["updated_at"].endswith("Z")
    await wait_until(lambda: "read" in receiver.statuses(send_id, PER))

    statuses = receiver.statuses(send_id, PER)
    assert statuses[0] == "queued" and statuses[-1] == "read", statuses
    assert _forward_only(statuses), statuses
    # The DSN and the MDN themselves arrived in the APP's INBOX: message.received.
    await wait_until(lambda: len(receiver.events("message.received")) >= 2)
    received = receiver.events("message.received")
    assert all(e["mailbox"] == APP for e in receiver.events())
    assert {"id", "folder", "from", "subject", "received_at", "size"} <= set(received[0]["data"])
    assert received[0]["data"]["folder"] == "INBOX"
    signed_calls_ok(receiver)
    assert len({e["id"] for e in receiver.events()}) == len(receiver.events())  # each once


@module_loop
async def test_down_receiver_gets_every_event_in_order_once_back(
    space: Space, receiver: Receiver
) -> None:
    await space.subscribe(receiver)
    receiver.status = 503
    send_id = await send_report_request(space, subject="Premier message")
    await space.wait_status(send_id, PER, "delivered")
    await read_and_acknowledge(space)
    await space.wait_status(send_id, PER, "read")
    second = await send_report_request(space, subject="Second message")
    await space.wait_status(second, PER, "delivered")
    # Several refused attempts, then the port closes altogether.
    await wait_until(lambda: len(receiver.calls) >= 3)
    port = receiver.port
    receiver.stop()
    await asyncio.sleep(1.0)
    assert receiver.accepted() == []

    receiver.status = 200
    receiver.port = port
    receiver.start()
    await wait_until(lambda: len(receiver.statuses(send_id, PER)) >= 3, timeout=30)
    await wait_until(lambda: "read" in receiver.statuses(send_id, PER), timeout=30)
    await wait_until(lambda: "delivered" in receiver.statuses(second, PER), timeout=30)
    await wait_until(lambda: len(receiver.events("message.received")) >= 3, timeout=30)

    for sent in (send_id, second):
        statuses = receiver.statuses(sent, PER)
        assert statuses[0] == "queued", statuses
        assert _forward_only(statuses), statuses  # in order, and no event twice
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == len(set(ids))
    signed_calls_ok(receiver)

    # The delivery log shows the attempts; in the end nothing is left pending.
    sub_id = (await space.api("GET", f"/api/v1/mailboxes/{quote(APP)}/webhooks")).json()[0]["id"]
    path = f"/api/v1/mailboxes/{quote(APP)}/webhooks/{sub_id}/deliveries"
    items: list[dict[str, object]] = []
    for _ in range(300):
        log = await space.api("GET", path, params={"limit": 200})
        assert log.status_code == 200
        items = log.json()["items"]
        if items and all(i["status"] == "delivered" for i in items):
            break
        await asyncio.sleep(0.1)
    assert items and all(i["status"] == "delivered" for i in items), items
    assert len(receiver.accepted()) == len(items)  # every event once, none twice
    assert max(int(str(i["attempts"])) for i in items) >= 2
    assert any(int(str(i["attempts"])) > 1 and i["last_status_code"] == 200 for i in items)


@module_loop
async def test_replay_and_delivery_log(space: Space, receiver: Receiver) -> None:
    sub = await space.subscribe(receiver)
    send_id = await send_report_request(space)
    await wait_until(lambda: receiver.statuses(send_id, PER))
    base = f"/api/v1/mailboxes/{quote(APP)}/webhooks/{sub['id']}/deliveries"
    page = await space.api("GET", base, params={"limit": 1})
    assert page.status_code == 200
    body = page.json()
    assert len(body["items"]) == 1
    first = body["items"][0]
    assert first["status"] in ("pending", "delivered") and first["event"] == "message.status"
    await wait_until(lambda: len(receiver.accepted()) >= 1)

    oldest = (await space.api("GET", base, params={"limit": 200})).json()["items"][-1]
    await wait_until(lambda: any(c.event["id"] == oldest["event_id"] for c in receiver.accepted()))
    replay = await space.api("POST", f"{base}/{oldest['id']}/replay")
    assert replay.status_code == 202, replay.text
    assert replay.json()["event_id"] == oldest["event_id"]
    assert replay.json()["id"] != oldest["id"]
    await wait_until(
        lambda: sum(c.event["id"] == oldest["event_id"] for c in receiver.accepted()) == 2
    )
    signed_calls_ok(receiver)

    missing = await space.api("POST", f"{base}/999999999/replay")
    assert missing.status_code == 404
    bad_cursor = await space.api("GET", base, params={"cursor": "abc"})
    assert bad_cursor.status_code == 400


@module_loop
async def test_scope_url_rules_and_delete(space: Space, receiver: Receiver) -> None:
    path = f"/api/v1/mailboxes/{quote(APP)}/webhooks"
    body = {"url": receiver.url, "events": ["message.status"]}
    # Another BAL's token: its webhooks do not exist for it; it may not manage them.
    assert (await space.api("GET", path, token=space.other_token)).status_code == 404
    assert (await space.api("POST", path, token=space.other_token, json=body)).status_code == 403
    send_id = await send_report_request(space)
    status_path = f"/api/v1/mailboxes/{quote(APP)}/sent/{send_id}"
    assert (await space.api("GET", status_path, token=space.other_token)).status_code == 404
    other_path = f"/api/v1/mailboxes/{quote(OTHER_APP)}/sent/{send_id}"
    assert (await space.api("GET", other_path, token=space.other_token)).status_code == 404
    assert (await space.api("GET", f"/api/v1/mailboxes/{quote(APP)}/sent/nope")).status_code == 404
    unauthenticated = await space.client.get(path)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"].startswith("Bearer")

    for url in (
        "http://webhooks.example.org/x",  # http outside loopback
        "ftp://127.0.0.1/x",
        "https://user:pass@example.org/x",
        "not a url",
    ):
        refused = await space.api("POST", path, json={**body, "url": url})
        assert refused.status_code == 422, (url, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"] == "https://mssante.fr/problems/invalid-request"
    generated = await space.api("POST", path, json={"url": "https://hooks.example.org/mss"})
    assert generated.status_code == 201
    created = generated.json()
    assert created["secret"].startswith("whsec_") and created["events"] == [
        "message.received",
        "message.status",
    ]
    assert generated.headers["location"].endswith(created["id"])
    # The secret is kept sealed, and never traced.
    with space.alpha.services.db.read() as conn:
        stored = conn.execute(select(webhook_subscriptions.c.secret)).scalars().all()
        traced = conn.execute(select(trace_events.c.detail)).scalars().all()
    assert stored and all(created["secret"] not in value for value in stored)
    assert all(created["secret"] not in (detail or "") for detail in traced)
    listed = (await space.api("GET", path)).json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert (
        await space.api("DELETE", f"{path}/{created['id']}", token=space.other_token)
    ).status_code == 403
    assert (await space.api("DELETE", f"{path}/{created['id']}")).status_code == 204
    assert (await space.api("DELETE", f"{path}/{created['id']}")).status_code == 404
    assert (await space.api("GET", path)).json() == []
    short = await space.api("POST", path, json={**body, "secret": "short"})
    assert short.status_code in (400, 422)


@module_loop
async def test_https_subscriber_verified_against_the_configured_ca(
    space: Space, receiver: Receiver, tmp_path: Path
) -> None:
    secure = Receiver(tls=tls_context(space, tmp_path))
    secure.start()
    rogue = Receiver(tls=tls_context(space, tmp_path, trusted=False))
    rogue.start()
    try:
        await space.subscribe(secure)
        bad = await space.subscribe(rogue)
        send_id = await send_report_request(space, recipients=[LOCAL_PER])
        await wait_until(lambda: "delivered" in secure.statuses(send_id, LOCAL_PER))
        signed_calls_ok(secure)
        log = f"/api/v1/mailboxes/{quote(APP)}/webhooks/{bad['id']}/deliveries"

        async def refused() -> bool:
            items = (await space.api("GET", log)).json()["items"]
            return bool(items) and "TLS" in str(items[-1].get("last_error"))

        for _ in range(100):
            if await refused():
                break
            await asyncio.sleep(0.1)
        assert await refused()
        assert rogue.calls == []  # the handshake failed: nothing was sent
    finally:
        secure.stop()
        rogue.stop()


def test_signature_rules() -> None:
    body = b'{"id":"e1","type":"message.status"}'
    headers = signature_headers("e1", "s3cret-s3cret-s3cret", body, timestamp=1_700_000_000)
    stamp = headers["MSSante-Webhook-Timestamp"]
    header = headers["MSSante-Webhook-Signature"]
    assert header == sign("s3cret-s3cret-s3cret", 1_700_000_000, body)
    assert header.startswith("v1=") and len(header) == 3 + 64
    ok = verify_signature("s3cret-s3cret-s3cret", stamp, body, header, now=1_700_000_100)
    assert ok
    assert not verify_signature("other-secret-value", stamp, body, header, now=1_700_000_100)
    assert not verify_signature("s3cret-s3cret-s3cret", stamp, body + b" ", header, now=1.7e9)
    assert not verify_signature("s3cret-s3cret-s3cret", stamp, body, header, now=1_700_001_000)
    assert verify_signature("s3cret-s3cret-s3cret", stamp, body, header, tolerance=0)
    assert verify_signature(
        "s3cret-s3cret-s3cret", stamp, body, f"v1=deadbeef, {header}", now=1_700_000_000
    )
    assert not verify_signature("s3cret-s3cret-s3cret", "x", body, header)
    assert not verify_signature("s3cret-s3cret-s3cret", stamp, body, None)
