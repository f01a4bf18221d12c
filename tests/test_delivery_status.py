"""Per-recipient delivery status (issue 7 item 3) and incoming reports (item 6).

``GET /api/v1/mailboxes/{address}/sent/{send_id}`` follows a message of an APP BAL of
operator alpha: the queue (queued, relayed, failed with the remote reply), the DSNs that
come back (RFC 3464: delivered, failed with the Diagnostic-Code), and the MDNs (RFC 8098:
read, processed, processed_with_error with the MSSanté code 900–906, R44), whether the
reader's mail client sends them over SMTP or the API's read sends them. A status never
moves backwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import pytest_asyncio
from sqlalchemy import select

from mssante.formats.dsn import RecipientStatus, build_dsn
from mssante.services import delivery_status
from mssante.services.delivery_status import RANK, StatusChange, may_replace
from mssante.storage.schema import deliveries
from mssante.testing.clients import make_message
from mssante.testing.postgres import PostgresServer
from webhook_helpers import (
    APP,
    LOCAL_PER,
    OTHER_APP,
    PER,
    Space,
    close_space,
    database_url_for,
    read_and_acknowledge,
    send_report_request,
    start_space,
    submit,
)

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def space(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer | None
) -> AsyncIterator[Space]:
    urls = [database_url_for(postgres) for _ in range(2)]
    started = await start_space(tmp_path_factory.mktemp("status") / "space", urls)
    try:
        yield started
    finally:
        await close_space(started)


def _recipient(status: dict[str, object], address: str) -> dict[str, object]:
    for item in status["recipients"]:  # type: ignore[attr-defined]
        if item["address"] == address:
            return dict(item)
    raise KeyError(address)


@module_loop
async def test_unknown_recipient_fails_with_the_remote_reply(space: Space) -> None:
    ghost = "personne@beta.mssante.fr"  # accepted at alpha (listed domain), unknown at beta
    send_id = await send_report_request(space, recipients=[ghost, PER])
    status = await space.wait_status(send_id, ghost, "failed")
    failed = _recipient(status, ghost)
    assert failed["code"] == "5.1.1", failed
    assert "550" in str(failed["reason"])
    await space.wait_status(send_id, PER, "delivered")


@module_loop
async def test_integration_error_mdn_gives_processed_with_error_902(space: Space) -> None:
    send_id = await send_report_request(space, subject="XDM/1.0/DDM+CR de consultation")
    await space.wait_status(send_id, PER, "delivered")
    await read_and_acknowledge(space, error_code="902")
    status = await space.wait_status(send_id, PER, "processed_with_error")
    item = _recipient(status, PER)
    assert item["code"] == "902"
    assert item["reason"] == "Identifiant patient inconnu"

    # A "processed" MDN without error (the software integrated it) of another message.
    second = await send_report_request(space, subject="Deuxième compte rendu")
    await space.wait_status(second, PER, "delivered")
    await read_and_acknowledge(space, disposition="processed")
    status = await space.wait_status(second, PER, "processed")
    assert "code" not in _recipient(status, PER)


@module_loop
async def test_failure_dsn_from_the_remote_side(space: Space) -> None:
    """A DSN with Action: failed sent back later (the recipient's system bounced it after
    accepting it) marks the recipient failed with its Diagnostic-Code."""
    data = make_message(APP, [PER], subject="Sans accusé")
    send_id = await submit(
        space.alpha, space.ca_file, APP, [PER], data, rcpt_options=["NOTIFY=NEVER"]
    )
    await space.wait_status(send_id, PER, "relayed")
    status = await space.status(send_id)
    headers = data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    dsn = build_dsn(
        reporting_mta="mx.beta.mssante.fr",
        from_address=PER,
        to_address=APP,
        recipients=[
            RecipientStatus(
                final_recipient=PER,
                action="failed",
                status="5.2.2",
                diagnostic_code="smtp; 552 5.2.2 boîte pleine",
            )
        ],
        original_headers=headers,
        original_message=None,
        ret="HDRS",
        envid=None,
        arrival_date=datetime.now(UTC),
        original_message_id=status["message_id"],
        original_subject="Sans accusé",
        message_id_domain="beta.mssante.fr",
    )
    await submit(space.beta, space.ca_file, PER, [APP], dsn)
    status = await space.wait_status(send_id, PER, "failed")
    item = _recipient(status, PER)
    assert item["code"] == "5.2.2" and "552" in str(item["reason"])


@module_loop
async def test_local_delivery_and_read_receipts(space: Space) -> None:
    # Local recipient over SMTP: delivered at once; its mail client's MDN makes it read.
    send_id = await send_report_request(space, recipients=[LOCAL_PER])
    status = await space.status(send_id)
    assert _recipient(status, LOCAL_PER)["status"] == "delivered"
    await read_and_acknowledge(space, LOCAL_PER, operator=space.alpha)
    await space.wait_status(send_id, LOCAL_PER, "read")

    # An APP BAL reading through the API: the API sends the MDN (R25) → read.
    send_id = await send_report_request(space, recipients=[OTHER_APP])
    box = f"/api/v1/mailboxes/{quote(OTHER_APP)}/messages"
    listed = await space.api("GET", box, token=space.other_token)
    assert listed.status_code == 200, listed.text
    (latest,) = [m for m in listed.json()["items"] if m["subject"] == "CR de consultation"]
    read = await space.api("GET", f"{box}/{latest['id']}", token=space.other_token)
    assert read.status_code == 200, read.text
    status = await space.wait_status(send_id, OTHER_APP, "read")
    assert status["mailbox"] == APP


@module_loop
async def test_status_never_moves_backwards(space: Space) -> None:
    send_id = await send_report_request(space, recipients=[LOCAL_PER])
    await read_and_acknowledge(space, LOCAL_PER, operator=space.alpha)
    await space.wait_status(send_id, LOCAL_PER, "read")
    services = space.alpha.services

    def late_reports() -> list[bool]:
        with services.db.write() as conn:
            envelope_id = delivery_status.find_sent(conn, APP, send_id)
            assert envelope_id is not None
            delivery_id = conn.execute(
                select(deliveries.c.id).where(deliveries.c.envelope_id == envelope_id)
            ).scalar_one()
            return [
                delivery_status.record(conn, envelope_id, StatusChange(delivery_id, status))
                for status in ("delivered", "failed", "relayed", "queued", "processed")
            ]

    assert await asyncio.to_thread(late_reports) == [False, False, False, False, True]
    status = await space.status(send_id)
    assert _recipient(status, LOCAL_PER)["status"] == "processed"


def test_rank_rules() -> None:
    assert may_replace(None, "queued")
    assert may_replace("queued", "relayed") and may_replace("relayed", "delivered")
    assert may_replace("failed", "delivered")  # a later success wins
    assert not may_replace("delivered", "failed")
    assert not may_replace("read", "delivered")
    assert may_replace("read", "processed_with_error")
    assert list(RANK) == [
        "queued",
        "relayed",
        "failed",
        "delivered",
        "read",
        "processed",
        "processed_with_error",
    ]
