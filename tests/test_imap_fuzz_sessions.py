"""Fuzzing live IMAP sessions (issue 4): hostile input on a logged-in, selected connection.

Hypothesis drives one TLS connection per example (LOGIN, SELECT INBOX, then a few steps):
random byte strings, and mutations of valid FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE/APPEND/
LIST/STATUS/… commands (wrong arguments, literals with wrong sizes, unbalanced parentheses,
huge numbers, ``*``, ``$``). After each step a sentinel ``NOOP`` re-synchronises the
connection (it fills a literal the server still waits for). Checked:

* every response is ``* …``, ``+ …`` or ``<tag> OK|NO|BAD …``, and the server never goes
  silent (the sentinel is answered) nor closes without ``* BYE``;
* the mailbox, read through the services API (folders, UIDs, flags, UIDNEXT,
  HIGHESTMODSEQ, subscriptions), is unchanged by a step whose commands all got NO or BAD:
  only a command answered OK may change it (the snapshot is taken again after such a step,
  so destructive commands that succeed — EXPUNGE, MOVE, DELETE — are accounted for);
* after each example a new connection is still served.

Also: a failure inside a command (a message whose blob file was removed) gives
``NO [SERVERBUG]`` with an error id that is in the log, changes no flag, and the connection
goes on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from conftest import ALPHA
from mssante.services.mailboxes import Principal
from mssante.services.mailstore import MailStore
from mssante.testing.clients import (
    make_message,
    seed_professional_mailbox,
    seed_structure_mailbox,
)
from mssante.testing.trust_space import LocalTrustSpace

PW = "un mot de passe tres long"
LEA = "lea.dubois@alpha.mssante.fr"
ORG = "secretariat@alpha.mssante.fr"
SHARED_INBOX = f"Partages/{ORG}/INBOX"
STEP_TIMEOUT = 20.0  # seconds for one step to be answered (rate limiting sleeps 1 s)
MAX_FOLDERS = 20

RESPONSE = re.compile(
    rb"^(?:\* \S|\+[ \r]|[\x21-\x7e]+ (?:OK|NO|BAD)[ \r])"
)  # first line of a response (with its CRLF)
TAGGED = re.compile(rb"^([\x21-\x7e]+) (OK|NO|BAD)[ \r]")
LITERAL_AT_END = re.compile(rb"~?\{(\d+)\}\r\n$")
PENDING_LITERAL = re.compile(rb"\{(\d+)\+?\}\r?\n")


# -- the server --------------------------------------------------------------------------


@dataclass
class Fuzzed:
    space: LocalTrustSpace
    port: int
    store: MailStore
    principal: Principal
    blob_root: Path
    appended: int = 0


def _seed_inbox(fz: Fuzzed, count: int) -> None:
    store, principal = fz.store, fz.principal
    inbox = store.resolve(principal, "INBOX")
    for _ in range(count):
        fz.appended += 1
        n = fz.appended
        flags = [["\\Seen"], ["\\Flagged", "$Label1"], [], ["\\Answered"]][n % 4]
        store.append(
            principal,
            inbox,
            make_message(
                "camille.martin@alpha.mssante.fr",
                [LEA],
                subject=f"Compte rendu {n}",
                body=f"Bonjour,\n\nmessage numero {n}\n",
            ),
            flags,
        )


@pytest.fixture
async def fuzzed(tmp_path: Path, database_url: Callable[[], str]) -> AsyncIterator[Fuzzed]:
    space = LocalTrustSpace.create(tmp_path / "s", [ALPHA], database_urls=[database_url()])
    await space.start()
    op = space.operators[0].operator
    assert op is not None and op.imaps is not None
    boxes = op.services.mailboxes
    await asyncio.to_thread(
        seed_professional_mailbox, boxes, LEA, "10000000025", PW,
        family_name="Dubois", given_name="Léa",
    )  # fmt: skip
    await asyncio.to_thread(seed_structure_mailbox, boxes, ORG, "1750000028", "CH Alpha", PW)
    await asyncio.to_thread(boxes.add_member, ORG, LEA)
    principal = await asyncio.to_thread(boxes.authenticate, LEA, PW)
    assert principal is not None
    fz = Fuzzed(space, op.imaps.port, op.services.mailstore, principal, op.config.blob_root)
    await asyncio.to_thread(fz.store.create_folder, principal, "Projets")
    await asyncio.to_thread(_seed_inbox, fz, 5)
    org_inbox = await asyncio.to_thread(fz.store.resolve, principal, SHARED_INBOX)
    await asyncio.to_thread(
        fz.store.append, principal, org_inbox, make_message(ORG, [ORG], subject="Partage"), ()
    )
    try:
        yield fz
    finally:
        await space.stop()


Snapshot = tuple[Any, ...]


def snapshot(fz: Fuzzed) -> Snapshot:
    """What a rejected command must not change, read through the services API."""
    store, principal = fz.store, fz.principal
    folders = []
    for folder in sorted(store.folders_for(principal), key=lambda f: f.imap_name):
        messages = tuple((m.uid, tuple(sorted(m.flags))) for m in store.messages(principal, folder))
        folders.append(
            (folder.imap_name, folder.uidvalidity, folder.uidnext, folder.highestmodseq, messages)
        )
    return tuple(folders), tuple(sorted(store.subscriptions(principal)))


def replenish(fz: Fuzzed) -> None:
    """Between examples: keep a few messages in INBOX and the folder list bounded."""
    store, principal = fz.store, fz.principal
    inbox = store.resolve(principal, "INBOX")
    missing = 4 - len(store.messages(principal, inbox))
    if missing > 0:
        _seed_inbox(fz, missing)
    own = [f for f in store.folders_for(principal) if not f.imap_name.startswith("Partages/")]
    for folder in own[MAX_FOLDERS:]:
        if folder.name != "INBOX" and not folder.special_use:
            store.delete_folder(principal, folder.imap_name)


# -- a wire client that survives whatever the server does ----------------------------------


class Closed(Exception):
    pass


class Wire:
    def __init__(self, port: int, ca_file: Path) -> None:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        raw = socket.create_connection(("127.0.0.1", port), timeout=STEP_TIMEOUT)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""
        self.log: list[bytes] = []  # every response, for the failure message
        self.sent: list[bytes] = []
        self.bye = False
        self.sentinels = 0

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Closed(str(exc)) from exc

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError from None
        except (OSError, ssl.SSLError) as exc:
            raise Closed(str(exc)) from exc
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def response(self, deadline: float) -> bytes:
        """One complete response with its literals; checks its first line's shape."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill(deadline)
            line, _, self.buf = self.buf.partition(b"\r\n")
            line += b"\r\n"
            if not out and not RESPONSE.match(line):
                raise AssertionError(f"malformed response {line[:200]!r}\n{self.trace()}")
            out += line
            m = LITERAL_AT_END.search(line)
            if m is None:
                break
            size = int(m.group(1))
            while len(self.buf) < size:
                self._fill(deadline)
            out, self.buf = out + self.buf[:size], self.buf[size:]
        self.log.append(out)
        if out.startswith(b"* BYE"):
            self.bye = True
        return out

    def trace(self) -> str:
        sent = b"".join(self.sent)[-1500:]
        got = b"\n".join(r[:300] for r in self.log[-15:])
        return f"sent (tail): {sent!r}\nreceived (tail):\n{got.decode('latin-1')}"

    def command(self, tag: str, line: str) -> bytes:
        """A simple command: returns its tagged response."""
        self.send(f"{tag} {line}\r\n".encode())
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            r = self.response(deadline)
            if r.startswith(tag.encode() + b" "):
                return r

    def resync(self, payload: bytes) -> list[tuple[bytes, bytes]]:
        """Send sentinels until one is answered OK; returns the tagged (tag, status) pairs
        seen on the way (the sentinels' excluded). A literal the server still waits for is
        filled with `x`."""
        seen: list[tuple[bytes, bytes]] = []
        sentinel_tags: set[bytes] = set()
        deadline = time.monotonic() + STEP_TIMEOUT
        pending = [int(m.group(1)) for m in PENDING_LITERAL.finditer(payload)]
        while time.monotonic() < deadline:
            self.sentinels += 1
            tag = f"zz{self.sentinels}".encode()
            sentinel_tags.add(tag)
            self.send(b"\r\n" + tag + b" NOOP\r\n")
            attempt = min(deadline, time.monotonic() + 3.0)
            while True:
                try:
                    r = self.response(attempt)
                except TimeoutError:
                    break
                if r.startswith(b"+"):
                    self.send(b"x" * min(pending.pop() if pending else 256, 60_000_000))
                    break
                m = TAGGED.match(r)
                if m is None:
                    continue
                if m.group(1) == tag and m.group(2) == b"OK":
                    return seen
                if m.group(1) not in sentinel_tags:
                    seen.append((m.group(1), m.group(2)))
        raise AssertionError(f"the server stopped answering\n{self.trace()}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_session(fz: Fuzzed) -> Wire:
    wire = Wire(fz.port, fz.space.ca_file)
    greeting = wire.response(time.monotonic() + STEP_TIMEOUT)
    assert greeting.startswith(b"* OK"), greeting
    assert b" OK " in wire.command("l1", f'LOGIN {LEA} "{PW}"')
    assert b" OK " in wire.command("l2", "SELECT INBOX")
    return wire


def still_serves(fz: Fuzzed) -> None:
    wire = Wire(fz.port, fz.space.ca_file)
    try:
        assert wire.response(time.monotonic() + STEP_TIMEOUT).startswith(b"* OK")
        assert wire.command("c1", "CAPABILITY").startswith(b"c1 OK")
    finally:
        wire.close()


# -- what is sent ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    declared: int
    data: bytes
    sync: bool


@dataclass(frozen=True)
class Continuation:
    """Wait for `+` (IDLE) before the next piece; a tagged answer ends the command."""


Piece = bytes | Literal | Continuation


@dataclass
class Step:
    pieces: list[Piece]
    poisons: bool = False  # a non-synchronizing literal far bigger than what is sent
    label: str = ""

    def flat(self) -> bytes:
        out = b""
        for p in self.pieces:
            if isinstance(p, Literal):
                out += b"{%d%s}\r\n" % (p.declared, b"" if p.sync else b"+") + p.data
            elif isinstance(p, bytes):
                out += p
        return out


# Each pool: values a client could send (first), then hostile ones.
HUGE = ["4294967296", "99999999999999999999", "18446744073709551617", "0", "-1", "1e9"]
SEQUENCES = (
    ["1", "2", "1:*", "*", "*:1", "2,4", "1:3,5", "$", "4:2", "1,*", "10000", "2:10000",
     "4294967295", "1:4294967295"],
    ["0", "1:0", "1:", ":1", "1,,2", "a", "*:*", "$:1", "%", "1 2", "(1)", *HUGE],
)  # fmt: skip
FETCH_ATOMS = (
    ["FLAGS", "UID", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
     "BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[TEXT]", "BODY.PEEK[1]", "BODY.PEEK[1.MIME]",
     "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]", "BODY.PEEK[HEADER.FIELDS.NOT (DATE)]",
     "BODY.PEEK[]<0.10>", "BODY.PEEK[]<5.4294967295>", "BINARY.PEEK[1]", "BINARY.SIZE[1]",
     "RFC822.HEADER", "MODSEQ", "BODY[]", "RFC822", "BODY[TEXT]", "BODY.PEEK[2]",
     "BODY.PEEK[1.2.3.4.5.6.7.8.9.10]"],
    ["BODY[", "BODY.PEEK[0]", "BODY.PEEK[HEADER.FIELDS ()]", "BODY.PEEK[]<>", "BODY.PEEK[]<1>",
     "FOO", "BODY.PEEK[MIME]", "BINARY[99]", "X-GM-MSGID", "BODY.PEEK[]<0.4294967296>",
     "BODY[HEADER.FIELDS (", "ALL FLAGS", "(", ")"],
)  # fmt: skip
FETCH_MACROS = ["ALL", "FAST", "FULL"]
FLAGS = (
    ["\\Seen", "\\Deleted", "\\Flagged", "\\Answered", "\\Draft", "$Label1", "Junk"],
    ["\\Recent", "\\Foo", "\\*", "(", ")", "\\", "%", "*", '"x"', "{3}", "NIL"],
)  # fmt: skip
STORE_ACTIONS = (
    ["+FLAGS", "-FLAGS", "FLAGS", "+FLAGS.SILENT", "-FLAGS.SILENT", "FLAGS.SILENT",
     "(UNCHANGEDSINCE 1) +FLAGS", "(UNCHANGEDSINCE 4294967296) FLAGS"],
    ["+FLAGS.LOUD", "FOO", "(UNCHANGEDSINCE) FLAGS", "(UNCHANGEDSINCE -1) FLAGS", "+", ""],
)  # fmt: skip
MAILBOXES = (
    ["INBOX", "inbox", "Archive", "Trash", "Sent", "Projets", '"Projets/2026"', "Nonexistent",
     f'"{SHARED_INBOX}"', '"Partages/other@alpha.mssante.fr/INBOX"', '"a b"', "&AOk-t&AOk-"],
    ['""', '"', "&-", "&Jjo", "Projets/", "INBOX/sub", "(", "*", "%", "NIL", '"\\"q"', "{2}"],
)  # fmt: skip
SEARCH_KEYS = (
    ["ALL", "SEEN", "UNSEEN", "DELETED", "FLAGGED", "NEW", "OLD", "RECENT", "ANSWERED",
     "SUBJECT rendu", 'SUBJECT "numero 3"', "FROM camille", "HEADER Subject rendu",
     'HEADER X-Nothing ""', "BODY numero", "TEXT Bonjour", "KEYWORD $Label1",
     "UNKEYWORD Junk", "LARGER 100", "SMALLER 4294967295", "SINCE 1-Jan-2020",
     "SENTON 1-Feb-2024", "UID 1:*", "UID $", "1:3", "$", "MODSEQ 1", "OR SEEN FLAGGED",
     "NOT DELETED", "(SEEN (FLAGGED))"],
    ["YOUNGER 10", "BEFORE 32-Foo-2024", "SMALLER 99999999999999999999", "OR", "NOT", "(ALL",
     "ALL)", "CHARSET FOO ALL", "OLDER -1", "HEADER", "LARGER", "UID", "FOO", "MODSEQ", "((((("],
)  # fmt: skip
SEARCH_PREFIX = (
    ["", "", "", "CHARSET UTF-8 ", "RETURN (SAVE) ", "RETURN (MIN MAX COUNT) ", "RETURN () ",
     "RETURN (ALL) "],
    ["RETURN (FOO) ", "RETURN ( ", "CHARSET ", "RETURN (SAVE) CHARSET FOO "],
)  # fmt: skip
STATUS_ITEMS = (
    ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "SIZE", "DELETED",
     "HIGHESTMODSEQ", "APPENDLIMIT"],
    ["FOO", "(", "NIL", "1"],
)  # fmt: skip
LIST_REFS = (['""', "INBOX", '"Partages/"'], ["(", '"~"', "NIL", "{1}"])
LIST_PATTERNS = (
    ['"*"', '"%"', '"INBOX"', '"Partages/%"', '"*%*%*%*%*%*"', '"&AOk-*"', "*", "%"],
    ['"&-"', '"\\"', "()", '"\\x"', ""],
)  # fmt: skip
LIST_RETURNS = (
    ["", "", " RETURN (SPECIAL-USE)", " RETURN (STATUS (MESSAGES UNSEEN))",
     " RETURN (SUBSCRIBED CHILDREN)"],
    [" RETURN (", " RETURN (STATUS ())", " RETURN (FOO)", " RETURN"],
)  # fmt: skip
COMMANDS = (
    ["FETCH", "UID FETCH", "STORE", "UID STORE", "SEARCH", "UID SEARCH", "COPY", "UID COPY",
     "MOVE", "UID MOVE", "EXPUNGE", "UID EXPUNGE", "APPEND", "LIST", "LSUB", "STATUS",
     "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "NOOP",
     "CHECK", "UNSELECT", "CLOSE", "IDLE", "ENABLE", "GETQUOTAROOT", "NAMESPACE"],
    ["AUTHENTICATE PLAIN", "LOGIN a b", "STARTTLS", "XYZZY", "UID", "UID NOOP", "FETCH1"],
)  # fmt: skip

MESSAGE = make_message("camille.martin@alpha.mssante.fr", [LEA], subject="Ajout fuzz")
MIME = (
    b"From: <a@alpha.mssante.fr>\r\nSubject: =?utf-8?q?pi=C3=A8ce?=\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n'
    b"\r\nbonjour\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: "
    b"base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
)


INSERTS = list('()[]<>*$"\\ %~+-:,.0{}9\x00\x7f\xe9')


def _mutate(text: str, draw: Any) -> str:
    kind = draw(st.sampled_from(["drop", "insert", "number", "cut", "double", "case"]))
    at = draw(st.integers(0, len(text)))
    if kind == "drop":
        return text[:at] + text[at + 1 :]
    if kind == "insert":
        return text[:at] + draw(st.sampled_from(INSERTS)) + text[at:]
    if kind == "number":
        return re.sub(r"\d+", draw(st.sampled_from(HUGE)), text, count=1)
    if kind == "double":
        return text[:at] + text[at:] * 2
    if kind == "case":
        return text.swapcase()
    return text[:at]


def _literal(draw: Any, data: bytes, *, append: bool, hostile: bool) -> tuple[Literal, bool]:
    """A literal carrying `data`; when hostile, its declared size is often wrong."""
    kinds = ["exact", "less", "more", "huge", "zero"] if hostile else ["exact"]
    kind = draw(st.sampled_from(kinds))
    sync = draw(st.booleans())
    declared = {
        "exact": len(data),
        "less": max(0, len(data) - draw(st.integers(1, 20))),  # the rest spills on the line
        "more": len(data) + draw(st.integers(1, 20)),  # the sentinel fills the rest
        "huge": draw(st.sampled_from([60 * 1024 * 1024, 10**12, 2**64 + 5])),
        "zero": 0,
    }[kind]
    if kind == "huge" and not append:
        declared = draw(st.sampled_from([70_000, 10**12]))
    poisons = kind == "huge" and not sync
    return Literal(declared, data if kind != "zero" else b"", sync), poisons


@st.composite
def fuzz_command(draw: Any, tag: str) -> Step:
    """One command: valid (about half the time) or hostile (bad values, then mutated)."""
    hostile = draw(st.booleans())

    def pick(pool: tuple[list[str], list[str]]) -> str:
        if hostile and draw(st.integers(0, 2)) == 0:
            return str(draw(st.sampled_from(pool[1])))
        return str(draw(st.sampled_from(pool[0])))

    def plist(pool: tuple[list[str], list[str]], max_size: int = 3) -> str:
        items = " ".join(pick(pool) for _ in range(draw(st.integers(0, max_size))))
        if hostile and draw(st.integers(0, 3)) == 0:  # unbalanced or missing parentheses
            return str(draw(st.sampled_from(["(" + items, items + ")", items, "((" + items + ")"])))
        return f"({items})"

    name = pick(COMMANDS)
    seq, box = pick(SEQUENCES), pick(MAILBOXES)
    poisons = False
    tail: list[Piece] = []
    args = ""
    if name.endswith("FETCH"):
        if draw(st.integers(0, 3)) == 0:
            spec = draw(st.sampled_from([*FETCH_MACROS, *FETCH_ATOMS[0]]))
        else:
            spec = plist(FETCH_ATOMS, 4)
        extra = draw(st.sampled_from(["", "", " (CHANGEDSINCE 1)", " (CHANGEDSINCE 1 VANISHED)"]))
        if hostile:
            extra = draw(st.sampled_from([extra, " (CHANGEDSINCE 99999999999999999999)", " ("]))
        args = f"{seq} {spec}{extra}"
    elif name.endswith("STORE"):
        args = f"{seq} {pick(STORE_ACTIONS)} {plist(FLAGS)}"
    elif name.endswith("SEARCH"):
        keys = " ".join(pick(SEARCH_KEYS) for _ in range(draw(st.integers(1, 3))))
        args = pick(SEARCH_PREFIX) + keys
        if draw(st.integers(0, 3)) == 0:  # a string as a literal
            data = draw(st.sampled_from([b"rendu", b"numero", "é".encode(), b"\xff\xfe", b""]))
            literal, poisons = _literal(draw, data, append=False, hostile=hostile)
            args += " SUBJECT "
            tail = [literal]
    elif name.endswith(("COPY", "MOVE")):
        args = f"{seq} {box}"
    elif name == "UID EXPUNGE":
        args = seq
    elif name == "APPEND":
        flags = draw(st.sampled_from(["", f"{plist(FLAGS)} "]))
        date = draw(st.sampled_from(["", '"01-Jan-2024 10:00:00 +0100" ']))
        if hostile:
            date = draw(st.sampled_from([date, '"32-Foo-2024" ', "NIL ", '"1-Jan-2024" ']))
        data = draw(st.sampled_from([MESSAGE, MIME, b"Subject: x\r\n\r\n\x00\xff", b""]))
        literal, poisons = _literal(draw, data, append=True, hostile=hostile)
        args = f"{box} {flags}{date}"
        tail = [literal]
    elif name in ("LIST", "LSUB"):
        args = f"{pick(LIST_REFS)} {pick(LIST_PATTERNS)}"
        if name == "LIST":
            args += pick(LIST_RETURNS)
    elif name == "STATUS":
        args = f"{box} {plist(STATUS_ITEMS, 4)}"
    elif name == "RENAME":
        args = f"{box} {pick(MAILBOXES)}"
    elif name in ("SELECT", "EXAMINE"):
        args = box + draw(st.sampled_from(["", "", " (CONDSTORE)", " (QRESYNC (1 1))"]))
    elif name in ("CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT"):
        args = box
    elif name == "ENABLE":
        args = pick((["CONDSTORE", "QRESYNC", "IMAP4rev2"], ["FOO", ""]))
    elif hostile:
        args = draw(st.sampled_from(["", " extra", " 1", " ()"]))
    text = f"{tag} {name} {args}" if tail else f"{tag} {name} {args}".rstrip()
    if hostile:
        for _ in range(draw(st.integers(0, 2))):
            text = _mutate(text, draw)
    pieces: list[Piece] = [text.encode("utf-8"), *tail]
    if tail and hostile and draw(st.booleans()):
        pieces.append(draw(st.sampled_from([b" ALL", b")", b" {2}", b" \x00"])))
    if name == "IDLE" and not hostile:
        pieces += [b"\r\n", Continuation(), draw(st.sampled_from([b"DONE", b"done", b"DONE x"]))]
    return Step(pieces, poisons, label=name + (" (hostile)" if hostile else ""))


def junk_step(data: bytes) -> Step:
    # No `}`: a literal the test cannot see coming would need an unbounded filler.
    return Step([data.replace(b"}", b"]")], label="random bytes")


# -- the runs ----------------------------------------------------------------------------


def _await_continuation(wire: Wire, deadline: float, tagged: list[tuple[bytes, bytes]]) -> bool:
    """True on `+`; False when the command was answered (refused) instead."""
    while True:
        r = wire.response(deadline)
        if r.startswith(b"+"):
            return True
        m = TAGGED.match(r)
        if m is not None:
            tagged.append((m.group(1), m.group(2)))
            return False
        if r.startswith(b"* BAD"):
            return False


def run_step(wire: Wire, step: Step) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Send one step; returns (tagged answers to it, the connection is still usable)."""
    tagged: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + STEP_TIMEOUT
    refused = False
    for piece in step.pieces:
        if isinstance(piece, bytes):
            wire.send(piece)
        elif isinstance(piece, Continuation):
            refused = not _await_continuation(wire, deadline, tagged)
        else:
            wire.send(b"{%d%s}\r\n" % (piece.declared, b"" if piece.sync else b"+"))
            if piece.sync:  # wait for the continuation, or a refusal
                refused = not _await_continuation(wire, deadline, tagged)
            if not refused:
                wire.send(piece.data)
        if refused:
            break
    if step.poisons and not refused:
        # The server refuses the literal and discards its octets: nothing more gets through.
        while True:
            r = wire.response(deadline)
            m = TAGGED.match(r)
            if m is not None or r.startswith(b"* BAD"):
                assert b"BAD" in r or b"NO" in r, r
                return tagged + ([(m.group(1), m.group(2))] if m else []), False
    if not refused:
        wire.send(b"\r\n")
    tagged += wire.resync(step.flat())
    return tagged, True


def _note(what: str) -> None:
    if currently_in_test_context():  # hypothesis statistics
        event(what)


def run_example(fz: Fuzzed, steps: list[Step]) -> None:
    replenish(fz)
    wire = open_session(fz)
    before = snapshot(fz)
    try:
        for step in steps:
            try:
                answers, usable = run_step(wire, step)
            except Closed:
                _note("closed after BYE")
                assert wire.bye, f"connection closed without BYE\n{wire.trace()}"
                return
            after = snapshot(fz)
            _note(f"{step.label}: {b'/'.join(sorted({s for _, s in answers})).decode() or '-'}")
            if not any(status == b"OK" for _, status in answers):
                assert after == before, (
                    f"{step.label} answered {answers} changed the mailbox\n"
                    f"sent {step.flat()[:300]!r}\n{wire.trace()}"
                )
            before = after
            if not usable or wire.bye:
                return
        assert wire.command("lo", "LOGOUT").startswith(b"lo OK")
    finally:
        wire.close()
        still_serves(fz)


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


async def test_random_bytes_on_a_selected_session(fuzzed: Fuzzed) -> None:
    @FUZZ
    @given(st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=4))
    def run(chunks: list[bytes]) -> None:
        run_example(fuzzed, [junk_step(c) for c in chunks])

    await asyncio.to_thread(run)


async def test_mutated_commands_on_a_selected_session(fuzzed: Fuzzed) -> None:
    @settings(FUZZ, max_examples=80)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        count = data.draw(st.integers(1, 6), label="steps")
        steps = [data.draw(fuzz_command(f"t{i}"), label=f"step {i}") for i in range(count)]
        run_example(fuzzed, steps)

    await asyncio.to_thread(run)
    # Hostile or not, the mailbox is still usable through the services API.
    assert await asyncio.to_thread(snapshot, fuzzed)


async def test_long_lines_and_literal_floods_keep_the_server_up(fuzzed: Fuzzed) -> None:
    steps = [
        Step([b"a FETCH 1 (FLAGS" + b" FLAGS" * 20_000 + b")"], label="long line"),
        Step([b"b SEARCH " + b"(" * 5_000 + b"ALL" + b")" * 5_000], label="deep nesting"),
        Step([b"c APPEND INBOX ", Literal(2**64 + 1, b"", sync=True)], label="huge literal"),
        Step([b"d FETCH " + b"1," * 20_000 + b"1 FLAGS"], label="long set"),
        Step([b"e SEARCH " + b"OR ALL " * 3_000 + b"ALL"], label="long OR chain"),
        Step([b'f LIST "" "' + b"*%" * 2_000 + b'"'], label="pattern explosion"),
    ]
    await asyncio.to_thread(run_example, fuzzed, steps)


async def test_serverbug_has_an_error_id_and_the_connection_goes_on(
    fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture
) -> None:
    fz = fuzzed
    inbox = await asyncio.to_thread(fz.store.resolve, fz.principal, "INBOX")
    before_files = set(fz.blob_root.rglob("*"))
    data = make_message(ORG, [LEA], subject="blob perdu", body="contenu unique 7f3a\n")
    uid = await asyncio.to_thread(fz.store.append, fz.principal, inbox, data, ())
    new_files = [p for p in set(fz.blob_root.rglob("*")) - before_files if p.is_file()]
    assert len(new_files) == 1, new_files
    new_files[0].unlink()
    caplog.set_level(logging.ERROR, logger="mssante.imap")

    def run() -> tuple[bytes, bytes, Snapshot, Snapshot]:
        wire = open_session(fz)
        try:
            before = snapshot(fz)
            # Not a peek: \Seen would be set on the messages fetched, were it to succeed.
            failed = wire.command("f1", f"UID FETCH 1:{uid} BODY[]")
            after = snapshot(fz)
            peek = wire.command("f2", f"UID FETCH {uid} BODY.PEEK[]")
            assert wire.command("f3", "UID FETCH 1 BODY.PEEK[HEADER]").startswith(b"f3 OK")
            assert wire.command("f4", f"UID FETCH {uid} (UID FLAGS RFC822.SIZE)").startswith(
                b"f4 OK"
            )
            assert wire.command("f5", "NOOP").startswith(b"f5 OK")
            assert wire.command("f6", "LOGOUT").startswith(b"f6 OK")
            return failed, peek, before, after
        finally:
            wire.close()

    failed, peek, before, after = await asyncio.to_thread(run)
    for answer in (failed, peek):
        assert answer.split(b" ")[1:3] == [b"NO", b"[SERVERBUG]"], answer
        assert b"Traceback" not in answer and b"blob" not in answer.lower(), answer
        match = re.search(rb"id ([0-9a-f]{12})", answer)
        assert match, answer
        error_id = match.group(1).decode()
        assert any(error_id in r.getMessage() for r in caplog.records), error_id
    assert after == before  # the rejected FETCH set no \Seen
    await asyncio.to_thread(still_serves, fz)


async def test_parallel_appends_of_the_same_message_all_succeed(fuzzed: Fuzzed) -> None:
    """The same octets appended by several sessions at once share one blob row (a race
    that gave NO [SERVERBUG] on PostgreSQL: unique violation on blobs.digest)."""
    fz = fuzzed
    data = make_message(ORG, [LEA], subject="envoye partout", body="meme contenu 91c2\n")
    barrier = threading.Barrier(6)

    def one(i: int) -> bytes:
        wire = open_session(fz)
        try:
            barrier.wait(timeout=STEP_TIMEOUT)
            wire.send(b"p%d APPEND INBOX {%d+}\r\n" % (i, len(data)) + data + b"\r\n")
            deadline = time.monotonic() + STEP_TIMEOUT
            while True:
                r = wire.response(deadline)
                if r.startswith(b"p%d " % i):
                    return r
        finally:
            wire.close()

    answers = await asyncio.gather(*(asyncio.to_thread(one, i) for i in range(6)))
    assert all(a.split(b" ")[1] == b"OK" for a in answers), answers
    inbox = await asyncio.to_thread(fz.store.resolve, fz.principal, "INBOX")
    metas = await asyncio.to_thread(fz.store.messages, fz.principal, inbox)
    assert len({m.blob_digest for m in metas if m.size == len(data)}) == 1
    assert sum(1 for m in metas if m.size == len(data)) == 6
