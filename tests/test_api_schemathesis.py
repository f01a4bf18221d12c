"""Schemathesis over the integration API's OpenAPI document: no 5xx, no answer outside it.

One running operator (SQLite or PostgreSQL per MSSANTE_TEST_DB) with an APP BAL and its
OAuth2 client; every operation of the published OpenAPI under ``/api/`` (and the directory
suggest route) is called over real HTTPS with generated inputs and the APP BAL's bearer
token. Mailbox path parameters are pinned to that BAL for most cases (so the routes get past
the scope check and reach their own validation) and generated for the others. The run is
bounded (derandomized, a few dozen examples per operation) and every failure of every
operation is collected, so that one run reports them all.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import ALPHA
from mssante.client import Client
from mssante.domain.mailboxes import MailboxType
from mssante.testing.clients import seed_structure_mailbox
from mssante.testing.trust_space import LocalTrustSpace

APP = "dui@alpha.mssante.fr"
FINESS = "1750000010"
PASSWORD = "un mot de passe tres long"
MAX_EXAMPLES = 25
# Every operation: no 5xx, and an answer that matches its documented schema.
CHECKS = [not_a_server_error, response_schema_conformance]
# The integration API of issue 7 documents every status and media type it answers with.
STRICT_PREFIX = "/api/v1/mailboxes/"
STRICT_CHECKS = [*CHECKS, status_code_conformance, content_type_conformance]
VALID_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/mailboxes/{address}/messages"): {
        "to": [APP],
        "subject": "Message de test",
        "text": "Bonjour",
        "attachments": [
            {"filename": "a.txt", "content_type": "text/plain", "content_base64": "YQo="}
        ],
    },
}


def _schema_path(base_url: str, ca_file: Path) -> str:
    for path in ("/api/openapi.json", "/openapi.json"):
        if httpx.get(
            base_url + path, verify=ssl.create_default_context(cafile=str(ca_file))
        ).is_success:
            return path
    raise AssertionError("no OpenAPI document published")


@dataclass
class Target:
    space: LocalTrustSpace
    url: str
    token: str
    # real identifiers to pin path parameters to: name -> values
    pins: dict[str, list[str]] = field(default_factory=dict)


def _existing_objects(url: str, ca_file: Path, client_id: str, secret: str) -> dict[str, list[str]]:
    """Messages, a sent message, a subscription and its delivery log, made with the SDK."""
    with Client(url, client_id=client_id, client_secret=secret, verify=ca_file) as api:
        sub = api.subscribe(APP, "http://127.0.0.1:9/unreachable", ["message.received"])
        sent = [
            api.send(
                APP, [APP], f"Message {i}", "Bonjour", attachments=[("a.txt", b"a\n", "text/plain")]
            )
            for i in range(3)
        ]
        deadline = time.monotonic() + 30
        ids: list[str] = []
        deliveries: list[str] = []
        while time.monotonic() < deadline and (len(ids) < 3 or not deliveries):
            ids = [m.id for m in api.list_messages(APP)]
            deliveries = [d.id for d in api.deliveries(APP, sub.id)]
            time.sleep(0.1)
        assert len(ids) >= 3 and deliveries, "setup: messages or webhook deliveries missing"
    return {
        "address": [APP],
        "mailbox": [APP],
        "message_id": ids,
        "send_id": [s.id for s in sent],
        "subscription_id": [sub.id],
        "delivery_id": deliveries,
        "index": ["0"],
    }


@pytest.fixture
async def target(tmp_path: Path, database_url: Callable[[], str]) -> AsyncIterator[Target]:
    space = LocalTrustSpace.create(tmp_path / "space", [ALPHA], database_urls=[database_url()])
    await space.start()
    try:
        op = space.operators[0].operator
        assert op is not None and op.http_url
        await asyncio.to_thread(
            seed_structure_mailbox,
            op.services.mailboxes,
            APP,
            FINESS,
            "CH Alpha",
            PASSWORD,
            type=MailboxType.APP,
        )
        client_id, secret = await asyncio.to_thread(
            op.services.machine_credentials.create_client, APP, actor="test"
        )
        issued = await asyncio.to_thread(
            op.services.machine_credentials.issue_token, client_id, secret
        )
        pins = await asyncio.to_thread(
            _existing_objects, op.http_url, space.ca_file, client_id, secret
        )
        yield Target(space, op.http_url, issued.access_token, pins)
    finally:
        await space.stop()


def _operations(schema: Any) -> list[Any]:
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/api/") or operation.path == "/annuaire/suggest":
            found.append(operation)
    # Reads first; what moves or removes the pinned objects last.
    order = {"GET": 0, "POST": 1, "PATCH": 2, "DELETE": 3}
    return sorted(found, key=lambda o: order.get(o.method.upper(), 1))


def _strategy(operation: Any, pins: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Mostly real identifiers (the token's BAL, existing messages…) so that the routes get
    past the scope and lookup checks; one time in four, generated ones (404/403 paths)."""
    names = [p.name for p in operation.path_parameters]
    pinnable = [n for n in names if n in pins]
    if not pinnable:
        return operation.as_strategy()
    pinned = [
        operation.as_strategy(path_parameters={n: pins[n][k % len(pins[n])] for n in pinnable})
        for k in range(3)
    ]
    body = VALID_BODIES.get((operation.method.upper(), operation.path))
    if body is not None:  # a valid send too, not only rejected ones
        mailbox = {n: pins[n][0] for n in pinnable}
        # first: Hypothesis draws the first branches of one_of more often
        pinned.insert(
            0,
            operation.as_strategy(
                path_parameters=mailbox, body=body, media_type="application/json"
            ),
        )
    return st.one_of(*pinned, operation.as_strategy())


def _check_operation(strategy: st.SearchStrategy[Any], call: dict[str, Any]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(**call)

    run()


def _fuzz(base_url: str, ca_file: Path, token: str, pins: dict[str, list[str]]) -> list[str]:
    schema = schemathesis.openapi.from_url(
        base_url + _schema_path(base_url, ca_file), verify=str(ca_file)
    )
    session = requests.Session()
    session.verify = str(ca_file)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = _operations(schema)
    assert operations, "the OpenAPI document lists no /api/ operation"
    for operation in operations:
        checks = STRICT_CHECKS if operation.path.startswith(STRICT_PREFIX) else CHECKS
        call = {"base_url": base_url, "session": session, "headers": headers,
                "checks": checks, "verify": str(ca_file)}  # fmt: skip
        try:
            _check_operation(_strategy(operation, pins), call)
        except BaseException as exc:  # collect, then report every operation at once
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.method.upper()} {operation.path}:\n{exc}")
    return failures


async def test_api_conforms_to_its_openapi(target: Target) -> None:
    failures = await asyncio.to_thread(
        _fuzz, target.url, target.space.ca_file, target.token, target.pins
    )
    assert not failures, "\n\n".join(failures)


async def test_openapi_document_is_published(target: Target) -> None:
    ctx = ssl.create_default_context(cafile=str(target.space.ca_file))
    async with httpx.AsyncClient(verify=ctx) as client:
        answer = await client.get(target.url + "/api/openapi.json")
        docs = await client.get(target.url + "/api/docs")
    document = answer.json()
    assert document["openapi"].startswith("3.")
    assert any(p.startswith("/api/v1/mailboxes/") for p in document["paths"]), json.dumps(document)[
        :300
    ]
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
