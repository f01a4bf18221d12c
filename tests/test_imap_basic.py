"""The IMAP server with Python's imaplib: TLS rules (R12), the folders, FETCH/STORE/SEARCH,
MOVE, UID EXPUNGE, CONDSTORE, IDLE, and ORG mailboxes with per-user \\Seen (issue 4)."""

from __future__ import annotations

import asyncio
import imaplib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from conftest import ALPHA
from mssante.testing.clients import (
    make_message,
    seed_professional_mailbox,
    seed_structure_mailbox,
    submit,
)
from mssante.testing.trust_space import LocalTrustSpace

PW = "un mot de passe tres long"
CAMILLE = "camille.martin@alpha.mssante.fr"
LEA = "lea.dubois@alpha.mssante.fr"
ORG = "secretariat@alpha.mssante.fr"


@pytest.fixture
async def space(tmp_path: Path, database_url: Callable[[], str]) -> AsyncIterator[LocalTrustSpace]:
    built = LocalTrustSpace.create(tmp_path / "s", [ALPHA], database_urls=[database_url()])
    await built.start()
    op = built.operators[0].operator
    assert op is not None
    boxes = op.services.mailboxes
    await asyncio.to_thread(seed_professional_mailbox, boxes, CAMILLE, "10000000017", PW)
    await asyncio.to_thread(
        seed_professional_mailbox,
        boxes,
        LEA,
        "10000000025",
        PW,
        family_name="Dubois",
        given_name="Léa",
    )
    await asyncio.to_thread(seed_structure_mailbox, boxes, ORG, "1750000028", "CH Alpha", PW)
    await asyncio.to_thread(boxes.add_member, ORG, CAMILLE)
    await asyncio.to_thread(boxes.add_member, ORG, LEA)
    try:
        yield built
    finally:
        await built.stop()


def _op(space: LocalTrustSpace):  # type: ignore[no-untyped-def]
    op = space.operators[0].operator
    assert op is not None and op.imap and op.imaps and op.submission
    return op


def _login(space: LocalTrustSpace, user: str) -> imaplib.IMAP4_SSL:
    op = _op(space)
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    client = imaplib.IMAP4_SSL("127.0.0.1", op.imaps.port, ssl_context=ctx, timeout=30)
    client.login(user, PW)
    return client


async def _deliver(space: LocalTrustSpace, to: str, subject: str) -> None:
    op = _op(space)
    await asyncio.to_thread(
        submit,
        "127.0.0.1",
        op.submission.port,
        space.ca_file,
        CAMILLE,
        PW,
        CAMILLE,
        [to],
        make_message(CAMILLE, [to], subject=subject),
    )


async def test_login_disabled_before_tls(space: LocalTrustSpace) -> None:
    op = _op(space)

    def run() -> tuple[tuple[str, ...], str]:
        client = imaplib.IMAP4("127.0.0.1", op.imap.port, timeout=30)
        caps = client.capabilities
        try:
            client.login(CAMILLE, PW)
            outcome = "accepted"
        except imaplib.IMAP4.error as exc:
            outcome = str(exc)
        client.starttls(ssl_context=ssl.create_default_context(cafile=str(space.ca_file)))
        client.login(CAMILLE, PW)
        client.logout()
        return caps, outcome

    caps, outcome = await asyncio.to_thread(run)
    assert "LOGINDISABLED" in caps and "STARTTLS" in caps
    assert "PRIVACYREQUIRED" in outcome


async def test_folders_fetch_store_search_move(space: LocalTrustSpace) -> None:
    await _deliver(space, LEA, "Compte rendu de consultation")
    await _deliver(space, LEA, "Lettre de liaison")

    def run() -> None:
        c = _login(space, LEA)
        typ, listing = c.list()
        names = b" ".join(listing)
        for special in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Archive"):
            assert special in names
        assert c.select("INBOX")[1] == [b"2"]
        typ, data = c.uid("SEARCH", None, "SUBJECT", "liaison")
        assert data[0].split() == [b"2"]
        typ, data = c.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"Compte rendu" in data[0][1] and b"\\Seen" not in data[0][0]
        typ, data = c.fetch("1", "(BODY[TEXT])")  # not a peek: marks \Seen
        typ, data = c.fetch("1", "(FLAGS)")
        assert b"\\Seen" in data[0]
        c.store("2", "+FLAGS", "(\\Flagged)")
        typ, data = c.uid("MOVE", "2", "Archive")
        assert typ == "OK"
        assert c.select("Archive")[1] == [b"1"]
        typ, data = c.fetch("1", "(FLAGS)")
        assert b"\\Flagged" in data[0]
        c.store("1", "+FLAGS", "(\\Deleted)")
        typ, data = c.uid("EXPUNGE", "1")
        assert typ == "OK"
        assert c.select("Archive")[1] == [b"0"]
        c.logout()

    await asyncio.to_thread(run)


async def test_condstore_changedsince(space: LocalTrustSpace) -> None:
    await _deliver(space, LEA, "un")
    await _deliver(space, LEA, "deux")

    def run() -> None:
        c = _login(space, LEA)
        c.select("INBOX")
        highest = int(c.untagged_responses["HIGHESTMODSEQ"][0])
        c.store("2", "+FLAGS", "(\\Answered)")
        _typ, data = c.fetch("1:*", f"(UID FLAGS) (CHANGEDSINCE {highest})")
        lines = [d for d in data if d]
        assert len(lines) == 1 and b"\\Answered" in lines[0] and b"MODSEQ" in lines[0]
        c.logout()

    await asyncio.to_thread(run)


async def test_idle_hears_new_mail_within_a_second(space: LocalTrustSpace) -> None:
    op = _op(space)

    def run() -> float:
        ctx = ssl.create_default_context(cafile=str(space.ca_file))
        raw = ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", op.imaps.port)), server_hostname="127.0.0.1"
        )
        raw.settimeout(10)
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(f'a LOGIN {LEA} "{PW}"\r\n'.encode())
        while not f.readline().startswith(b"a OK"):
            pass
        raw.sendall(b"b SELECT INBOX\r\n")
        while not f.readline().startswith(b"b OK"):
            pass
        raw.sendall(b"c IDLE\r\n")
        assert f.readline().startswith(b"+")
        submit(
            "127.0.0.1",
            op.submission.port,
            space.ca_file,
            CAMILLE,
            PW,
            CAMILLE,
            [LEA],
            make_message(CAMILLE, [LEA], subject="pendant IDLE"),
        )
        accepted = time.monotonic()  # 250 received: the message is committed
        line = f.readline()
        elapsed = time.monotonic() - accepted
        assert line.strip() == b"* 1 EXISTS", line
        raw.sendall(b"DONE\r\n")
        assert f.readline().startswith(b"c OK")
        raw.close()
        return elapsed

    elapsed = await asyncio.to_thread(run)
    assert elapsed < 1.0  # issue 4 §5: within one second


async def test_org_mailbox_seen_is_per_user(space: LocalTrustSpace) -> None:
    await _deliver(space, ORG, "Pour le secretariat")
    shared = f'"Partages/{ORG}/INBOX"'

    def run() -> None:
        camille = _login(space, CAMILLE)
        assert camille.select(shared)[0] == "OK"
        camille.fetch("1", "(BODY[])")  # reads it
        assert b"\\Seen" in camille.fetch("1", "(FLAGS)")[1][0]
        lea = _login(space, LEA)
        assert lea.select(shared)[0] == "OK"
        assert b"\\Seen" not in lea.fetch("1", "(FLAGS)")[1][0]
        _typ, data = lea.status(shared, "(UNSEEN)")
        assert b"UNSEEN 1" in data[0]
        camille.logout()
        lea.logout()

    await asyncio.to_thread(run)


async def test_removed_member_loses_access_at_once(space: LocalTrustSpace) -> None:
    await _deliver(space, ORG, "Confidentiel")
    op = _op(space)
    lea = await asyncio.to_thread(_login, space, LEA)
    assert (await asyncio.to_thread(lea.select, f'"Partages/{ORG}/INBOX"'))[0] == "OK"
    await asyncio.to_thread(op.services.mailboxes.remove_member, ORG, LEA)
    typ, data = await asyncio.to_thread(lea.fetch, "1", "(BODY.PEEK[])")
    assert typ == "NO" and b"NOPERM" in data[0]
    await asyncio.to_thread(lea.logout)


async def test_bad_input_keeps_the_server_up(space: LocalTrustSpace) -> None:
    op = _op(space)

    def run() -> None:
        ctx = ssl.create_default_context(cafile=str(space.ca_file))
        raw = ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", op.imaps.port)), server_hostname="127.0.0.1"
        )
        raw.settimeout(10)
        f = raw.makefile("rb")
        f.readline()
        junk = (b"\x00\xff garbage\r\n", b"a FETCH 1 (BODY[\r\n", b"b SELECT\r\n",
                b"x" * 70000 + b"\r\n")  # fmt: skip
        for line_in in junk:
            raw.sendall(line_in)
            line = f.readline()
            assert b"BAD" in line or b"NO" in line, line
        raw.sendall(b"z CAPABILITY\r\n")
        assert f.readline().startswith(b"* CAPABILITY")
        raw.close()

    await asyncio.to_thread(run)
