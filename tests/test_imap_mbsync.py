"""A real synchronisation client (issue 4): isync's mbsync against the IMAP server.

A 1,000-message mailbox in the five default folders (INBOX, Sent, Drafts, Trash, Archive)
is put on the server with APPEND (imaplib), synchronised both ways with mbsync into a local
Maildir (``Create Both``, ``Expunge Both``), then both sides change (new messages, flags,
deletions, moves, a new folder on each side) and mbsync runs again: both sides must hold
the same messages (by Message-ID) with the same flags, and what the test expects.

Parametrised over the server: ``dovecot`` (the reference, Debian's dovecot-imapd) and
``mssante`` (skipped until the operator exposes its IMAP listeners).
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from imap_conversation import String, tokenize
from imap_reference import (
    CAMILLE,
    ImapTarget,
    RawImap,
    connect,
    dovecot_target,
    mssante_target,
)

PASSWORD = "Synchro-Mbsync-1"
FOLDERS = {"INBOX": 400, "Sent": 250, "Drafts": 50, "Trash": 100, "Archive": 200}
SYNCED_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
                 "T": "\\Deleted"}  # fmt: skip
FLAG_LETTERS = {flag: letter for letter, flag in MAILDIR_FLAGS.items()}

State = dict[str, dict[str, frozenset[str]]]  # folder -> Message-ID -> flags

pytestmark = pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync is not installed")


@pytest.fixture(params=["dovecot", "mssante"])
async def target(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: Callable[[], str]
) -> AsyncIterator[ImapTarget]:
    if request.param == "dovecot":
        with dovecot_target() as server:
            server.add_user(CAMILLE, PASSWORD)
            yield server
    else:
        async with mssante_target(tmp_path / "space", database_url()) as server:
            await asyncio.to_thread(server.add_user, CAMILLE, PASSWORD)
            yield server


# -- messages ------------------------------------------------------------------------------

_BASE_DATE = datetime(2024, 1, 8, 8, 0, tzinfo=UTC)
_SUBJECTS = (
    "Compte rendu de consultation", "Résultats biologiques", "Demande d'avis",
    "Courrier de sortie", "Ordonnance", "Convocation IRM", "Lettre de liaison",
)  # fmt: skip
_PEOPLE = (
    ("Dr Léa Dubois", "lea.dubois@beta.mssante.fr"),
    ("Laboratoire Biopole", "resultats@labo-biopole.mssante.fr"),
    ("CH Saint-Joseph", "cardiologie@ch-saint-joseph.mssante.fr"),
    ("Dr Hugo Bernard", "hugo.bernard@alpha.mssante.fr"),
)


def message_id(folder: str, index: int, origin: str = "gen") -> str:
    slug = folder.lower().replace("/", "-")
    return f"<{origin}-{slug}-{index:04d}@alpha.mssante.fr>"


def make_message(folder: str, index: int, origin: str = "gen") -> bytes:
    """A small French MSSanté message; every 25th carries a PDF attachment."""
    from email.header import Header

    name, address = _PEOPLE[index % len(_PEOPLE)]
    subject = f"{_SUBJECTS[index % len(_SUBJECTS)]} n°{index} ({folder})"
    date = format_datetime(_BASE_DATE + timedelta(minutes=17 * index))
    encoded_name = Header(name, "utf-8").encode()
    headers = [
        f"Date: {date}",
        f"From: {encoded_name} <{address}>",
        "To: camille.martin@alpha.mssante.fr",
        f"Subject: {Header(subject, 'utf-8').encode()}",
        f"Message-ID: {message_id(folder, index, origin)}",
        "MIME-Version: 1.0",
    ]
    text = (
        f"Bonjour,\r\n\r\nMessage {index} du dossier {folder}.\r\n"
        "Patient : M. Bernard, né le 12/03/1961.\r\n\r\nCordialement,\r\n"
    )
    body = text.encode("utf-8")
    if index % 25 == 0:
        boundary = f"=_mbsync_{index}"
        pdf = b"JVBERi0xLjQKJSVFT0YK"  # "%PDF-1.4\n%%EOF\n"
        headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        body = (
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n".encode()
            + body
            + f'\r\n--{boundary}\r\nContent-Type: application/pdf; name="CR_{index}.pdf"\r\n'
            f'Content-Disposition: attachment; filename="CR_{index}.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n".encode()
            + pdf
            + f"\r\n--{boundary}--\r\n".encode()
        )
    else:
        headers += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return "\r\n".join(headers).encode() + b"\r\n\r\n" + body


def initial_flags(folder: str, index: int) -> frozenset[str]:
    flags: set[str] = set()
    if folder == "Drafts":
        flags.add("\\Draft")
    elif folder in ("Sent", "Archive", "Trash") or index % 3 == 0:
        flags.add("\\Seen")
    if index % 7 == 0 and folder != "Drafts":
        flags.add("\\Flagged")
    if index % 11 == 0 and folder in ("INBOX", "Archive"):
        flags.add("\\Answered")
    return frozenset(flags)


# -- the server side -----------------------------------------------------------------------


def _login(target: ImapTarget) -> imaplib.IMAP4:
    client = connect(target.host, target.imaps_port, target.ca_file, starttls=False)
    client.login(CAMILLE, PASSWORD)
    return client


def _check(result: tuple[str, Sequence[Any]], what: str) -> list[Any]:
    status, data = result
    assert status == "OK", f"{what}: {status} {data}"
    return list(data)


def _imap_date(index: int) -> str:
    return imaplib.Time2Internaldate(_BASE_DATE + timedelta(minutes=17 * index))


def populate(target: ImapTarget) -> State:
    """APPEND the 1,000 messages; returns the state the server should now be in."""
    state: State = {}
    client = _login(target)
    try:
        for folder, count in FOLDERS.items():
            state[folder] = {}
            for index in range(count):
                flags = initial_flags(folder, index)
                _check(
                    client.append(
                        folder, "(" + " ".join(sorted(flags)) + ")", _imap_date(index),
                        make_message(folder, index),
                    ),
                    f"APPEND {folder} {index}",
                )  # fmt: skip
                state[folder][message_id(folder, index)] = flags
    finally:
        client.logout()
    return state


def server_state(target: ImapTarget) -> tuple[State, dict[str, dict[str, int]]]:
    """(folder → Message-ID → synced flags, folder → Message-ID → UID) read on the server."""
    state: State = {}
    uids: dict[str, dict[str, int]] = {}
    with RawImap(target.host, target.imaps_port, target.ca_file, implicit_tls=True) as client:
        assert client.command("l", f'LOGIN "{CAMILLE}" "{PASSWORD}"').status == "OK"
        listing = client.command("m", 'LIST "" "*"')
        names = []
        for line in listing.untagged:
            tokens = tokenize(line[2:])
            attributes = {str(a).lower() for a in tokens[1]} if len(tokens) > 1 else set()
            if "\\noselect" in attributes or "\\nonexistent" in attributes:
                continue
            raw = tokens[3]
            names.append(bytes(raw).decode() if isinstance(raw, String) else str(raw))
        for name in names:
            reply = client.command("e", f'EXAMINE "{name}"')
            assert reply.status == "OK", reply
            state[name], uids[name] = {}, {}
            if not any(re.match(rb"\* [1-9]\d* EXISTS", u) for u in reply.untagged):
                continue
            reply = client.command(
                "f", "UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
            )
            assert reply.status == "OK", reply
            for line in reply.untagged:
                match = re.match(rb"\* \d+ FETCH (.*)", line, re.DOTALL)
                if not match:
                    continue
                items = tokenize(match.group(1))[0]
                assert isinstance(items, list), line
                data = {str(items[i]).upper(): items[i + 1] for i in range(0, len(items), 2)}
                header = next(v for k, v in data.items() if k.startswith("BODY["))
                assert isinstance(header, String) and isinstance(data["FLAGS"], list), line
                msgid = _message_id_of(bytes(header))
                state[name][msgid] = _synced(str(f) for f in data["FLAGS"])
                uids[name][msgid] = int(str(data["UID"]))
        client.command("z", "LOGOUT")
    return state, uids


def _message_id_of(header: bytes) -> str:
    value = BytesHeaderParser().parsebytes(header).get("Message-ID", "")
    return str(value).strip()


def _synced(flags: Iterable[str]) -> frozenset[str]:
    canonical = {f.lower(): f for f in SYNCED_FLAGS}
    return frozenset(canonical[f.lower()] for f in flags if f.lower() in canonical)


# -- the local side (Maildir written by mbsync) -------------------------------------------


def local_state(root: Path) -> State:
    state: State = {}
    for cur in sorted(root.rglob("cur")):
        folder_dir = cur.parent
        if not (folder_dir / "new").is_dir():
            continue
        name = folder_dir.relative_to(root).as_posix()
        state[name] = {}
        for sub in ("cur", "new"):
            for path in (folder_dir / sub).iterdir():
                info = path.name.partition(":2,")[2]  # mbsync sets it in new/ too
                flags = frozenset(MAILDIR_FLAGS[c] for c in info if c in MAILDIR_FLAGS)
                with path.open("rb") as handle:
                    msgid = _message_id_of(handle.read(8192))
                state[name][msgid] = flags
    return state


def _local_files(root: Path, folder: str) -> dict[str, Path]:
    out = {}
    for sub in ("cur", "new"):
        for path in (root / folder / sub).iterdir():
            with path.open("rb") as handle:
                out[_message_id_of(handle.read(8192))] = path
    return out


_counter = iter(range(10**9))


def _deliver_local(root: Path, folder: str, data: bytes, flags: frozenset[str]) -> None:
    base = root / folder
    for sub in ("cur", "new", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    unique = f"{time.time_ns()}.M{next(_counter)}P{os.getpid()}.mssante-test"
    info = "".join(sorted(FLAG_LETTERS[f] for f in flags))
    target = base / "cur" / f"{unique}:2,{info}" if flags else base / "new" / unique
    tmp = base / "tmp" / unique
    tmp.write_bytes(data.replace(b"\r\n", b"\n"))  # Maildir files use LF line ends
    tmp.rename(target)


def _set_local_flags(path: Path, flags: frozenset[str]) -> None:
    name = path.name.partition(":2,")[0]
    info = "".join(sorted(FLAG_LETTERS[f] for f in flags))
    path.rename(path.parent.parent / "cur" / f"{name}:2,{info}")


def _move_local(path: Path, root: Path, folder: str) -> None:
    # The ",U=<uid>" part names the message's UID in its old folder: mbsync must not see it.
    name = re.sub(r",U=\d+", "", path.name)
    path.rename(root / folder / "cur" / name)


# -- mbsync --------------------------------------------------------------------------------


def write_mbsyncrc(target: ImapTarget, home: Path, local: Path) -> Path:
    rc = home / ".mbsyncrc"
    rc.write_text(
        f"""\
IMAPAccount mssante
Host localhost
Port {target.imaps_port}
User {CAMILLE}
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {target.ca_file}
AuthMechs LOGIN
Timeout 120
PipelineDepth 50

IMAPStore server
Account mssante

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :server:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
CopyArrivalDate yes
""",
        encoding="utf-8",
    )
    rc.chmod(0o600)
    return rc


def mbsync(rc: Path, home: Path) -> str:
    result = subprocess.run(
        ["mbsync", "-c", str(rc), "-a"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mbsync failed ({result.returncode}):\n{output}"
    return output


def _describe(expected: State, actual: State, side: str) -> str:
    lines = [f"{side} differs from the expected state:"]
    for folder in sorted(set(expected) | set(actual)):
        want, got = expected.get(folder, {}), actual.get(folder, {})
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        flags = sorted(m for m in set(want) & set(got) if want[m] != got[m])
        if missing or extra or flags:
            lines.append(
                f"  {folder}: {len(want)} expected, {len(got)} found; missing {missing[:5]} "
                f"extra {extra[:5]} flags {[(m, want[m], got[m]) for m in flags[:5]]}"
            )
    return "\n".join(lines)


def assert_state(expected: State, actual: State, side: str) -> None:
    assert actual == expected, _describe(expected, actual, side)


# -- the test ------------------------------------------------------------------------------


def _run(target: ImapTarget, home: Path) -> None:
    local = home / "Mail"
    local.mkdir()
    expected = populate(target)
    assert sum(len(v) for v in expected.values()) == 1000
    on_server, _ = server_state(target)
    assert_state(expected, on_server, f"{target.name} after APPEND")

    # 1. First synchronisation: the whole mailbox comes down.
    rc = write_mbsyncrc(target, home, local)
    mbsync(rc, home)
    assert_state(expected, local_state(local), "local Maildir after the first sync")
    assert_state(expected, server_state(target)[0], f"{target.name} after the first sync")

    # 2. Changes on the local side (Maildir, as a local mail client would make them).
    files = {folder: _local_files(local, folder) for folder in FOLDERS}
    inbox_ids = sorted(expected["INBOX"])
    for i in range(5):  # new messages
        data = make_message("INBOX", i, origin="local")
        _deliver_local(local, "INBOX", data, frozenset())
        expected["INBOX"][message_id("INBOX", i, "local")] = frozenset()
    for i in range(2):  # new drafts
        flags = frozenset({"\\Draft", "\\Seen"})
        _deliver_local(local, "Drafts", make_message("Drafts", i, origin="local"), flags)
        expected["Drafts"][message_id("Drafts", i, "local")] = flags
    for msgid in inbox_ids[0:10]:  # flags
        flags = expected["INBOX"][msgid] | {"\\Seen", "\\Flagged"}
        _set_local_flags(files["INBOX"][msgid], flags)
        expected["INBOX"][msgid] = flags
    for msgid in inbox_ids[10:15]:  # deleted files
        files["INBOX"][msgid].unlink()
        del expected["INBOX"][msgid]
    for msgid in sorted(expected["Trash"])[0:5]:  # marked trashed: expunged both sides
        _set_local_flags(files["Trash"][msgid], expected["Trash"][msgid] | {"\\Deleted"})
        del expected["Trash"][msgid]
    for msgid in inbox_ids[15:20]:  # moved to Archive
        _move_local(files["INBOX"][msgid], local, "Archive")
        expected["Archive"][msgid] = expected["INBOX"].pop(msgid)
    expected["Dossiers/Cardiologie"] = {}
    for i in range(3):  # a new local folder
        _deliver_local(
            local, "Dossiers/Cardiologie", make_message("Dossiers/Cardiologie", i, "local"),
            frozenset({"\\Seen"}),
        )  # fmt: skip
        expected["Dossiers/Cardiologie"][message_id("Dossiers/Cardiologie", i, "local")] = (
            frozenset({"\\Seen"})
        )

    # 3. Changes on the server side (another IMAP client).
    _, uids = server_state(target)
    client = _login(target)
    try:
        for i in range(5):
            msgid = message_id("Sent", i, "server")
            _check(
                client.append("Sent", "(\\Seen)", _imap_date(i), make_message("Sent", i, "server")),
                "APPEND Sent",
            )  # fmt: skip
            expected["Sent"][msgid] = frozenset({"\\Seen"})
        for i in range(3):
            _check(
                client.append("INBOX", None, None, make_message("INBOX", i, "server")),
                "APPEND INBOX",
            )
            expected["INBOX"][message_id("INBOX", i, "server")] = frozenset()
        _check(client.create("Projets/2026"), "CREATE")
        expected["Projets/2026"] = {}
        for i in range(3):
            _check(
                client.append("Projets/2026", "(\\Seen)", None,
                              make_message("Projets/2026", i, "server")),
                "APPEND Projets/2026",
            )  # fmt: skip
            expected["Projets/2026"][message_id("Projets/2026", i, "server")] = frozenset(
                {"\\Seen"}
            )
        _check(client.select("INBOX"), "SELECT INBOX")
        answered = inbox_ids[200:210]
        uid_set = ",".join(str(uids["INBOX"][m]) for m in answered)
        _check(client.uid("STORE", uid_set, "+FLAGS", "(\\Answered)"), "STORE")
        for msgid in answered:
            expected["INBOX"][msgid] = expected["INBOX"][msgid] | {"\\Answered"}
        moved = inbox_ids[210:215]
        uid_set = ",".join(str(uids["INBOX"][m]) for m in moved)
        _check(client.uid("MOVE", uid_set, "Archive"), "UID MOVE")
        for msgid in moved:
            expected["Archive"][msgid] = expected["INBOX"].pop(msgid)
        _check(client.select("Sent"), "SELECT Sent")
        unseen = sorted(m for m in uids["Sent"])[100:105]
        uid_set = ",".join(str(uids["Sent"][m]) for m in unseen)
        _check(client.uid("STORE", uid_set, "-FLAGS", "(\\Seen)"), "STORE")
        for msgid in unseen:
            expected["Sent"][msgid] = expected["Sent"][msgid] - {"\\Seen"}
        _check(client.select("Archive"), "SELECT Archive")
        deleted = sorted(m for m in uids["Archive"])[50:55]
        uid_set = ",".join(str(uids["Archive"][m]) for m in deleted)
        _check(client.uid("STORE", uid_set, "+FLAGS", "(\\Deleted)"), "STORE")
        _check(client.expunge(), "EXPUNGE")
        for msgid in deleted:
            del expected["Archive"][msgid]
        client.close()
    finally:
        client.logout()

    # 4. Synchronise again: both sides agree, and hold what both changed.
    mbsync(rc, home)
    assert_state(expected, local_state(local), "local Maildir after the re-sync")
    assert_state(expected, server_state(target)[0], f"{target.name} after the re-sync")

    # 5. A third run has nothing to do and changes nothing.
    mbsync(rc, home)
    assert_state(expected, local_state(local), "local Maildir after a no-op sync")
    assert_state(expected, server_state(target)[0], f"{target.name} after a no-op sync")


async def test_mbsync_two_way_sync(target: ImapTarget, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    await asyncio.to_thread(_run, target, home)
