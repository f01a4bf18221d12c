"""SEARCH evaluation on one message (mssante.imap.search_eval), key by key."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssante.imap.message import ParsedMessage
from mssante.imap.search_adapt import to_eval_key
from mssante.imap.search_eval import MessageContext, SearchKey, matches
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
from mssante.imap.search_text import strip_html
from mssante.imap.sequence import SequenceSet


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


REPORT = (
    crlf("""From: =?UTF-8?Q?H=C3=A9l=C3=A8ne_Dupr=C3=A9?= <helene@hopital.mssante.fr>
To: Éloïse Bérard <eloise@cabinet.mssante.fr>, bob@pharmacie.mssante.fr
Cc: "Labo" <labo@labo.mssante.fr>
Bcc: archive@hopital.mssante.fr
Subject: =?UTF-8?B?UsOpc3VsdGF0cyBkJ2FuYWx5c2U=?=
 =?UTF-8?Q?_urgents?=
Date: Tue, 2 Jan 2024 23:30:00 -0500
Message-ID: <na-1@hopital.mssante.fr>
X-Priorite: haute
X-Empty:
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: multipart/alternative; boundary="a"

--a
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Taux d'h=E9moglobine normal. Contr=F4le dans une semaine, avec un =
rendez-vous confirm=E9.
--a
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

""")
    + base64.encodebytes(
        "<html><style>p {color: red}</style><p>R&eacute;sultats <b>tr&egrave;s</b> "
        "satisfaisants</p><script>var hidden = 'cach\u00e9';</script></html>".encode()
    ).replace(b"\n", b"\r\n")
    + crlf("""--a--
--m
Content-Type: application/pdf; name="cr.pdf"
Content-Transfer-Encoding: base64

""")
    + base64.encodebytes(b"%PDF-1.4 secretpdfword").replace(b"\n", b"\r\n")
    + crlf("""--m
Content-Type: message/rfc822

From: inner@labo.mssante.fr
Subject: =?ISO-8859-1?Q?Bilan_pr=E9liminaire?=

Texte de l'examen joint.
--m--
""")
)

PLAIN = crlf("""From: bob@pharmacie.mssante.fr
To: alice@hopital.mssante.fr
Subject: Stock
Date: garbage date

Nothing special here.
""")

INTERNAL = datetime(2024, 1, 3, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # Jan 2 22:30 UTC


def ctx(
    raw: bytes = REPORT,
    *,
    flags: frozenset[str] = frozenset(),
    seq: int = 3,
    uid: int = 42,
    size: int | None = None,
    modseq: int = 100,
    internal: datetime = INTERNAL,
    load: Callable[[], bytes | ParsedMessage] | None = None,
) -> MessageContext:
    return MessageContext(
        seq=seq,
        uid=uid,
        flags=flags,
        internal_date=internal,
        size=len(raw) if size is None else size,
        modseq=modseq,
        load=load or (lambda: raw),
    )


def test_all() -> None:
    assert matches(("ALL",), ctx())
    assert matches(("all",), ctx())


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("ANSWERED", "\\Answered"),
        ("DELETED", "\\Deleted"),
        ("DRAFT", "\\Draft"),
        ("FLAGGED", "\\Flagged"),
        ("SEEN", "\\Seen"),
        ("RECENT", "\\Recent"),
    ],
)
def test_system_flags(name: str, flag: str) -> None:
    with_flag = ctx(flags=frozenset({flag}))
    without = ctx(flags=frozenset({"\\Other"}))
    assert matches((name,), with_flag) and not matches((name,), without)
    assert matches((flag.upper().lstrip("\\"),), ctx(flags=frozenset({flag.upper()})))
    if name != "RECENT":
        assert not matches(("UN" + name,), with_flag) and matches(("UN" + name,), without)


def test_new_and_old() -> None:
    recent = ctx(flags=frozenset({"\\Recent"}))
    recent_seen = ctx(flags=frozenset({"\\Recent", "\\Seen"}))
    assert matches(("NEW",), recent) and not matches(("NEW",), recent_seen)
    assert not matches(("OLD",), recent) and matches(("OLD",), ctx())


def test_keyword_and_unkeyword() -> None:
    c = ctx(flags=frozenset({"$Urgent", "\\Seen"}))
    assert matches(("KEYWORD", "$Urgent"), c)
    assert matches(("KEYWORD", "$URGENT"), c)  # case-insensitive
    assert matches(("KEYWORD", "\\seen"), c)
    assert not matches(("KEYWORD", "$Junk"), c)
    assert matches(("UNKEYWORD", "$Junk"), c)
    assert not matches(("UNKEYWORD", "$urgent"), c)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (("FROM", "hélène"), True),  # RFC 2047 decoded, case-insensitive
        (("FROM", "HÉLÈNE DUPRÉ"), True),
        (("FROM", "helene@hopital"), True),
        (("FROM", "bob"), False),
        (("TO", "bérard"), True),  # raw UTF-8 header
        (("TO", "pharmacie.mssante.fr"), True),
        (("TO", "labo"), False),
        (("CC", "labo@labo"), True),
        (("BCC", "archive"), True),
        (("BCC", "nobody"), False),
        (("SUBJECT", "résultats d'analyse urgents"), True),  # two encoded words joined
        (("SUBJECT", "RESULTATS"), False),  # no accent folding
        (("SUBJECT", "bilan"), False),  # the attached message's subject is not ours
        (("SUBJECT", b"urgents"), True),  # bytes are read as UTF-8
        (("SUBJECT", ""), True),
    ],
)
def test_address_and_subject_keys(key: SearchKey, expected: bool) -> None:
    assert matches(key, ctx()) is expected


def test_header_key() -> None:
    c = ctx()
    assert matches(("HEADER", "X-Priorite", "HAUTE"), c)
    assert matches(("HEADER", "x-priorite", ""), c)  # empty string: the field exists
    assert matches(("HEADER", "X-Empty", ""), c)
    assert not matches(("HEADER", "X-Missing", ""), c)
    assert matches(("HEADER", "Message-ID", "na-1@"), c)
    assert matches(("HEADER", "Subject", "  urgents"), c)  # whitespace collapsed
    assert not matches(("HEADER", "X-Priorite", "basse"), c)


@pytest.mark.parametrize(
    ("text", "body", "text_key"),
    [
        ("hémoglobine", True, True),  # quoted-printable, iso-8859-1
        ("HÉMOGLOBINE NORMAL", True, True),
        ("rendez-vous confirmé", True, True),  # soft line break joined
        ("contrôle dans une semaine, avec", True, True),
        ("résultats très satisfaisants", True, True),  # base64 HTML, tags and entities
        ("color: red", False, False),  # style dropped
        ("caché", False, False),  # script dropped
        ("secretpdfword", False, False),  # attachments are not text
        ("texte de l'examen", True, True),  # attached message body
        ("bilan préliminaire", True, True),  # attached message header (RFC 2047)
        ("x-priorite: haute", False, True),  # our own header: TEXT only
        ("hélène", False, True),
        ("absent-word", False, False),
    ],
)
def test_body_and_text(text: str, body: bool, text_key: bool) -> None:
    assert matches(("BODY", text), ctx()) is body
    assert matches(("TEXT", text), ctx()) is text_key


def test_body_of_non_mime_and_unknown_charset() -> None:
    assert matches(("BODY", "nothing SPECIAL"), ctx(PLAIN))
    weird = (
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=x-unknown-42\r\n\r\ncaf\xc3\xa9"
    )
    assert matches(("BODY", "café"), ctx(weird))
    rot = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=rot13\r\n\r\nabc"
    assert matches(("BODY", "abc"), ctx(rot))  # not a text codec: read as UTF-8
    latin = b"Subject: r\xe9sum\xe9\r\n\r\nd\xe9j\xe0"
    assert matches(("SUBJECT", "résumé"), ctx(latin))  # 8-bit, not UTF-8: Latin-1
    assert matches(("BODY", "déjà"), ctx(latin))


def test_internal_date_keys_use_utc_day() -> None:
    c = ctx()  # 2024-01-03 00:30 +02:00 is 2024-01-02 22:30 UTC
    assert matches(("ON", date(2024, 1, 2)), c)
    assert not matches(("ON", date(2024, 1, 3)), c)
    assert matches(("BEFORE", date(2024, 1, 3)), c)
    assert not matches(("BEFORE", date(2024, 1, 2)), c)
    assert matches(("SINCE", date(2024, 1, 2)), c)
    assert not matches(("SINCE", date(2024, 1, 3)), c)
    naive = ctx(internal=datetime(2024, 1, 3, 0, 30))  # naive: UTC
    assert matches(("ON", date(2024, 1, 3)), naive)
    assert matches(("ON", datetime(2024, 1, 2, 12, 0)), c)  # a datetime is taken as its day


def test_sent_date_keys_disregard_time_and_zone() -> None:
    c = ctx()  # Date: Tue, 2 Jan 2024 23:30:00 -0500 (Jan 3 04:30 UTC): the day is Jan 2
    assert matches(("SENTON", date(2024, 1, 2)), c)
    assert not matches(("SENTON", date(2024, 1, 3)), c)
    assert matches(("SENTBEFORE", date(2024, 1, 3)), c)
    assert not matches(("SENTBEFORE", date(2024, 1, 2)), c)
    assert matches(("SENTSINCE", date(2024, 1, 2)), c)
    assert not matches(("SENTSINCE", date(2024, 1, 3)), c)


def test_sent_date_falls_back_to_internal_date() -> None:
    c = ctx(PLAIN, internal=datetime(2023, 5, 6, 7, 8, tzinfo=UTC))  # "Date: garbage date"
    assert matches(("SENTON", date(2023, 5, 6)), c)
    no_date = ctx(b"Subject: x\r\n\r\n", internal=datetime(2023, 5, 6, tzinfo=UTC))
    assert matches(("SENTSINCE", date(2023, 5, 6)), no_date)


def test_size_keys() -> None:
    c = ctx(size=1000)
    assert matches(("LARGER", 999), c) and not matches(("LARGER", 1000), c)
    assert matches(("SMALLER", 1001), c) and not matches(("SMALLER", 1000), c)


def test_uid_and_sequence_keys() -> None:
    c = ctx(seq=3, uid=42)
    assert matches(("UID", range(40, 50)), c)
    assert not matches(("UID", {1, 2, 3}), c)
    assert matches(("UID", lambda n: n % 2 == 0), c)
    assert matches(("SEQ", [1, 3]), c)
    assert not matches(("SEQ", frozenset({42})), c)


def test_modseq_key() -> None:
    c = ctx(modseq=100)
    assert matches(("MODSEQ", 100), c) and matches(("MODSEQ", 1), c)
    assert not matches(("MODSEQ", 101), c)
    assert matches(("MODSEQ", 50, "\\Seen", "all"), c)  # entry name/type accepted


def test_older_and_younger() -> None:
    now = datetime(2024, 1, 2, 23, 30, tzinfo=UTC)  # one hour after the internal date
    assert matches(("YOUNGER", 3600), ctx(), now=now)
    assert not matches(("YOUNGER", 3599), ctx(), now=now)
    assert matches(("OLDER", 3599), ctx(), now=now)
    assert not matches(("OLDER", 3600), ctx(), now=now)


def test_boolean_keys() -> None:
    c = ctx(flags=frozenset({"\\Seen"}))
    assert matches(("NOT", ("DELETED",)), c)
    assert not matches(("NOT", ("SEEN",)), c)
    assert matches(("OR", ("DELETED",), ("SEEN",)), c)
    assert not matches(("OR", ("DELETED",), ("DRAFT",)), c)
    assert matches(("OR", ("DELETED",), ("DRAFT",), ("SUBJECT", "urgents")), c)  # n-ary
    assert matches(("AND", [("SEEN",), ("FROM", "hélène")]), c)
    assert not matches(("AND", [("SEEN",), ("FROM", "nobody")]), c)
    assert matches(("AND", ("SEEN",), ("UNDELETED",)), c)  # varargs form
    assert matches(("AND", []), c)
    nested = ("AND", [("NOT", ("OR", ("DELETED",), ("DRAFT",))), ("NOT", ("NOT", ("SEEN",)))])
    assert matches(nested, c)


def test_message_is_loaded_only_when_needed() -> None:
    calls: list[int] = []

    def load() -> bytes:
        calls.append(1)
        return REPORT

    c = ctx(load=load)
    assert matches(("AND", [("SEEN",), ("BODY", "hémoglobine")]), c) is False
    assert calls == []  # the cheap key failed first
    assert matches(("OR", ("UID", {42}), ("BODY", "x")), c)
    assert calls == []
    assert matches(("BODY", "hémoglobine"), c) and matches(("TEXT", "hélène"), c)
    assert calls == [1]  # loaded once, then cached


def test_parsed_message_loader() -> None:
    parsed = ParsedMessage(REPORT)
    assert matches(("SUBJECT", "urgents"), ctx(load=lambda: parsed))


@pytest.mark.parametrize(
    "key",
    [
        ("NOPE",),
        (),
        ("LARGER", "12"),
        ("LARGER", True),
        ("SINCE", "2024-01-01"),
        ("UID", 42),
        ("FROM", 12),
        ("OR", ("ALL",)),
        ("NOT", "ALL"),
        ("FROM",),
    ],
)
def test_bad_keys_raise_value_error(key: SearchKey) -> None:
    with pytest.raises(ValueError):
        matches(key, ctx())


def test_strip_html_is_linear_on_hostile_input() -> None:
    assert strip_html("a<b>c</b>&amp;d") == "a c &d"
    assert strip_html("x<script>never closed") == "x"
    assert strip_html("<" * 200_000) == ""
    assert strip_html("<script" * 50_000).strip() == ""


# --- the command parser's tree -------------------------------------------------------------


def test_adapter_translates_every_parser_node() -> None:
    c = ctx(flags=frozenset({"\\Seen", "$Urgent"}), seq=3, uid=42, size=5000)
    count, max_uid = 10, 50

    def ok(node: object) -> bool:
        key = to_eval_key(node, message_count=count, max_uid=max_uid)  # type: ignore[arg-type]
        return matches(key, c)

    assert ok(SearchAll())
    assert ok(SearchFlag("\\Seen")) and not ok(SearchFlag("\\Seen", present=False))
    assert ok(SearchFlag("$Urgent")) and ok(SearchFlag("$Junk", present=False))
    assert ok(SearchHeader("From", "hélène")) and not ok(SearchHeader("To", "hélène"))
    assert ok(SearchText("hémoglobine", body_only=True))
    assert ok(SearchText("x-priorite", body_only=False))
    assert not ok(SearchText("x-priorite", body_only=True))
    assert ok(SearchDate("on", date(2024, 1, 2))) and ok(SearchDate("on", date(2024, 1, 2), True))
    assert ok(SearchDate("before", date(2024, 1, 3))) and not ok(
        SearchDate("since", date(2025, 1, 1))
    )
    assert ok(SearchSize("larger", 4999)) and not ok(SearchSize("smaller", 5000))
    assert ok(SearchSequence(SequenceSet(((1, 3),)))) and not ok(
        SearchSequence(SequenceSet(((4, None),)))
    )
    assert ok(SearchSequence(SequenceSet(((None, None),)), uid=False)) is False  # * is 10
    assert ok(SearchSequence(SequenceSet(((40, None),)), uid=True))  # 40:* with max 50
    assert ok(SearchModSeq(100)) and not ok(SearchModSeq(101))
    assert ok(SearchModSeq(1, "\\Seen", "all"))
    assert ok(SearchNot(SearchFlag("\\Deleted")))
    assert ok(SearchOr((SearchFlag("\\Deleted"), SearchFlag("\\Seen"))))
    assert not ok(SearchAnd((SearchFlag("\\Deleted"), SearchFlag("\\Seen"))))


def test_adapter_saved_result() -> None:
    saved = SearchSequence(SequenceSet((), saved=True))
    with_saved = to_eval_key(saved, message_count=10, max_uid=50, saved={42})
    assert matches(with_saved, ctx(uid=42)) and not matches(with_saved, ctx(uid=43))
    nothing = to_eval_key(saved, message_count=10, max_uid=50)
    assert not matches(nothing, ctx(uid=42))


# --- hostile messages ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.text(max_size=10))
def test_any_message_any_text_never_raises(raw: bytes, needle: str) -> None:
    c = ctx(raw)
    for key in (("TEXT", needle), ("BODY", needle), ("FROM", needle), ("SENTON", date.today())):
        assert isinstance(matches(key, c), bool)
