"""IMAP command parser (src/mssante/imap/parser.py and its grammar modules)."""

from __future__ import annotations

import gc
import itertools
import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssante.imap import parser as parser_module
from mssante.imap.command_args import (
    AppendArgs,
    AuthenticateArgs,
    CopyArgs,
    CreateArgs,
    EnableArgs,
    ExpungeArgs,
    FetchArgs,
    IdArgs,
    ListArgs,
    LoginArgs,
    MailboxArgs,
    QresyncArgs,
    QuotaRootArgs,
    RenameArgs,
    SearchArgs,
    SelectArgs,
    SetQuotaArgs,
    StatusArgs,
    StoreArgs,
)
from mssante.imap.fetch_items import FetchAttr, FetchBinarySize, FetchBody, Section
from mssante.imap.parser import (
    Command,
    Line,
    NeedContinuation,
    NeedMore,
    ParseError,
    ParseResult,
    parse,
    parse_line,
)
from mssante.imap.search_keys import (
    SearchAll,
    SearchAnd,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSize,
    SearchText,
)
from mssante.imap.sequence import SequenceSet, parse_sequence_set
from mssante.imap.utf7 import decode_mailbox_name, encode_mailbox_name, normalize_mailbox_name

MAX_LITERAL = 1_000_000


def cmd(line: bytes, **kwargs: Any) -> Command:
    kwargs.setdefault("max_literal", MAX_LITERAL)
    result = parse(line, **kwargs)
    assert isinstance(result, Command), result
    assert result.consumed == len(line)
    return result


def arg(line: bytes, **kwargs: Any) -> Any:
    (value,) = cmd(line, **kwargs).args
    return value


def bad(line: bytes, **kwargs: Any) -> ParseError:
    kwargs.setdefault("max_literal", MAX_LITERAL)
    result = parse(line, **kwargs)
    assert isinstance(result, ParseError), result
    assert result.consumed > 0
    assert "Internal error" not in result.message
    return result


def seq(text: str) -> SequenceSet:
    return parse_sequence_set(text.encode())


def drive(chunks: list[bytes], **kwargs: Any) -> list[ParseResult]:
    """What the server does: accumulate, parse, answer continuations, drop `consumed`."""
    kwargs.setdefault("max_literal", MAX_LITERAL)
    buf = bytearray()
    results: list[ParseResult] = []
    sent: set[int] = set()
    skip = 0
    discard_line = False
    for chunk in chunks:
        buf += chunk
        while True:
            if skip:
                k = min(skip, len(buf))
                del buf[:k]
                skip -= k
                if skip:
                    break
            if discard_line:
                lf = buf.find(b"\n")
                if lf < 0:
                    buf.clear()
                    break
                del buf[: lf + 1]
                discard_line = False
            result = parse(buf, continuation_sent=frozenset(sent), **kwargs)
            if isinstance(result, NeedMore):
                break
            results.append(result)
            if isinstance(result, NeedContinuation):
                assert len(buf) not in sent, "continuation requested twice"
                sent.add(len(buf))
                break
            assert result.consumed > 0
            k = min(result.consumed, len(buf))
            del buf[:k]
            skip = result.consumed - k
            sent.clear()
            discard_line = isinstance(result, ParseError) and result.discard_line
    return results


def final(results: list[ParseResult]) -> list[ParseResult]:
    return [r for r in results if isinstance(r, Command | ParseError)]


# --- command lines of real clients ----------------------------------------------------

REAL_CLIENT_LINES: list[tuple[bytes, str]] = [
    # Thunderbird
    (b"1 capability", "CAPABILITY"),
    (b"2 authenticate PLAIN", "AUTHENTICATE"),
    (b'3 ID ("name" "Thunderbird" "version" "128.3.1esr")', "ID"),
    (b"4 enable UTF8=ACCEPT", "ENABLE"),
    (b'5 list (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE)', "LIST"),
    (b'6 select "INBOX" (CONDSTORE)', "SELECT"),
    (b"7 UID fetch 1:* (FLAGS MODSEQ) (CHANGEDSINCE 1293)", "UID FETCH"),
    (
        b"a1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc"
        b" Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To"
        b" Content-Type Reply-To)])",
        "UID FETCH",
    ),
    (b"9 UID fetch 5 (UID RFC822.SIZE BODY.PEEK[] BODYSTRUCTURE)", "UID FETCH"),
    (b"10 UID fetch 5 (UID RFC822.SIZE BODY.PEEK[1.MIME] BODY.PEEK[1]<0.2048>)", "UID FETCH"),
    (b"11 IDLE", "IDLE"),
    (b"12 UID store 5 +Flags (\\Seen)", "UID STORE"),
    (b"13 UID store 6 -Flags ($Forwarded \\Flagged)", "UID STORE"),
    (b'14 UID MOVE 5 "Trash"', "UID MOVE"),
    (b"15 UID expunge 5", "UID EXPUNGE"),
    (b"16 namespace", "NAMESPACE"),
    (b'17 getquotaroot "INBOX"', "GETQUOTAROOT"),
    (b'18 lsub "" "*"', "LSUB"),
    (b'19 STATUS "Drafts" (UIDNEXT MESSAGES UNSEEN RECENT)', "STATUS"),
    (b"20 UID SEARCH UNDELETED SINCE 1-Jan-2024", "UID SEARCH"),
    (b'21 UID copy 3,7:9 "Archives/2024"', "UID COPY"),
    (b"22 unselect", "UNSELECT"),
    # mbsync / isync
    (b"1 CAPABILITY", "CAPABILITY"),
    (b"2 AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=", "AUTHENTICATE"),
    (b'3 LIST "" "*"', "LIST"),
    (b'4 SELECT "INBOX"', "SELECT"),
    (b"5 UID FETCH 1:1000000000 (UID FLAGS)", "UID FETCH"),
    (b"6 UID FETCH 3:4 (UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TUID)])", "UID FETCH"),
    (b"7 UID STORE 3 +FLAGS.SILENT (\\Deleted)", "UID STORE"),
    (b"8 UID SEARCH HEADER X-TUID abcdefgh", "UID SEARCH"),
    (b"9 CLOSE", "CLOSE"),
    (b"10 UID FETCH 4 (BODY.PEEK[])", "UID FETCH"),
    # Outlook
    (b'n5ca LOGIN "doc@hopital.mssante.fr" "s3cr3t"', "LOGIN"),
    (b't7xm LIST "" "*"', "LIST"),
    (b"9bp4 UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER])", "UID FETCH"),
    (b"2nbn UID FETCH 5 (BODY.PEEK[] UID RFC822.SIZE)", "UID FETCH"),
    (b'8azs SELECT "Sent Items"', "SELECT"),
    (b"ruyo NOOP", "NOOP"),
    (b"6pdm UID STORE 1:3 FLAGS (\\Seen \\Answered)", "UID STORE"),
    # Python imaplib
    (b"GIFK1 CAPABILITY", "CAPABILITY"),
    (b'GIFK2 LOGIN bob "pass word"', "LOGIN"),
    (b"GIFK3 SELECT INBOX", "SELECT"),
    (b"GIFK4 SEARCH ALL", "SEARCH"),
    (b"GIFK5 FETCH 1 (RFC822)", "FETCH"),
    (b"GIFK6 STORE 1 +FLAGS \\Deleted", "STORE"),
    (b"GIFK7 EXPUNGE", "EXPUNGE"),
    (b"GIFK8 LOGOUT", "LOGOUT"),
    (b"GIFK9 FETCH 1:3 (FLAGS INTERNALDATE)", "FETCH"),
    # curl
    (b"A001 CAPABILITY", "CAPABILITY"),
    (b"A002 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=", "AUTHENTICATE"),
    (b"A003 EXAMINE INBOX", "EXAMINE"),
    (b'A004 LIST "" *', "LIST"),
    (b"A005 FETCH 1 BODY[TEXT]", "FETCH"),
    (b"A006 UID FETCH 1 BODY[]", "UID FETCH"),
    (b"A007 SEARCH NEW", "SEARCH"),
    (b"A008 STARTTLS", "STARTTLS"),
    # Apple Mail, K-9 / FairEmail, Evolution
    (b"5.25 UID FETCH 1:* (FLAGS UID) (CHANGEDSINCE 3)", "UID FETCH"),
    (
        b"3.12 UID FETCH 1:* (INTERNALDATE UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS"
        b" (date subject from to cc message-id in-reply-to references x-priority"
        b" x-uniform-type-identifier list-id)])",
        "UID FETCH",
    ),
    (b"7 UID SEARCH 1:* NOT DELETED", "UID SEARCH"),
    (b"12 UID FETCH 1:3 (UID FLAGS) (CHANGEDSINCE 1 VANISHED)", "UID FETCH"),
    (b"B00009 UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 17 VANISHED)", "UID FETCH"),
    (b"B0010 CHECK", "CHECK"),
    # RFC examples
    (b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"', "SEARCH"),
    (b'A283 SEARCH TEXT "string not in mailbox"', "SEARCH"),
    (b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])", "FETCH"),
    (b"a UID SEARCH RETURN (MIN MAX COUNT) UNSEEN", "UID SEARCH"),
    (b"A003 CREATE owatagusiam/", "CREATE"),
    (b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))", "CREATE"),
    (b"A683 RENAME blurdybloop sarasota", "RENAME"),
    (b"A002 SUBSCRIBE #news.comp.mail.mime", "SUBSCRIBE"),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime", "UNSUBSCRIBE"),
    (b"A683 DELETE blurdybloop", "DELETE"),
    (b'A02 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)', "LIST"),
    (b'A01 LIST "" ("foo" "foo/*")', "LIST"),
    (b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))', "LIST"),
    (b'a LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES UNSEEN))', "LIST"),
    (b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)", "UID STORE"),
    (b"3 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)", "UID FETCH"),
    (b"A SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))", "SELECT"),
    (
        b"B01 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,"
        b"9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991)))",
        "SELECT",
    ),
    (b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338', "SEARCH"),
    (b"A003 UID EXPUNGE 3000:3002", "UID EXPUNGE"),
    (b"a UID MOVE 42:69 foo", "UID MOVE"),
    (b"a MOVE 1:3 Archive", "MOVE"),
    (b"a023 ID NIL", "ID"),
    (b'G0001 GETQUOTA ""', "GETQUOTA"),
    (b'S0001 SETQUOTA "" (STORAGE 512 MESSAGE 1000)', "SETQUOTA"),
    (b"t2 ENABLE CONDSTORE X-GOOD-IDEA", "ENABLE"),
    (b'A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"', "SEARCH"),
    (b"A283 FETCH $ (UID INTERNALDATE FLAGS RFC822.SIZE)", "FETCH"),
    (b"A284 UID SEARCH UID $ SMALLER 4096", "UID SEARCH"),
    (b"A142 COPY 2:4 MEETING", "COPY"),
    (b"a UID FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])", "UID FETCH"),
]


@pytest.mark.parametrize(("line", "name"), REAL_CLIENT_LINES)
def test_real_client_lines(line: bytes, name: str) -> None:
    for ending in (b"\r\n", b"\n"):
        command = cmd(line + ending)
        assert command.name == name
        assert command.tag == line.split(b" ")[0].decode()


# --- typed arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE",
     "IDLE", "NAMESPACE"],
)  # fmt: skip
def test_commands_without_arguments(name: str) -> None:
    assert cmd(f"t {name.lower()}\r\n".encode()) == Command("t", name, (), 4 + len(name))
    assert bad(f"t {name} extra\r\n".encode()).tag == "t"


def test_login_and_authenticate() -> None:
    assert arg(b'a LOGIN "doc\\\\tor" "p\\"w"\r\n') == LoginArgs("doc\\tor", 'p"w')
    assert arg(b"a LOGIN {3}\r\nbob {4+}\r\np w!\r\n") == LoginArgs("bob", "p w!")
    assert arg('a LOGIN "élise" "mot-de-passé"\r\n'.encode()) == LoginArgs("élise", "mot-de-passé")
    bad("a LOGIN élise x\r\n".encode())  # 8-bit only in quoted strings and literals
    assert arg(b"a AUTHENTICATE plain\r\n") == AuthenticateArgs("PLAIN", None)
    assert arg(b"a AUTHENTICATE PLAIN =\r\n") == AuthenticateArgs("PLAIN", b"")
    assert arg(b"a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=\r\n") == AuthenticateArgs(
        "PLAIN", b"\0bob\0secret"
    )
    assert arg(b"a AUTHENTICATE XOAUTH2 dXNlcj1h\r\n").mechanism == "XOAUTH2"
    bad(b"a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ\r\n")  # bad padding
    bad(b"a AUTHENTICATE PLAIN !!\r\n")
    bad(b"a LOGIN bob\r\n")
    bad(b'a LOGIN "\xff" x\r\n')  # not UTF-8
    bad(b"a LOGIN bob pass extra\r\n")


def test_enable_and_id() -> None:
    assert arg(b"a ENABLE qresync IMAP4rev2\r\n") == EnableArgs(("QRESYNC", "IMAP4REV2"))
    bad(b"a ENABLE\r\n")
    assert arg(b'a ID ("name" "sodr" "version" NIL)\r\n') == IdArgs(
        (("name", "sodr"), ("version", None))
    )
    assert arg(b"a ID nil\r\n") == IdArgs(None)
    assert arg(b"a ID ()\r\n") == IdArgs(())
    assert arg(b'a ID ({4}\r\nname "x")\r\n') == IdArgs((("name", "x"),))
    assert arg(b'a ID (name Outlook version nil os "NIL")\r\n') == IdArgs(
        (("name", "Outlook"), ("version", None), ("os", "NIL"))
    )
    bad(b'a ID ("name")\r\n')
    bad(b"a ID name\r\n")


def test_select_examine() -> None:
    assert arg(b"a SELECT inbox\r\n") == SelectArgs("INBOX")
    assert cmd(b"a EXAMINE InBoX\r\n").name == "EXAMINE"
    assert arg(b"a SELECT Drafts (CONDSTORE)\r\n") == SelectArgs("Drafts", condstore=True)
    got = arg(
        b"A SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541"
        b" (1,5:6 41,44:45)))\r\n"
    )
    assert got == SelectArgs(
        "INBOX",
        qresync=QresyncArgs(
            67890007,
            20050715194045000,
            seq("41,43:211,214:541"),
            (seq("1,5:6"), seq("41,44:45")),
        ),
    )
    assert arg(b"a SELECT INBOX (QRESYNC (1 2 (1 5)))\r\n").qresync == QresyncArgs(
        1, 2, None, (seq("1"), seq("5"))
    )
    assert arg(b"a SELECT INBOX (QRESYNC (1 2) CONDSTORE)\r\n").condstore
    bad(b"a SELECT INBOX (QRESYNC (0 2))\r\n")  # uidvalidity is nz-number
    bad(b"a SELECT INBOX (QRESYNC (1 2 1:*))\r\n")  # no * in known-uids
    bad(b"a SELECT INBOX (QRESYNC (1 9223372036854775808))\r\n")  # > 63 bits
    bad(b"a SELECT INBOX (FOO)\r\n")
    bad(b"a SELECT\r\n")


def test_mailbox_commands() -> None:
    assert arg(b"a CREATE Archives/2024\r\n") == CreateArgs("Archives/2024")
    assert arg(b"a CREATE Spam (USE (\\junk \\Archive \\X-Custom))\r\n") == CreateArgs(
        "Spam", ("\\Junk", "\\Archive", "\\X-Custom")
    )
    bad(b"a CREATE Spam (USE (Junk))\r\n")
    bad(b"a CREATE Spam (SIZE 3)\r\n")
    assert arg(b'a DELETE "Old stuff"\r\n') == MailboxArgs("Old stuff")
    assert arg(b"a RENAME old {3}\r\nnew\r\n") == RenameArgs("old", "new")
    assert arg(b"a SUBSCRIBE &AMk-t&AOk-\r\n") == MailboxArgs("Été")
    assert arg(b"a GETQUOTAROOT inbox\r\n") == MailboxArgs("INBOX")
    assert arg(b'a GETQUOTA ""\r\n') == QuotaRootArgs("")
    assert arg(b'a SETQUOTA "" (storage 512)\r\n') == SetQuotaArgs("", (("STORAGE", 512),))
    assert arg(b"a SETQUOTA root ()\r\n") == SetQuotaArgs("root", ())
    bad(b"a SETQUOTA root (STORAGE)\r\n")
    bad(b"a RENAME a\r\n")
    bad(b"a DELETE &Jjo\r\n")  # unterminated modified UTF-7


def test_list_and_lsub() -> None:
    assert arg(b'a LIST "" "*"\r\n') == ListArgs("", ("*",))
    assert arg(b"a LIST ~/Mail/ %\r\n") == ListArgs("~/Mail/", ("%",))
    got = arg(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("%" inbox) RETURN (CHILDREN)\r\n')
    assert got == ListArgs(
        "",
        ("%", "INBOX"),
        frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
        frozenset({"CHILDREN"}),
        None,
        True,
    )
    got = arg(b'a LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES UNSEEN) SPECIAL-USE)\r\n')
    assert got.status_items == ("MESSAGES", "UNSEEN")
    assert got.return_options == frozenset({"STATUS", "SPECIAL-USE"})
    assert arg(b'a LIST () "" "*"\r\n').extended
    assert arg(b'a LIST "" "*" RETURN ()\r\n').extended
    assert arg(b'a LIST "" &ZeVnLIqe-/*\r\n').patterns == ("日本語/*",)
    assert arg(b'a LSUB "" "*"\r\n') == ListArgs("", ("*",))
    assert arg(b'a LIST "" ""\r\n') == ListArgs("", ("",))  # asks for the delimiter
    bad(b'a LIST (RECURSIVEMATCH) "" "*"\r\n')
    bad(b'a LIST (REMOTE RECURSIVEMATCH) "" "*"\r\n')
    bad(b'a LIST (BOGUS) "" "*"\r\n')
    bad(b'a LIST "" "*" RETURN (BOGUS)\r\n')
    bad(b'a LIST "" "*" RETURN (STATUS (BOGUS))\r\n')
    bad(b'a LIST "" "*" SOMETHING (x)\r\n')
    bad(b'a LSUB () "" "*"\r\n')
    bad(b'a LIST ""\r\n')


def test_status() -> None:
    items = b"MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE HIGHESTMODSEQ DELETED APPENDLIMIT"
    got = arg(b"a STATUS INBOX (" + items.lower() + b")\r\n")
    assert got == StatusArgs("INBOX", tuple(items.decode().split()))
    bad(b"a STATUS INBOX ()\r\n")
    bad(b"a STATUS INBOX (MESSAGES BOGUS)\r\n")
    bad(b"a STATUS INBOX MESSAGES\r\n")


def test_append() -> None:
    got = arg(b'a APPEND saved (\\Seen $Label1) "07-Feb-1994 21:52:25 -0800" {5}\r\nhello\r\n')
    tz = timezone(-timedelta(hours=8))
    assert got == AppendArgs(
        "saved", ("\\Seen", "$Label1"), datetime(1994, 2, 7, 21, 52, 25, tzinfo=tz), b"hello"
    )
    assert arg(b"a APPEND INBOX {0+}\r\n\r\n") == AppendArgs("INBOX", (), None, b"")
    got = arg(b'a APPEND INBOX " 1-Jan-2020 00:00:00 +0000" ~{3}\r\n\x00\r\n\r\n')
    assert got.binary and got.message == b"\x00\r\n"
    assert got.internal_date == datetime(2020, 1, 1, tzinfo=UTC)
    assert arg(b"a APPEND INBOX () {2}\r\nhi\r\n").flags == ()
    bad(b'a APPEND INBOX "hello"\r\n')  # message must be a literal
    bad(b"a APPEND INBOX (\\Recent) {2+}\r\nhi\r\n")
    bad(b'a APPEND INBOX "31-Feb-2020 00:00:00 +0000" {2+}\r\nhi\r\n')
    bad(b'a APPEND INBOX "01-Foo-2020 00:00:00 +0000" {2+}\r\nhi\r\n')
    bad(b'a APPEND INBOX "01-Jan-2020 00:00:00 +0099" {2+}\r\nhi\r\n')
    bad(b"a APPEND INBOX {2+}\r\nhi extra\r\n")
    bad(b"a LOGIN ~{3}\r\nbob x\r\n")  # literal8 only for message data


def test_fetch_items() -> None:
    got = arg(b"a FETCH 1:* all\r\n")
    assert got.items == tuple(
        FetchAttr(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE")
    )
    assert arg(b"a FETCH 1 FAST\r\n").items[-1] == FetchAttr("RFC822.SIZE")
    assert arg(b"a FETCH 1 FULL\r\n").items[-1] == FetchAttr("BODY")
    got = arg(
        b"a FETCH 2 (body envelope uid modseq rfc822 rfc822.header rfc822.text"
        b" BODY[1.2.3.HEADER.FIELDS.NOT (Received)]<10.20> BODY.PEEK[2.TEXT] body[3.MIME]"
        b" BINARY[1.1] BINARY.SIZE[2] BODY[HEADER])\r\n"
    )
    assert got == FetchArgs(
        seq("2"),
        (
            FetchAttr("BODY"),
            FetchAttr("ENVELOPE"),
            FetchAttr("UID"),
            FetchAttr("MODSEQ"),
            FetchAttr("RFC822"),
            FetchAttr("RFC822.HEADER"),
            FetchAttr("RFC822.TEXT"),
            FetchBody(Section((1, 2, 3), "HEADER.FIELDS.NOT", ("Received",)), False, (10, 20)),
            FetchBody(Section((2,), "TEXT"), peek=True),
            FetchBody(Section((3,), "MIME")),
            FetchBody(Section((1, 1)), binary=True),
            FetchBinarySize((2,)),
            FetchBody(Section((), "HEADER")),
        ),
    )
    assert arg(b"a FETCH 1 (FLAGS) (changedsince 5)\r\n").changedsince == 5
    for line in [
        b"a FETCH 1 ()\r\n",
        b"a FETCH 1 (ALL)\r\n",
        b"a FETCH 1 X-GM-LABELS\r\n",
        b"a FETCH 1 BODY[0]\r\n",
        b"a FETCH 1 BODY[01]\r\n",
        b"a FETCH 1 BODY[MIME]\r\n",
        b"a FETCH 1 BODY[1.]\r\n",
        b"a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
        b"a FETCH 1 BODY[HEADER.FIELDS (Fr:om)]\r\n",
        b"a FETCH 1 BODY[TEXT.HEADER]\r\n",
        b"a FETCH 1 BINARY[HEADER]\r\n",
        b"a FETCH 1 BODY.PEEK\r\n",
        b"a FETCH 1 BODY[]<1>\r\n",
        b"a FETCH 1 BODY[]<1.0>\r\n",
        b"a FETCH 1 BODY[\r\n",
        b"a FETCH 1 (FLAGS) (VANISHED)\r\n",
        b"a FETCH 1 (FLAGS) (CHANGEDSINCE 5 VANISHED)\r\n",  # VANISHED needs UID FETCH
        b"a UID FETCH 1 (FLAGS) (VANISHED)\r\n",  # ... and CHANGEDSINCE
        b"a UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)\r\n",
        b"a FETCH 0 FLAGS\r\n",
        b"a FETCH 4294967296 FLAGS\r\n",
        b"a FETCH 1,,2 FLAGS\r\n",
        b"a FETCH FLAGS\r\n",
    ]:
        bad(line)


def test_fetch_labels() -> None:
    items = arg(
        b'a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From "X(Odd")]<0.100> BINARY[1]'
        b" BINARY.SIZE[1.2] BODY[])\r\n"
    ).items
    assert [i.label() for i in items] == [
        'BODY[HEADER.FIELDS (From "X(Odd")]<0>',
        "BINARY[1]",
        "BINARY.SIZE[1.2]",
        "BODY[]",
    ]


def test_store() -> None:
    got = arg(b"a STORE 2:4 +FLAGS (\\Deleted)\r\n")
    assert got == StoreArgs(seq("2:4"), "add", False, ("\\Deleted",))
    got = arg(b"a UID STORE 6,4,8 (UNCHANGEDSINCE 0) -flags.silent \\seen $Junk\r\n")
    assert got == StoreArgs(seq("6,4,8"), "remove", True, ("\\Seen", "$Junk"), 0)
    assert arg(b"a STORE 1 FLAGS ()\r\n") == StoreArgs(seq("1"), "replace", False, ())
    for line in [
        b"a STORE 1 +FLAGS (\\Recent)\r\n",
        b"a STORE 1 FLAG (\\Seen)\r\n",
        b"a STORE 1 *FLAGS (\\Seen)\r\n",
        b"a STORE 1 +FLAGS\r\n",
        b"a STORE 1 (UNCHANGEDSINCE x) FLAGS ()\r\n",
        b"a STORE 1 (FOO 1) FLAGS ()\r\n",
        b"a STORE 1 +FLAGS (\\Seen\r\n",
    ]:
        bad(line)


def test_copy_move_expunge() -> None:
    assert arg(b"a COPY 2:4 MEETING\r\n") == CopyArgs(seq("2:4"), "MEETING")
    assert arg(b'a UID MOVE $ "Corbeille"\r\n') == CopyArgs(SequenceSet((), True), "Corbeille")
    assert arg(b"a UID EXPUNGE 3000:3002,7\r\n") == ExpungeArgs(seq("3000:3002,7"))
    bad(b"a UID EXPUNGE\r\n")
    bad(b"a UID NOOP\r\n")
    bad(b"a UID\r\n")
    bad(b"a COPY 1\r\n")


def test_search_keys() -> None:
    got = arg(b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n')
    assert got == SearchArgs(
        SearchAnd(
            (
                SearchFlag("\\Flagged"),
                SearchDate("since", date(1994, 2, 1)),
                SearchNot(SearchHeader("From", "Smith")),
            )
        )
    )
    keys = (
        b"ALL ANSWERED BCC b BEFORE 01-Jan-2000 BODY x CC c DELETED DRAFT FLAGGED FROM f"
        b' HEADER X-Spam "yes" KEYWORD $Junk LARGER 10 NEW NOT SEEN OLD ON "2-Mar-2001"'
        b" OR SEEN UNSEEN RECENT SEEN SENTBEFORE 1-Jan-2000 SENTON 1-Jan-2000"
        b" SENTSINCE 1-Jan-2000 SINCE 1-Jan-2000 SMALLER 99 SUBJECT s TEXT t TO t2"
        b" UID 1:* UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Seen UNSEEN 1,3:5 $"
        b" MODSEQ 5"
    )
    got = arg(b"a UID SEARCH " + keys + b"\r\n").key
    jan = date(2000, 1, 1)
    assert got == SearchAnd(
        (
            SearchAll(),
            SearchFlag("\\Answered"),
            SearchHeader("Bcc", "b"),
            SearchDate("before", jan),
            SearchText("x", body_only=True),
            SearchHeader("Cc", "c"),
            SearchFlag("\\Deleted"),
            SearchFlag("\\Draft"),
            SearchFlag("\\Flagged"),
            SearchHeader("From", "f"),
            SearchHeader("X-Spam", "yes"),
            SearchFlag("$Junk"),
            SearchSize("larger", 10),
            SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))),  # NEW
            SearchNot(SearchFlag("\\Seen")),
            SearchFlag("\\Recent", False),
            SearchDate("on", date(2001, 3, 2)),
            SearchOr((SearchFlag("\\Seen"), SearchFlag("\\Seen", False))),
            SearchFlag("\\Recent"),
            SearchFlag("\\Seen"),
            SearchDate("before", jan, sent=True),
            SearchDate("on", jan, sent=True),
            SearchDate("since", jan, sent=True),
            SearchDate("since", jan),
            SearchSize("smaller", 99),
            SearchHeader("Subject", "s"),
            SearchText("t", body_only=False),
            SearchHeader("To", "t2"),
            SearchSequence(seq("1:*"), uid=True),
            SearchFlag("\\Answered", False),
            SearchFlag("\\Deleted", False),
            SearchFlag("\\Draft", False),
            SearchFlag("\\Flagged", False),
            SearchFlag("$Seen", False),
            SearchFlag("\\Seen", False),
            SearchSequence(seq("1,3:5")),
            SearchSequence(SequenceSet((), saved=True)),
            SearchModSeq(5),
        )
    )


def test_search_structure() -> None:
    def key(text: bytes) -> Any:
        return arg(b"a SEARCH " + text + b"\r\n").key

    a, b, c, d = (SearchHeader("From", x) for x in "abcd")
    assert key(b"OR OR OR FROM a FROM b FROM c FROM d") == SearchOr((a, b, c, d))
    assert key(b"OR FROM a OR FROM b OR FROM c FROM d") == SearchOr((a, b, c, d))
    assert key(b"(FROM a (FROM b FROM c)) FROM d") == SearchAnd((a, b, c, d))
    assert key(b"NOT NOT FROM a") == a
    assert key(b"((FROM a))") == a
    assert key(b"OR (FROM a FROM b) NOT (FROM c)") == SearchOr((SearchAnd((a, b)), SearchNot(c)))
    assert key(b'HEADER "Message-ID" ""') == SearchHeader("Message-ID", "")
    got = key(b'MODSEQ "/flags/$MDNSent" priv 0')
    assert got == SearchModSeq(0, "$MDNSent", "priv")
    assert key(b'MODSEQ "/flags/\\\\Seen" SHARED 9') == SearchModSeq(9, "\\Seen", "shared")
    for text in [
        b"",
        b"()",
        b"(ALL",
        b"ALL)",
        b"OR ALL",
        b"NOT",
        b"BOGUS",
        b"FROM",
        b"LARGER x",
        b"SINCE 1-Foo-2000",
        b"SINCE 30-Feb-2000",
        b'MODSEQ "/flags/\\\\Seen" bogus 1',
        b'MODSEQ "/shared/comment" all 1',
        b"UID",
        b"ALL {3}",
    ]:
        bad(b"a SEARCH " + text + b"\r\n")


def test_search_return_and_charset() -> None:
    got = arg(
        b"a SEARCH RETURN (MIN MAX ALL COUNT SAVE) CHARSET utf-8 SUBJECT {6}\r\nr\xc3\xa9sum\r\n"
    )
    assert got.return_options == frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
    assert got.charset == "UTF-8"
    assert got.key == SearchHeader("Subject", "résum")
    assert arg(b"a SEARCH RETURN () ALL\r\n").return_options == frozenset({"ALL"})
    got = arg(b"a SEARCH CHARSET ISO-8859-1 TEXT {2}\r\n\xe9t\r\n")
    assert got.key == SearchText("ét", body_only=False)
    assert arg(b"a SEARCH charset US-ASCII ALL\r\n").charset == "US-ASCII"
    error = bad(b"a SEARCH CHARSET KOI8-X TEXT x\r\n")
    assert error.code == "BADCHARSET" and error.tag == "a"
    bad(b"a SEARCH RETURN (PARTIAL 1:10) ALL\r\n")
    bad(b"a SEARCH RETURN ALL\r\n")


def test_search_nesting_limits() -> None:
    assert isinstance(arg(b"a SEARCH " + b"(" * 64 + b"ALL" + b")" * 64 + b"\r\n"), SearchArgs)
    bad(b"a SEARCH " + b"(" * 65 + b"ALL" + b")" * 65 + b"\r\n")
    # Alternating NOT and OR cannot be flattened: the tree depth is bounded too.
    deep = b"NOT OR ALL " * 40 + b"ALL" + b" ALL" * 40
    bad(b"a SEARCH " + deep + b"\r\n")
    shallow = b"NOT OR ALL " * 10 + b"ALL" + b" ALL" * 10
    assert isinstance(arg(b"a SEARCH " + shallow + b"\r\n"), SearchArgs)


# --- literals, continuations, chunking ------------------------------------------------


def test_synchronizing_literal_flow() -> None:
    head = b"a APPEND INBOX (\\Seen) {11}\r\n"
    assert parse(head[:-1], max_literal=100) == NeedMore()
    assert parse(head, max_literal=100) == NeedContinuation(11, "a")
    # Re-parsing before new bytes arrive: the server says it already answered.
    again = parse(head, max_literal=100, continuation_sent=frozenset({len(head)}))
    assert again == NeedMore()
    assert parse(head + b"hello", max_literal=100) == NeedMore()
    assert parse(head + b"hello world", max_literal=100) == NeedMore()
    full = head + b"hello world\r\n"
    assert parse(full, max_literal=100) == Command(
        "a", "APPEND", (AppendArgs("INBOX", ("\\Seen",), None, b"hello world"),), len(full)
    )
    # Pipelined: the next command stays in the buffer.
    result = parse(full + b"b NOOP\r\n", max_literal=100)
    assert isinstance(result, Command) and result.consumed == len(full)


def test_non_synchronizing_literal_needs_no_continuation() -> None:
    head = b"a APPEND INBOX {5+}\r\n"
    assert parse(head, max_literal=100) == NeedMore()
    assert parse(head + b"hel", max_literal=100) == NeedMore()
    assert isinstance(parse(head + b"hello\r\n", max_literal=100), Command)


def test_continuation_refused_when_prefix_is_bad() -> None:
    error = bad(b"a FOO {5}\r\n")
    assert (error.tag, error.consumed) == ("a", 11)
    error = bad(b"a LOGIN x y {5}\r\n")
    assert error.consumed == 17
    error = bad(b"* LOGIN {5}\r\n")
    assert error.tag is None
    # A literal where the grammar wants no string.
    bad(b"a FETCH {1}\r\n")
    bad(b"a NOOP {3}\r\n")


SPLIT_STREAMS = [
    b"a LOGIN {3}\r\nbob {6}\r\nsecret\r\n",
    b'a APPEND "Envoy&AOk-s" (\\Seen) " 7-Feb-1994 21:52:25 -0800" {14}\r\nSubject: x\r\n\r\n\r\n',
    b"b APPEND INBOX {4+}\r\nabcd\r\nc NOOP\r\n",
    b"d SEARCH CHARSET UTF-8 OR SUBJECT {2}\r\n\xc3\xa9 TEXT {3+}\r\nabc\r\n",
    b"e RENAME {1}\r\nA {0}\r\n\r\n",
    b"f APPEND INBOX ~{3}\r\n\x00\x01\x02\r\n",
    b"\r\ng NOOP\r\nh UID FETCH 1:* (FLAGS)\r\n",
]


@pytest.mark.parametrize("stream", SPLIT_STREAMS)
def test_split_at_every_position(stream: bytes) -> None:
    expected = final(drive([stream]))
    assert expected and all(isinstance(r, Command) for r in expected)
    for cut in range(len(stream) + 1):
        assert final(drive([stream[:cut], stream[cut:]])) == expected
    byte_by_byte = drive([bytes([b]) for b in stream])
    assert final(byte_by_byte) == expected
    # Fed one octet at a time, the client waited at each {n}: one continuation per literal.
    waits = sum(1 for r in byte_by_byte if isinstance(r, NeedContinuation))
    markers = stream.count(b"}\r\n") - stream.count(b"+}\r\n")
    assert waits == markers


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(
        st.sampled_from(SPLIT_STREAMS + [line + b"\r\n" for line, _ in REAL_CLIENT_LINES]),
        min_size=1,
        max_size=6,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_random_chunking_gives_the_same_commands(picks: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(picks)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in itertools.pairwise([0, *points, len(stream)])]
    assert final(drive(chunks)) == final(drive([stream]))


def test_literal_too_big() -> None:
    # Synchronizing: refused before the continuation, the client sends nothing more.
    line = b"a APPEND INBOX {1001}\r\n"
    error = parse(line, max_literal=1000)
    assert error == ParseError("a", "Literal too big", len(line), "TOOBIG")
    assert isinstance(parse(b"a APPEND INBOX {1000}\r\n", max_literal=1000), NeedContinuation)
    # Non-synchronizing: the octets come anyway and must be skipped.
    line = b"a APPEND INBOX {1001+}\r\n"
    error = parse(line + b"xx", max_literal=1000)
    assert isinstance(error, ParseError) and error.code == "TOOBIG"
    assert error.consumed == len(line) + 1001 > len(line) + 2
    # The session stays in sync: what follows the literal is the next command.
    stream = line + b"x" * 1001 + b"\r\nb NOOP\r\n"
    results = final(
        drive([stream[i : i + 100] for i in range(0, len(stream), 100)], max_literal=1000)
    )
    assert [type(r) for r in results] == [ParseError, Command]
    assert results[1] == Command("b", "NOOP", (), 10)
    # Literals of other commands are limited by max_line.
    error = parse(b"a LOGIN {70000}\r\n", max_literal=10**7)
    assert isinstance(error, ParseError) and error.code == "TOOBIG"
    # The total of a command's literals counts.
    error = parse(b"a LOGIN {40000+}\r\n" + b"u" * 40000 + b" {40000}\r\n", max_literal=10**7)
    assert isinstance(error, ParseError) and error.code == "TOOBIG"
    assert error.consumed == 18 + 40000 + 10  # {40000} is synchronizing
    # A size that is not even a number.
    error = parse(b"a APPEND INBOX {" + b"9" * 50 + b"}\r\n", max_literal=10)
    assert isinstance(error, ParseError) and error.code == "TOOBIG"
    # A bad prefix wins over TOOBIG.
    error = parse(b"a BOGUS {1001}\r\n", max_literal=1000)
    assert isinstance(error, ParseError) and error.code is None and error.consumed == 16


def test_literal_count_is_bounded() -> None:
    many = b"a SEARCH" + b" TEXT {1+}\r\nx" * 64 + b"\r\n"
    assert isinstance(arg(many), SearchArgs)
    error = bad(b"a SEARCH" + b" TEXT {1+}\r\nx" * 65 + b"\r\n")
    assert (error.code, error.message, error.tag) == ("TOOBIG", "Too many literals", "a")
    # After the first literal, continuations are granted without re-parsing the prefix.
    head = b"a LOGIN {1}\r\nx {1}\r\n"
    assert parse(head, max_literal=10) == NeedContinuation(1, "a")
    assert isinstance(parse(head + b"y\r\n", max_literal=10), Command)
    assert parse(b"a LOGIN {1}\r\nx y {1}\r\n", max_literal=10) == NeedContinuation(1, "a")
    assert bad(b"a LOGIN {1}\r\nx y {1}\r\nz\r\n").message.startswith("Unexpected")


def test_line_too_long() -> None:
    long = b"a SEARCH " + b"ALL " * 300
    error = parse(long, max_literal=10, max_line=1000)
    assert error == ParseError("a", "Command line too long", len(long), "TOOBIG", True)
    error = parse(long + b"\r\nb NOOP\r\n", max_literal=10, max_line=1000)
    assert error == ParseError("a", "Command line too long", len(long) + 2, "TOOBIG")
    assert parse(long[:999], max_literal=10, max_line=1000) == NeedMore()
    # The server keeps discarding up to the LF, then resumes.
    results = final(drive([long, b"ALL ALL\r\nb NOOP\r\n"], max_line=1000))
    assert [type(r) for r in results] == [ParseError, Command]
    # The budget covers every line of a command, not the literals.
    lines = b"a LOGIN {600+}\r\n" + b"x" * 600 + b" " + b"y" * 990 + b"\r\n"
    assert bad(lines, max_line=1000).code == "TOOBIG"
    assert isinstance(parse(lines, max_literal=1000, max_line=2000), Command)


def test_empty_lines_and_framing() -> None:
    assert parse(b"", max_literal=10) == NeedMore()
    assert parse(b"\r\n\r\n", max_literal=10) == NeedMore()
    assert parse(b"\r\n\na NOOP\r\n", max_literal=10) == Command("a", "NOOP", (), 11)
    assert parse(b"a NOOP", max_literal=10) == NeedMore()
    assert parse(b"a NOOP\r", max_literal=10) == NeedMore()
    assert parse(b"\r\n" * 512, max_literal=10) == NeedMore()
    error = parse(b"\r\n" * 513 + b"\n", max_literal=10)
    assert error == ParseError(None, "Too many empty lines", 1026)
    assert parse(b"a NOOP  \r\n", max_literal=10) == Command("a", "NOOP", (), 10)


def test_tags_and_unknown_commands() -> None:
    assert bad(b"a1 FROBNICATE\r\n") == ParseError("a1", "Unknown command FROBNICATE", 15)
    assert bad(b"* NOOP\r\n").tag is None
    assert bad(b"+ NOOP\r\n").tag is None
    assert bad(b"a+b NOOP\r\n").tag is None
    assert bad(b"\x00 NOOP\r\n").tag is None
    assert bad(b"NOOP\r\n").tag == "NOOP"
    assert cmd(b"a.b-c_d]e NOOP\r\n").tag == "a.b-c_d]e"
    assert bad(b"a NO\x01OP\r\n").tag == "a"
    assert bad(b"a NOOP\rb\r\n").tag == "a"  # bare CR inside a line


def test_quoted_strings() -> None:
    assert arg(b'a LOGIN "a\\\\b" "\\""\r\n') == LoginArgs("a\\b", '"')
    assert arg(b'a LOGIN "" ""\r\n') == LoginArgs("", "")
    bad(b'a LOGIN "a\\b" x\r\n')  # only \\ and \" escapes
    bad(b'a LOGIN "abc x\r\n')
    bad(b'a LOGIN "ab\x00c" x\r\n')
    bad(b"a LOGIN a%b x\r\n")  # atom-specials
    bad(b"a LOGIN a(b x\r\n")
    assert arg(b"a LOGIN a]b x\r\n").username == "a]b"  # resp-specials are ASTRING-CHARs


def test_mailbox_names_utf7_and_utf8() -> None:
    assert arg(b"a SELECT &ZeVnLIqe-\r\n") == SelectArgs("日本語")
    assert arg(b'a SELECT "&ZeVnLIqe-"\r\n', utf8=True) == SelectArgs("&ZeVnLIqe-")
    assert arg('a SELECT "Envoyés"\r\n'.encode(), utf8=True) == SelectArgs("Envoyés")
    assert arg(b"a SELECT Sales&-Marketing\r\n") == SelectArgs("Sales&Marketing")
    bad(b"a SELECT &Jjo!-\r\n")
    bad(b'a SELECT "a\x01b"\r\n'.replace(b"\x01", b"\x01"))
    bad(b"a SELECT {3}\r\na\nb\r\n")


# --- robustness -----------------------------------------------------------------------


def check_result(result: ParseResult, buf: bytes) -> None:
    assert isinstance(result, NeedMore | NeedContinuation | ParseError | Command)
    if isinstance(result, ParseError):
        assert result.consumed > 0
        assert "Internal error" not in result.message, result
    if isinstance(result, Command):
        assert 0 < result.consumed <= len(buf)
    if isinstance(result, NeedContinuation):
        assert result.size >= 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    check_result(parse(data, max_literal=64, max_line=200), data)


TOKENS = [
    b"a", b"1", b" ", b"  ", b"(", b")", b"[", b"]", b"<", b">", b".", b":", b",", b"*", b"$",
    b"%", b'"', b"\\", b"{", b"}", b"~", b"+", b"-", b"\r\n", b"\n", b"\r", b"\x00", b"\xc3\xa9",
    b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n", b"{0}\r\n", b"{99}\r\n", b"NIL", b"UID", b"FETCH",
    b"SEARCH", b"STORE", b"APPEND", b"LOGIN", b"LIST", b"SELECT", b"STATUS", b"ID", b"RETURN",
    b"CHARSET", b"UTF-8", b"BODY", b"BODY.PEEK[", b"BINARY[", b"HEADER.FIELDS", b"MIME", b"TEXT",
    b"1:*", b"NOT", b"OR", b"ALL", b"MODSEQ", b"CHANGEDSINCE", b"VANISHED", b"+FLAGS", b"\\Seen",
    b"QRESYNC", b"CONDSTORE", b"INBOX", b"&ZeVnLIqe-", b"&", b"1-Feb-1994",
    b'"01-Jan-2020 00:00:00 +0100"',
    b"USE", b"\\Drafts", b"SUBSCRIBED", b"RECURSIVEMATCH", b"AUTHENTICATE", b"=", b"ENABLE",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.booleans())
def test_fuzz_imap_tokens(tokens: list[bytes], utf8: bool) -> None:
    data = b"t " + b"".join(tokens)
    for buf in (data, data + b"\r\n"):
        check_result(parse(buf, max_literal=64, max_line=300, utf8=utf8), buf)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=60), st.lists(st.integers(0, 500), max_size=5))
def test_fuzz_server_loop_always_progresses(tokens: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(tokens)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in itertools.pairwise([0, *points, len(stream)])]
    for result in drive(chunks, max_literal=64, max_line=300):  # terminates: progress made
        check_result(result, stream)


def test_no_exception_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(reader: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(parser_module, "parse_command_body", boom)
    result = parse(b"a LOGIN {1+}\r\nx y\r\nb NOOP\r\n", max_literal=10)
    assert result == ParseError("a", "Internal error while parsing the command", 19)

    def framing_bug(*args: object) -> None:
        raise MemoryError

    monkeypatch.setattr(parser_module, "_frame", framing_bug)
    result = parse(b"a NOOP\r\nb NOOP\r\n", max_literal=10)
    assert result == ParseError(None, "Internal error while parsing the command", 8)


@pytest.mark.parametrize(
    "line",
    [
        b"a SEARCH " + b"ALL " * 250_000,
        b"a SEARCH " + b"NOT " * 250_000 + b"ALL",
        b"a SEARCH " + b"OR ALL " * 150_000 + b"ALL",
        b"a SEARCH " + b"OR " * 200_000 + b"ALL " * 200_001,
        b"a SEARCH " + b"(" * 1_000_000,
        b"a FETCH " + b"1:2," * 250_000 + b"3 FLAGS",
        b'a LOGIN "' + b"x" * 1_000_000,
        b'a LOGIN "' + b"\\\\" * 500_000 + b'" x',
        b"a " + b"X" * 1_000_000,
        b"a FETCH 1 (" + b"FLAGS " * 170_000 + b"UID)",
        b"a STORE 1 +FLAGS (" + b"$k " * 340_000 + b"$k)",
        b"{" * 1_000_000 + b"}",
    ],
)
def test_one_megabyte_lines_are_fast(line: bytes) -> None:
    assert len(line) >= 1_000_000
    # With the default limit the line is refused at once, without being parsed.
    started = time.perf_counter()
    result = parse(line + b"\r\n", max_literal=10)
    assert time.perf_counter() - started < 0.5
    assert isinstance(result, ParseError) and result.code == "TOOBIG"
    # With a limit above 1 MB it is parsed, in linear time (generous bound for slow CI).
    started = time.perf_counter()
    result = parse(line + b"\r\n", max_literal=10, max_line=2_000_000)
    assert time.perf_counter() - started < 10.0
    check_result(result, line + b"\r\n")


def best_time(data: bytes) -> float:
    times = []
    gc.disable()
    try:
        for _ in range(5):
            started = time.perf_counter()
            parse(data, max_literal=10, max_line=len(data))
            times.append(time.perf_counter() - started)
    finally:
        gc.enable()
    return min(times)


@pytest.mark.parametrize(
    "unit",
    [b"ALL ", b"NOT ", b"OR ALL ", b"(ALL) ", b"1:2,", b'"\\\\', b"OR NOT ALL ", b"x"],
)
def test_parsing_time_is_linear(unit: bytes) -> None:
    def line(n: int) -> bytes:
        return b"a SEARCH " + unit * n + b"ALL\r\n"

    small, large = best_time(line(4_000)), best_time(line(32_000))
    assert large < 24 * small + 0.05  # linear: 8 times slower; quadratic: 64 times


def test_long_or_chains_are_flattened() -> None:
    args = arg(b"a SEARCH " + b"OR ALL " * 100_000 + b"ALL\r\n", max_line=10**6)
    assert isinstance(args.key, SearchOr) and len(args.key.keys) == 100_001


def test_big_literal_arriving_in_chunks_is_linear() -> None:
    head = b"a APPEND INBOX {8000000+}\r\n"
    started = time.perf_counter()
    result = drive(
        [head] + [b"x" * 16384] * 488 + [b"x" * (8_000_000 - 16384 * 488) + b"\r\n"],
        max_literal=10**7,
    )
    assert time.perf_counter() - started < 5.0
    assert isinstance(result[-1], Command) and len(result[-1].args[0].message) == 8_000_000


def test_parse_line() -> None:
    assert parse_line(b"DONE\r\nx") == Line(b"DONE", 6)
    assert parse_line(b"DONE\n") == Line(b"DONE", 5)
    assert parse_line(b"DON") == NeedMore()
    assert parse_line(b"x" * 20, max_line=10) == ParseError(
        None, "Line too long", 20, "TOOBIG", True
    )
    assert parse_line(b"x" * 11 + b"\r\n", max_line=10) == ParseError(
        None, "Line too long", 13, "TOOBIG"
    )


# --- sequence sets --------------------------------------------------------------------


def test_sequence_set_representation() -> None:
    assert seq("5") == SequenceSet(((5, 5),))
    assert seq("5:*") == seq("*:5") == SequenceSet(((5, None),))
    assert seq("*") == SequenceSet(((None, None),))
    assert seq("7:3,9") == SequenceSet(((3, 7), (9, 9)))
    assert str(seq("7:3,9,*,2:*")) == "3:7,9,*,2:*"
    assert str(SequenceSet((), saved=True)) == "$"
    for text in ["0", "1:0", "", "1,", ",1", "1::2", "a", "4294967296", "1,$", "$:1", "**"]:
        with pytest.raises(ValueError):
            seq(text)
    with pytest.raises(ValueError):
        parse_sequence_set(b"$", allow_saved=False)


def test_sequence_set_helpers() -> None:
    s = seq("2,4:6,10:*")
    assert list(s.iterate(12)) == [2, 4, 5, 6, 10, 11, 12]
    assert s.intervals(12) == [(2, 2), (4, 6), (10, 12)]
    # 10:* with largest 3 is 3:10 (RFC 3501 §6.4.8): contains 3.
    assert list(s.iterate(3)) == [2, 3]
    assert s.contains(3, 3) and not s.contains(3, 12) and not s.contains(13, 12)
    assert list(seq("*").iterate(7)) == [7]
    assert list(seq("1:5,3:8,9").iterate(100)) == list(range(1, 10))
    assert seq("1:*").intervals(0) == []
    huge = seq("1:4294967295")
    assert huge.contains(4_000_000_000, 4294967295)
    assert list(itertools.islice(huge.iterate(4294967295), 3)) == [1, 2, 3]
    with pytest.raises(ValueError):
        SequenceSet((), saved=True).contains(1, 5)


@given(
    st.lists(st.tuples(st.integers(1, 40) | st.none(), st.integers(1, 40) | st.none()), min_size=1),
    st.integers(0, 45),
)
def test_sequence_set_contains_matches_iterate(
    pairs: list[tuple[int | None, int | None]], largest: int
) -> None:
    text = ",".join(f"{'*' if a is None else a}:{'*' if b is None else b}" for a, b in pairs)
    s = seq(text)
    members = list(s.iterate(largest))
    assert members == sorted(set(members))
    assert members == [n for n in range(1, largest + 1) if s.contains(n, largest)]
    assert seq(str(s)) == s


# --- modified UTF-7 -------------------------------------------------------------------


def test_modified_utf7_examples() -> None:
    assert decode_mailbox_name("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"
    assert encode_mailbox_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert encode_mailbox_name("A&B") == "A&-B"
    assert decode_mailbox_name("A&-B") == "A&B"
    assert encode_mailbox_name("Éléments envoyés") == "&AMk-l&AOk-ments envoy&AOk-s"
    assert encode_mailbox_name("😀") == "&2D3eAA-"
    assert decode_mailbox_name("&2D3eAA-") == "😀"
    assert decode_mailbox_name("&ZeVnLIqe-", utf8=True) == "&ZeVnLIqe-"
    for wrong in ["&", "&ZeVnLIqe", "&Jjo!-", "&AGE", "&2D0-", "&A-", "a\x01b"]:
        with pytest.raises(ValueError):
            decode_mailbox_name(wrong)
    assert normalize_mailbox_name("iNbOx") == "INBOX"
    assert normalize_mailbox_name("ınbox") == "ınbox"  # dotless i is not ASCII
    assert normalize_mailbox_name("INBOX/Sub") == "INBOX/Sub"


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"))))
def test_modified_utf7_round_trip(name: str) -> None:
    encoded = encode_mailbox_name(name)
    assert encoded.isascii()
    assert decode_mailbox_name(encoded) == name
