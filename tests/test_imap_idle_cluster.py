"""IDLE across processes sharing one PostgreSQL (LISTEN/NOTIFY, issue 4 §5): two operator
nodes on one database, mail accepted by one node is announced to an IDLE client of the other."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest

from conftest import ENGINE
from mssante.runtime import Operator
from mssante.testing.clients import make_message, seed_professional_mailbox, submit
from mssante.testing.trust_space import LocalTrustSpace

pytestmark = pytest.mark.skipif(ENGINE != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")

PW = "un mot de passe tres long"
CAMILLE = "camille.martin@alpha.mssante.fr"
LEA = "lea.dubois@alpha.mssante.fr"


async def test_idle_on_another_node(trust_space: LocalTrustSpace) -> None:
    first = trust_space["alpha.mssante.fr"]
    node1 = first.operator
    assert node1 and node1.submission
    boxes = node1.services.mailboxes
    await asyncio.to_thread(seed_professional_mailbox, boxes, CAMILLE, "10000000017", PW)
    await asyncio.to_thread(
        seed_professional_mailbox, boxes, LEA, "10000000025", PW,
        family_name="Dubois", given_name="Léa",
    )  # fmt: skip
    node2 = Operator(first.config, run_relay=False)  # same database, other ports
    await node2.start()
    try:
        assert node2.imaps is not None

        def run() -> float:
            ctx = ssl.create_default_context(cafile=str(trust_space.ca_file))
            raw = ctx.wrap_socket(
                socket.create_connection(("127.0.0.1", node2.imaps.port)),  # type: ignore[union-attr]
                server_hostname="127.0.0.1",
            )
            raw.settimeout(10)
            f = raw.makefile("rb")
            f.readline()
            raw.sendall(f'a LOGIN {LEA} "{PW}"\r\n'.encode())
            while not f.readline().startswith(b"a OK"):
                pass
            raw.sendall(b"b SELECT INBOX\r\nc IDLE\r\n")
            while not f.readline().startswith(b"+"):
                pass
            submit(
                "127.0.0.1", node1.submission.port, trust_space.ca_file, CAMILLE, PW,  # type: ignore[union-attr]
                CAMILLE, [LEA], make_message(CAMILLE, [LEA], subject="autre noeud"),
            )  # fmt: skip
            accepted = time.monotonic()
            line = f.readline()
            elapsed = time.monotonic() - accepted
            assert line.strip() == b"* 1 EXISTS", line
            raw.sendall(b"DONE\r\n")
            raw.close()
            return elapsed

        elapsed = await asyncio.to_thread(run)
        assert elapsed < 1.0
    finally:
        await node2.stop()
