"""Real IMAP clients (issue 4): Python's imaplib and curl against the server.

Covered: login with a bearer token (imaplib ``authenticate("XOAUTH2")`` and
``OAUTHBEARER``, ``curl --oauth2-bearer``), IDLE (a message appended on another connection,
or delivered by SMTP on mssante, is announced within one second), MOVE, UID EXPUNGE,
CONDSTORE (``FETCH … (CHANGEDSINCE n)``, ``STORE … (UNCHANGEDSINCE n)``), and the ORG BAL
rule: two members, one reads a message, the other still sees it unread.

Every test runs against ``mssante`` (skipped until the operator exposes ``operator.imap``
and ``operator.imaps``) and against ``dovecot``, which checks the client scripts
themselves: there, tokens are opaque strings Dovecot's oauth2 mechanisms compare like
passwords, and the ORG BAL is a public namespace with per-user ``\\Seen`` (INDEXPVT).
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from imap_reference import (
    CAMILLE,
    LEA,
    ORG_BAL,
    ImapTarget,
    connect,
    dovecot_target,
    mssante_target,
)

PASSWORDS = {CAMILLE: "Camille-Mot-de-passe-1", LEA: "Lea-Mot-de-passe-2"}
IDLE_DEADLINE = 1.0  # seconds between the new message and its announcement (issue 4)


@pytest.fixture(params=["dovecot", "mssante"])
async def target(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: Callable[[], str]
) -> AsyncIterator[ImapTarget]:
    if request.param == "dovecot":
        with dovecot_target(shared=[ORG_BAL], tokens=True) as server:
            for login, password in PASSWORDS.items():
                server.add_user(login, password)
            yield server
    else:
        async with mssante_target(tmp_path / "space", database_url(), with_tokens=True) as server:
            for login, password in PASSWORDS.items():
                await asyncio.to_thread(server.add_user, login, password)
            yield server


def message(
    subject: str, index: int = 0, sender: str = "resultats@labo-biopole.mssante.fr"
) -> bytes:
    return (
        f"From: Laboratoire Biopole <{sender}>\r\n"
        "To: camille.martin@alpha.mssante.fr\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.lower().replace(' ', '-')}-{index}@labo-biopole.mssante.fr>\r\n"
        "Date: Mon, 18 Mar 2024 16:45:00 +0100\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"Résultat n°{index} disponible.\r\n"
    ).encode()


def login(target: ImapTarget, user: str = CAMILLE, *, starttls: bool = False) -> imaplib.IMAP4:
    port = target.imap_port if starttls else target.imaps_port
    client = connect(target.host, port, target.ca_file, starttls=starttls)
    client.login(user, PASSWORDS[user])
    return client


def ok(result: tuple[str, Sequence[Any]], what: str = "") -> list[Any]:
    status, data = result
    assert status == "OK", f"{what}: {status} {data}"
    return list(data)


def append_messages(target: ImapTarget, count: int, folder: str = "INBOX") -> None:
    client = login(target)
    try:
        for i in range(count):
            ok(client.append(folder, None, None, message("Resultat", i)), "APPEND")
    finally:
        client.logout()


def uids(client: imaplib.IMAP4, criteria: str = "ALL") -> list[int]:
    data = ok(client.uid("SEARCH", criteria), "UID SEARCH")
    return [int(x) for x in data[0].split()]


def flags_of(client: imaplib.IMAP4, uid: int) -> set[str]:
    data = ok(client.uid("FETCH", str(uid), "(FLAGS)"), "UID FETCH FLAGS")
    for item in data:
        text = item.decode() if isinstance(item, bytes) else ""
        match = re.search(r"FLAGS \(([^)]*)\)", text)
        if match:
            return set(match.group(1).split())
    raise AssertionError(f"no FLAGS for UID {uid}: {data}")


# -- login with a token ------------------------------------------------------------------


def _xoauth2(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def _once(payload: bytes) -> Callable[[bytes], bytes]:
    """The SASL answer, then an empty line to a failure's continuation (RFC 7628 §3.2.3)."""
    answers = [payload]

    def respond(_challenge: bytes) -> bytes:
        return answers.pop() if answers else b""

    return respond


def _oauthbearer(user: str, token: str, port: int) -> bytes:
    return f"n,a={user},\x01host=localhost\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


async def test_imaplib_token_login(target: ImapTarget) -> None:
    assert target.token_for is not None
    token = await asyncio.to_thread(target.token_for, CAMILLE)

    def run() -> None:
        for mechanism, payload in (
            ("XOAUTH2", _xoauth2(CAMILLE, token)),
            ("OAUTHBEARER", _oauthbearer(CAMILLE, token, target.imaps_port)),
        ):
            client = connect(target.host, target.imaps_port, target.ca_file, starttls=False)
            assert f"AUTH={mechanism}" in client.capabilities, client.capabilities
            ok(client.authenticate(mechanism, _once(payload)), mechanism)
            ok(client.select("INBOX"), "SELECT after token login")
            client.logout()
        # A wrong token is refused.
        client = connect(target.host, target.imaps_port, target.ca_file, starttls=False)
        with pytest.raises(imaplib.IMAP4.error):
            client.authenticate("XOAUTH2", _once(_xoauth2(CAMILLE, token + "x")))
        client.shutdown()
        # Camille's token with Léa's name never opens Léa's mailbox: Dovecot refuses it,
        # mssante ("the token decides", formats/sasl.py) logs Camille in to her own.
        lea = login(target, LEA)
        ok(lea.append("INBOX", None, None, message("Marqueur Lea")))
        lea.logout()
        client = connect(target.host, target.imaps_port, target.ca_file, starttls=False)
        try:
            client.authenticate("XOAUTH2", _once(_xoauth2(LEA, token)))
        except imaplib.IMAP4.error:
            client.shutdown()
        else:
            ok(client.select("INBOX"))
            assert uids(client, 'SUBJECT "Marqueur Lea"') == [], "Camille's token opened Léa's BAL"
            client.logout()

    await asyncio.to_thread(run)


# -- IDLE ----------------------------------------------------------------------------------


def _idle_until_exists(
    target: ImapTarget, make_new_message: Callable[[], None]
) -> tuple[float, list[bytes]]:
    """IDLE on INBOX with imaplib, trigger a new message, return (delay, lines seen)."""
    client = login(target)
    try:
        ok(client.select("INBOX"))
        tag = client._new_tag().decode()
        client.send(f"{tag} IDLE\r\n".encode())
        continuation = client.readline()
        assert continuation.startswith(b"+"), continuation
        make_new_message()
        done = time.monotonic()
        client.sock.settimeout(IDLE_DEADLINE + 4)
        seen: list[bytes] = []
        delay = float("inf")
        while True:
            try:
                line = client.readline()
            except TimeoutError:
                break
            seen.append(line)
            if re.match(rb"\* \d+ EXISTS", line):
                delay = time.monotonic() - done
                break
        client.sock.settimeout(30)
        client.send(b"DONE\r\n")
        while True:
            line = client.readline()
            seen.append(line)
            if line.startswith(tag.encode()):
                assert line.split()[1] == b"OK", line
                break
        return delay, seen
    finally:
        client.logout()


@pytest.mark.parametrize("via", ["append", "smtp"])
async def test_imaplib_idle_announces_new_message(target: ImapTarget, via: str) -> None:
    if via == "smtp" and target.deliver is None:
        pytest.skip(f"{target.name} has no SMTP delivery in this harness")
    await asyncio.to_thread(append_messages, target, 1)

    def new_message() -> None:
        if via == "append":
            other = login(target)
            ok(other.append("INBOX", None, None, message("Nouveau resultat", 9)))
            other.logout()
        else:
            assert target.deliver is not None
            target.deliver(CAMILLE, message("Nouveau resultat", 9, sender=CAMILLE))

    delay, seen = await asyncio.to_thread(_idle_until_exists, target, new_message)
    assert delay <= IDLE_DEADLINE, f"EXISTS after {delay:.2f}s (limit {IDLE_DEADLINE}s): {seen}"
    assert any(line.startswith(b"* 2 EXISTS") for line in seen), seen


# -- MOVE, UID EXPUNGE, CONDSTORE with imaplib --------------------------------------------


async def test_imaplib_move(target: ImapTarget) -> None:
    def run() -> None:
        append_messages(target, 3)
        client = login(target)
        try:
            ok(client.select("INBOX"))
            first, second, third = uids(client)
            ok(client.uid("STORE", str(second), "+FLAGS", "(\\Flagged)"))
            client.untagged_responses.pop("COPYUID", None)
            typ, data = client.xatom("UID", "MOVE", str(second), "Archive")
            assert typ == "OK", data
            # RFC 6851: COPYUID comes in an untagged OK, before the EXPUNGE.
            assert client.untagged_responses.get("COPYUID"), client.untagged_responses
            assert client.untagged_responses.get("EXPUNGE") == [b"2"], client.untagged_responses
            assert uids(client) == [first, third]
            ok(client.select("Archive"))
            (moved,) = uids(client)
            assert "\\Flagged" in flags_of(client, moved)
            data = ok(client.uid("FETCH", str(moved), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
            assert b"resultat-1@" in data[0][1]
        finally:
            client.logout()

    await asyncio.to_thread(run)


async def test_imaplib_uid_expunge(target: ImapTarget) -> None:
    def run() -> None:
        append_messages(target, 3)
        client = login(target)
        try:
            ok(client.select("INBOX"))
            first, second, third = uids(client)
            ok(client.uid("STORE", f"{first},{second}", "+FLAGS.SILENT", "(\\Deleted)"))
            typ, data = client.uid("EXPUNGE", str(second))
            assert typ == "OK", data
            # Only the given UID goes; the other \Deleted message stays (RFC 4315).
            assert uids(client) == [first, third]
            assert "\\Deleted" in flags_of(client, first)
            assert ok(client.status("INBOX", "(MESSAGES)"))[0].endswith(b"(MESSAGES 2)")
        finally:
            client.logout()

    await asyncio.to_thread(run)


def _highestmodseq(client: imaplib.IMAP4) -> int:
    data = client.response("HIGHESTMODSEQ")[1]
    assert data and data[0], "no HIGHESTMODSEQ after SELECT with CONDSTORE"
    return int(data[0])


async def test_imaplib_condstore(target: ImapTarget) -> None:
    def run() -> None:
        append_messages(target, 3)
        client = login(target)
        try:
            ok(client.enable("CONDSTORE"), "ENABLE CONDSTORE")
            ok(client.select("INBOX"))
            before = _highestmodseq(client)
            first, second, _ = uids(client)
            ok(client.uid("STORE", str(second), "+FLAGS", "(\\Flagged)"))
            data = ok(client.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {before})"))
            changed = [x for x in data if isinstance(x, bytes)]
            assert len(changed) == 1 and f"UID {second}".encode() in changed[0], data
            found = re.search(rb"MODSEQ \((\d+)\)", changed[0])
            assert found, changed
            modseq = int(found.group(1))
            assert modseq > before
            # UNCHANGEDSINCE: the stale one is refused with [MODIFIED], the other applied.
            typ, data = client.xatom(  # xatom: imaplib keeps the tagged [MODIFIED …] text
                "UID", "STORE", f"{first},{second}", f"(UNCHANGEDSINCE {before})",
                "+FLAGS", "(\\Seen)",
            )  # fmt: skip
            assert typ == "OK", data
            assert re.match(rb"\[MODIFIED %d\]" % second, data[0]), data
            assert "\\Seen" in flags_of(client, first)
            assert "\\Seen" not in flags_of(client, second)
            ok(client.select("INBOX"))
            assert _highestmodseq(client) > modseq
        finally:
            client.logout()

    await asyncio.to_thread(run)


# -- curl ----------------------------------------------------------------------------------

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(
    target: ImapTarget, path: str, request: str, *, user: str = CAMILLE,
    token: str | None = None,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``curl imaps://localhost:PORT/<path> -X '<request>'`` (curl SELECTs <path> first)."""
    auth = ["--oauth2-bearer", token, "--user", f"{user}:"] if token else [
        "--user", f"{user}:{PASSWORDS[user]}"
    ]  # fmt: skip
    url = f"imaps://localhost:{target.imaps_port}/{urllib.parse.quote(path)}"
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--verbose", "--max-time", "30",
         "--cacert", str(target.ca_file), *auth, url, "--request", request],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def curl_ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"curl exit {result.returncode}\n{result.stderr[-3000:]}"
    return result.stdout


@needs_curl
async def test_curl_token_login(target: ImapTarget) -> None:
    assert target.token_for is not None
    token = await asyncio.to_thread(target.token_for, CAMILLE)
    await asyncio.to_thread(append_messages, target, 2)
    result = await asyncio.to_thread(curl, target, "", "STATUS INBOX (MESSAGES)", token=token)
    assert re.search(r"\* STATUS \"?INBOX\"? \(MESSAGES 2\)", curl_ok(result)), result.stdout
    mechanism = re.search(r"> \S+ AUTHENTICATE (XOAUTH2|OAUTHBEARER)", result.stderr)
    assert mechanism, "curl did not use a bearer-token mechanism:\n" + result.stderr[-2000:]
    refused = await asyncio.to_thread(curl, target, "", "NOOP", token=token + "x")
    assert refused.returncode == 67, (refused.returncode, refused.stderr[-2000:])  # login denied


@needs_curl
async def test_curl_move_uid_expunge_condstore(target: ImapTarget) -> None:
    def run() -> None:
        append_messages(target, 4)
        client = login(target)
        ok(client.enable("CONDSTORE"))
        ok(client.select("INBOX"))
        first, second, third, fourth = uids(client)
        before = _highestmodseq(client)
        client.logout()

        # MOVE
        curl_ok(curl(target, "INBOX", f"UID MOVE {second} Archive"))
        # UID EXPUNGE: two messages \Deleted, only one expunged
        curl_ok(curl(target, "INBOX", f"UID STORE {third},{fourth} +FLAGS (\\Deleted)"))
        curl_ok(curl(target, "INBOX", f"UID EXPUNGE {fourth}"))
        # CONDSTORE: what changed since the first SELECT (the \Deleted UID only)
        out = curl_ok(curl(target, "INBOX", f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before})"))
        fetched = re.findall(r"\* \d+ FETCH \((.*)\)", out)
        assert len(fetched) == 1 and f"UID {third}" in fetched[0], out
        assert "\\Deleted" in fetched[0] and "MODSEQ" in fetched[0], out

        client = login(target)
        ok(client.select("INBOX"))
        assert uids(client) == [first, third]
        assert "\\Deleted" in flags_of(client, third)
        ok(client.select("Archive"))
        assert len(uids(client)) == 1
        client.logout()

    await asyncio.to_thread(run)


# -- ORG BAL: per-user \Seen ----------------------------------------------------------------


async def test_org_mailbox_seen_is_per_member(target: ImapTarget) -> None:
    assert target.add_org is not None
    folder = await asyncio.to_thread(target.add_org, ORG_BAL, [CAMILLE, LEA])
    quoted = f'"{folder}"'

    def run() -> None:
        data = message("Demande de rendez-vous", 1, sender="patient.relay@beta.mssante.fr")
        if target.deliver is not None:
            target.deliver(ORG_BAL, data)
        else:
            camille = login(target, CAMILLE)
            ok(camille.append(quoted, None, None, data), "APPEND to the ORG BAL")
            camille.logout()
        camille, lea = login(target, CAMILLE), login(target, LEA)
        try:
            deadline = time.monotonic() + 15
            while True:  # SMTP delivery may take a moment
                status = ok(camille.status(quoted, "(MESSAGES)"))[0]
                if b"MESSAGES 1" in status or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            ok(camille.select(quoted), "Camille SELECT the ORG BAL")
            ok(lea.select(quoted), "Léa SELECT the ORG BAL")
            (uid,) = uids(camille)
            assert uids(lea) == [uid]
            assert uids(camille, "UNSEEN") == [uid] and uids(lea, "UNSEEN") == [uid]

            # Camille reads it.
            body = ok(camille.uid("FETCH", str(uid), "(BODY[])"))
            assert b"Demande de rendez-vous" in body[0][1]
            assert "\\Seen" in flags_of(camille, uid)
            assert uids(camille, "UNSEEN") == []

            # Léa still sees it unread, in FETCH, SEARCH and STATUS.
            ok(lea.noop())
            assert "\\Seen" not in flags_of(lea, uid)
            assert uids(lea, "UNSEEN") == [uid]
            ok(lea.unselect())
            assert b"UNSEEN 1" in ok(lea.status(quoted, "(UNSEEN)"))[0]
            ok(camille.unselect())
            assert b"UNSEEN 0" in ok(camille.status(quoted, "(UNSEEN)"))[0]

            # Other flags are the mailbox's: Léa flags it, Camille sees the flag.
            ok(lea.select(quoted))
            ok(lea.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)"))
            ok(camille.select(quoted))
            assert flags_of(camille, uid) >= {"\\Seen", "\\Flagged"}
            assert "\\Seen" not in flags_of(lea, uid)
        finally:
            camille.logout()
            lea.logout()

    await asyncio.to_thread(run)


def test_xoauth2_payload_shape() -> None:
    # The exact bytes imaplib sends (base64) for XOAUTH2, as Google/Microsoft define it.
    encoded = base64.b64encode(_xoauth2("a@b.fr", "t0k")).decode()
    assert base64.b64decode(encoded) == b"user=a@b.fr\x01auth=Bearer t0k\x01\x01"
