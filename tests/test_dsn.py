"""DSN builder/parser: RFC 3464 inside RFC 6522 multipart/report (R23, R24, R26, R27)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante.formats.dsn import (
    DEFAULT_MAX_ORIGINAL_SIZE,
    ParsedDSN,
    RecipientStatus,
    build_dsn,
    parse_dsn,
    split_typed,
    xtext_decode,
    xtext_encode,
)

NOW = datetime(2024, 5, 2, 9, 30, tzinfo=UTC)
ARRIVAL = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
ORIGINAL = (
    b"From: Dr A <dr.a@hopital.mssante.fr>\r\n"
    b"To: <dr.b@clinique.mssante.fr>\r\n"
    b"Subject: Compte rendu\r\n"
    b"Message-ID: <orig-1@hopital.mssante.fr>\r\n"
    b"\r\n"
    b"Corps du message confidentiel.\r\n"
)
HEADERS = ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
TOP_HEADERS = [
    "From",
    "To",
    "Date",
    "Message-ID",
    "Subject",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
]


def failed(addr: str = "dr.b@clinique.mssante.fr", **kw: Any) -> RecipientStatus:
    kw.setdefault("diagnostic_code", "smtp; 550 5.1.1 <dr.b@clinique.mssante.fr>: unknown user")
    kw.setdefault("remote_mta", "dns; mx.clinique.mssante.fr")
    kw.setdefault("last_attempt", NOW)
    return RecipientStatus(addr, "failed", "5.1.1", **kw)


def delivered(addr: str = "dr.c@hopital.mssante.fr", **kw: Any) -> RecipientStatus:
    return RecipientStatus(addr, "delivered", "2.0.0", **kw)


def delayed(addr: str = "dr.d@autre.mssante.fr", **kw: Any) -> RecipientStatus:
    kw.setdefault("diagnostic_code", "smtp; 451 4.4.1 connection timed out")
    kw.setdefault("will_retry_until", NOW + timedelta(days=5))
    kw.setdefault("last_attempt", NOW)
    return RecipientStatus(addr, "delayed", "4.4.1", **kw)


def build(recipients: list[RecipientStatus] | None = None, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "reporting_mta": "mx.hopital.mssante.fr",
        "from_address": "MAILER-DAEMON@hopital.mssante.fr",
        "to_address": "dr.a@hopital.mssante.fr",
        "recipients": recipients if recipients is not None else [failed()],
        "original_headers": HEADERS,
        "original_message": ORIGINAL,
        "ret": None,
        "envid": None,
        "arrival_date": ARRIVAL,
        "original_message_id": "<orig-1@hopital.mssante.fr>",
        "original_subject": "Compte rendu",
        "message_id_domain": "hopital.mssante.fr",
        "now": NOW,
    }
    args.update(kw)
    return build_dsn(**args)


def parse_std(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(data: bytes) -> list[EmailMessage]:
    return list(parse_std(data).iter_parts())  # type: ignore[arg-type]


def status_blocks(data: bytes) -> list[list[str]]:
    """Field names of every block of the message/delivery-status part, in order."""
    payload = parts(data)[1].get_payload()
    assert isinstance(payload, list)
    return [list(block.keys()) for block in payload if isinstance(block, Message)]


def check_wire_format(data: bytes) -> None:
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    head = data.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))


# --- structure --------------------------------------------------------------------------------


def test_failure_dsn_single_recipient() -> None:
    data = build()
    check_wire_format(data)
    assert data.isascii(), "7-bit clean"
    msg = parse_std(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert list(msg.keys()) == TOP_HEADERS
    assert str(msg["Subject"]) == "Échec de remise : Compte rendu"
    assert [p.get_content_type() for p in parts(data)] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert status_blocks(data) == [
        ["Reporting-MTA", "Arrival-Date"],
        [
            "Final-Recipient",
            "Action",
            "Status",
            "Remote-MTA",
            "Diagnostic-Code",
            "Last-Attempt-Date",
        ],
    ]
    dsn = parse_dsn(data)
    assert dsn.report_type == "delivery-status"
    assert dsn.reporting_mta == "dns; mx.hopital.mssante.fr"
    assert parsedate_to_datetime(dsn.per_message["arrival-date"]) == ARRIVAL
    (rcpt,) = dsn.recipients
    assert rcpt["final-recipient"] == "rfc822; dr.b@clinique.mssante.fr"
    assert rcpt["action"] == "failed"
    assert rcpt["status"] == "5.1.1"
    assert rcpt["remote-mta"] == "dns; mx.clinique.mssante.fr"
    assert rcpt["diagnostic-code"].startswith("smtp; 550 5.1.1 ")
    assert parsedate_to_datetime(rcpt["last-attempt-date"]) == NOW
    assert "original-recipient" not in rcpt  # RFC 3461 §6.3(d): only with ORCPT


def test_top_level_headers() -> None:
    msg = parse_std(build())
    assert msg["From"].addresses[0].display_name == "Système de messagerie"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@hopital.mssante.fr"
    assert msg["To"].addresses[0].addr_spec == "dr.a@hopital.mssante.fr"
    assert parsedate_to_datetime(str(msg["Date"])) == NOW
    assert re.fullmatch(r"<[^<>@\s]+@hopital\.mssante\.fr>", str(msg["Message-ID"]))
    assert str(msg["In-Reply-To"]) == "<orig-1@hopital.mssante.fr>"
    assert str(msg["References"]) == "<orig-1@hopital.mssante.fr>"
    assert str(msg["Auto-Submitted"]) == "auto-replied"
    assert str(msg["MIME-Version"]) == "1.0"


def test_message_ids_are_fresh() -> None:
    ids = {str(parse_std(build())["Message-ID"]) for _ in range(20)}
    assert len(ids) == 20


def test_success_dsn() -> None:
    data = build([delivered()], ret="FULL", original_subject="Résultats")
    msg = parse_std(data)
    assert str(msg["Subject"]) == "Remise effectuée : Résultats"
    dsn = parse_dsn(data)
    assert [(r["action"], r["status"]) for r in dsn.recipients] == [("delivered", "2.0.0")]
    # RFC 3461 §4.3: RET=FULL concerns failure reports; a success returns headers only.
    assert dsn.returned_content_type == "text/rfc822-headers"
    assert "remis" in dsn.human_readable


def test_delayed_dsn() -> None:
    data = build([delayed()])
    assert str(parse_std(data)["Subject"]) == "Remise retardée : Compte rendu"
    (rcpt,) = parse_dsn(data).recipients
    assert rcpt["action"] == "delayed"
    assert rcpt["status"] == "4.4.1"
    assert parsedate_to_datetime(rcpt["will-retry-until"]) == NOW + timedelta(days=5)
    assert "retardée" in parse_dsn(data).human_readable


def test_will_retry_until_only_for_delayed() -> None:
    data = build([failed(will_retry_until=NOW)])
    assert "will-retry-until" not in parse_dsn(data).recipients[0]


def test_several_recipients_worst_action_wins() -> None:
    recipients = [delivered(), delayed(), failed(), delivered("dr.e@hopital.mssante.fr")]
    data = build(recipients)
    assert str(parse_std(data)["Subject"]).startswith("Échec de remise")
    dsn = parse_dsn(data)
    assert [r["action"] for r in dsn.recipients] == ["delivered", "delayed", "failed", "delivered"]
    assert [split_typed(r["final-recipient"])[1] for r in dsn.recipients] == [
        "dr.c@hopital.mssante.fr",
        "dr.d@autre.mssante.fr",
        "dr.b@clinique.mssante.fr",
        "dr.e@hopital.mssante.fr",
    ]
    assert len(status_blocks(data)) == 5
    for rcpt in recipients:
        assert split_typed(rcpt.final_recipient)[1] in dsn.human_readable


def test_several_delayed_and_delivered() -> None:
    data = build([delivered(), delayed("x@autre.mssante.fr"), delayed()])
    assert str(parse_std(data)["Subject"]).startswith("Remise retardée")
    data = build([delivered(), delivered("y@hopital.mssante.fr")], original_subject=None)
    assert str(parse_std(data)["Subject"]) == "Remise effectuée"


def test_human_readable_part() -> None:
    text_part = parts(build([failed(), delayed()]))[0]
    assert text_part.get_content_type() == "text/plain"
    assert text_part.get_content_charset() == "utf-8"  # R26
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert 'charset="UTF-8"' in str(text_part["Content-Type"])
    text = text_part.get_content()
    assert "n'a pas pu être remis" in text
    assert "dr.b@clinique.mssante.fr" in text
    assert "5.1.1" in text
    assert "550 5.1.1" in text
    assert "4.4.1" in text
    assert "Compte rendu" in text
    last = text.strip().splitlines()[-1]
    assert "could not be delivered" in last  # the short English line comes after


def test_naive_datetimes_are_utc() -> None:
    naive = datetime(2024, 5, 1, 8, 0)
    dsn = parse_dsn(build(arrival_date=naive, now=naive))
    assert parsedate_to_datetime(dsn.per_message["arrival-date"]) == ARRIVAL


def test_no_in_reply_to_without_original_message_id() -> None:
    msg = parse_std(build(original_message_id=None))
    assert "In-Reply-To" not in msg
    assert "References" not in msg


def test_message_id_without_brackets_and_hostile_one() -> None:
    msg = parse_std(build(original_message_id="abc@x.mssante.fr"))
    assert str(msg["In-Reply-To"]) == "<abc@x.mssante.fr>"
    msg = parse_std(build(original_message_id="<a@b>\r\nBcc: evil@example.com"))
    assert "In-Reply-To" not in msg
    assert "Bcc" not in msg


# --- returned content (RET) -------------------------------------------------------------------


def test_ret_full_returns_whole_message() -> None:
    data = build(ret="FULL")
    third = parts(data)[2]
    assert third.get_content_type() == "message/rfc822"
    dsn = parse_dsn(data)
    assert dsn.returned_content_type == "message/rfc822"
    assert dsn.returned_content is not None
    assert b"Corps du message confidentiel." in dsn.returned_content
    assert b"Subject: Compte rendu" in dsn.returned_content


@pytest.mark.parametrize("ret", ["HDRS", None])
def test_ret_hdrs_or_absent_returns_headers_only(ret: str | None) -> None:
    dsn = parse_dsn(build(ret=ret))
    assert dsn.returned_content_type == "text/rfc822-headers"
    assert dsn.returned_content is not None
    assert b"Subject: Compte rendu" in dsn.returned_content
    assert b"confidentiel" not in dsn.returned_content


def test_full_over_size_cap_falls_back_to_headers() -> None:
    data = build(ret="FULL", max_original_size=len(ORIGINAL) - 1)
    dsn = parse_dsn(data)
    assert dsn.returned_content_type == "text/rfc822-headers"
    assert dsn.returned_content is not None
    assert b"confidentiel" not in dsn.returned_content
    assert DEFAULT_MAX_ORIGINAL_SIZE == 10 * 1024 * 1024


def test_full_without_original_message_returns_headers() -> None:
    dsn = parse_dsn(build(ret="FULL", original_message=None))
    assert dsn.returned_content_type == "text/rfc822-headers"


def test_headers_are_cut_at_the_body_and_line_endings_fixed() -> None:
    data = build(original_headers=b"Subject: a\nX-Test: b\n\nbody must not leak\n")
    check_wire_format(data)
    dsn = parse_dsn(data)
    assert dsn.returned_content is not None
    assert b"X-Test: b" in dsn.returned_content
    assert b"leak" not in dsn.returned_content


def test_headers_taken_from_message_when_not_given() -> None:
    dsn = parse_dsn(build(original_headers=b""))
    assert dsn.returned_content is not None
    assert b"Subject: Compte rendu" in dsn.returned_content
    assert b"confidentiel" not in dsn.returned_content


def test_eight_bit_original_is_declared() -> None:
    original = "Subject: déjà\r\n\r\nCorps é\r\n".encode()
    data = build(ret="FULL", original_message=original, original_headers=b"")
    msg = parse_std(data)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert parts(data)[2]["Content-Transfer-Encoding"] == "8bit"
    assert msg.get_content_type() == "multipart/report"


def test_full_message_with_bare_lf_is_normalised() -> None:
    data = build(ret="FULL", original_message=b"Subject: x\n\nline1\nline2")
    check_wire_format(data)
    dsn = parse_dsn(data)
    assert dsn.returned_content is not None
    assert b"line1\r\nline2" in dsn.returned_content


# --- ENVID / ORCPT / xtext ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plain", "encoded"),
    [
        ("QQ314159", "QQ314159"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("with space", "with+20space"),
        ("é", "+C3+A9"),
        ("", ""),
        ("tab\there\r\n", "tab+09here+0D+0A"),
    ],
)
def test_xtext_examples(plain: str, encoded: str) -> None:
    assert xtext_encode(plain) == encoded
    assert xtext_decode(encoded) == plain


def test_xtext_decode_tolerates_lower_case_hex() -> None:
    assert xtext_decode("a+2bb") == "a+b"


@pytest.mark.parametrize(
    "bad", ["a+", "a+2", "a+G0", "+2G", "a=b", "a b", "é", "a\r\nb", "+FF", "+C3"]
)
def test_xtext_decode_rejects_invalid(bad: str) -> None:
    with pytest.raises(ValueError, match="xtext"):
        xtext_decode(bad)


@given(st.text())
def test_xtext_round_trip(value: str) -> None:
    encoded = xtext_encode(value)
    assert all("!" <= c <= "~" and c != "=" for c in encoded)
    assert xtext_decode(encoded) == value


def test_envid_plain_is_copied() -> None:
    dsn = parse_dsn(build(envid="QQ+314159"))
    assert dsn.original_envelope_id == "QQ+314159"
    assert status_blocks(build(envid="x"))[0][0] == "Original-Envelope-Id"


def test_envid_with_special_characters_is_xtext_encoded() -> None:
    dsn = parse_dsn(build(envid="lot 42\r\nBcc: x"))
    assert dsn.original_envelope_id == "lot+2042+0D+0ABcc:+20x"
    assert xtext_decode(dsn.original_envelope_id) == "lot 42\r\nBcc: x"


def test_envid_absent_and_too_long() -> None:
    assert parse_dsn(build(envid=None)).original_envelope_id is None
    with pytest.raises(ValueError, match="ENVID"):
        build(envid="x" * 101)


def test_orcpt_is_kept_as_given() -> None:
    orcpt = xtext_decode("rfc822;Dr.B+2Bcardio@clinique.mssante.fr")
    data = build([failed(original_recipient=orcpt)])
    (rcpt,) = parse_dsn(data).recipients
    assert rcpt["original-recipient"] == "rfc822;Dr.B+cardio@clinique.mssante.fr"
    assert status_blocks(data)[1][0] == "Original-Recipient"


def test_orcpt_without_type_gets_rfc822() -> None:
    (rcpt,) = parse_dsn(build([failed(original_recipient="x@y.mssante.fr")])).recipients
    assert rcpt["original-recipient"] == "rfc822;x@y.mssante.fr"


def test_typed_values_are_accepted_or_completed() -> None:
    rcpt = RecipientStatus(
        "rfc822;dr.b@clinique.mssante.fr",
        "failed",
        "5.0.0",
        remote_mta="mx.clinique.mssante.fr",
        diagnostic_code="550 rejected",
    )
    (got,) = parse_dsn(build([rcpt], reporting_mta="dns;mx.hopital.mssante.fr")).recipients
    assert got["final-recipient"] == "rfc822; dr.b@clinique.mssante.fr"
    assert got["remote-mta"] == "dns; mx.clinique.mssante.fr"
    assert got["diagnostic-code"] == "smtp; 550 rejected"
    assert split_typed("dns; mx") == ("dns", "mx")
    assert split_typed("a@b") == ("rfc822", "a@b")


# --- subjects and text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Résultats d'analyses : glycémie",
        "日本語の件名",
        "emoji 🏥 compte rendu",
        "=?utf-8?q?not_an_encoded_word?= literal",
        "a" * 300,
        "x " * 200,
    ],
)
def test_subjects_are_encoded_and_round_trip(subject: str) -> None:
    data = build(original_subject=subject)
    check_wire_format(data)
    assert data.split(b"\r\n\r\n")[0].isascii()
    got = str(parse_std(data)["Subject"])
    assert got == "Échec de remise : " + " ".join(subject.split())[:250]


def test_non_ascii_diagnostic_is_escaped_in_the_report_and_readable_in_the_text() -> None:
    data = build([failed(diagnostic_code="smtp; 552 5.2.2 Boîte pleine")])
    assert data.isascii()
    (rcpt,) = parse_dsn(data).recipients
    assert rcpt["diagnostic-code"] == "smtp; 552 5.2.2 Bo\\x{EE}te pleine"  # RFC 6533 §3
    assert "Boîte pleine" in parse_dsn(data).human_readable


def test_long_diagnostic_is_folded() -> None:
    diag = "smtp; 550 5.7.1 " + "policy rejection detail " * 20
    data = build([failed(diagnostic_code=diag)])
    check_wire_format(data)
    assert parse_dsn(data).recipients[0]["diagnostic-code"] == " ".join(diag.split())


@pytest.mark.parametrize("name", ["Postmaster", "Dr. X, (service)", "Système d'hôpital"])
def test_display_name(name: str) -> None:
    data = build(from_display_name=name)
    check_wire_format(data)
    sender = parse_std(data)["From"].addresses[0]
    assert sender.display_name == name
    assert sender.addr_spec == "MAILER-DAEMON@hopital.mssante.fr"


def test_long_non_ascii_display_name_follows_rfc2047() -> None:
    # Several encoded-words: the whitespace between them is not part of the text
    # (RFC 2047 §6.2); email.header implements that rule, the policy.default phrase
    # parser does not, so decode the raw field here.
    name = "Système de messagerie de l'hôpital 日本語" * 2
    data = build(from_display_name=name)
    check_wire_format(data)
    raw = email.message_from_bytes(data)["From"]
    phrase = raw.rsplit("<", 1)[0]
    assert str(make_header(decode_header(phrase))).strip() == name[:64]


# --- input validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipients": []}, "at least one"),
        ({"recipients": [RecipientStatus("a@b.fr", "failed", "5.1")]}, "enhanced status"),
        ({"recipients": [RecipientStatus("a@b.fr", "failed", "2.0.0")]}, "does not fit"),
        ({"recipients": [RecipientStatus("a@b.fr", "delivered", "5.0.0")]}, "does not fit"),
        ({"recipients": [RecipientStatus("a@b.fr", "delayed", "5.0.0")]}, "does not fit"),
        ({"recipients": [RecipientStatus("a@b.fr", "bounced", "5.0.0")]}, "unknown DSN action"),  # type: ignore[arg-type]
        ({"message_id_domain": "bad domain"}, "message_id_domain"),
        ({"message_id_domain": "x>\r\nBcc: y"}, "message_id_domain"),
        ({"to_address": ""}, "to_address"),
        ({"to_address": "a@b\r\nBcc: c@d"}, "to_address"),
        ({"to_address": "Dr X <x@y.fr>"}, "to_address"),
        ({"from_address": "not an address"}, "from_address"),
    ],
)
def test_invalid_inputs_raise(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_failed_may_carry_a_transient_code() -> None:
    # A message that gave up after the queue lifetime (R24) fails with 4.4.7.
    data = build([RecipientStatus("a@b.mssante.fr", "failed", "4.4.7")])
    assert parse_dsn(data).recipients[0]["status"] == "4.4.7"


# --- parse_dsn on things that are not DSNs ------------------------------------------------------


def _report(report_type: str, second: str, fields: str) -> bytes:
    return (
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        f"--b\r\nContent-Type: {second}\r\n\r\n{fields}\r\n--b--\r\n"
    ).encode()


GOOD_FIELDS = (
    "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.0.0"
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "multipart/report"),
        (b"garbage \x00\xff\xfe", "multipart/report"),
        (b"Subject: hello\r\n\r\nplain mail\r\n", "multipart/report"),
        (
            _report("disposition-notification", "message/disposition-notification", "X: y"),
            "report-type",
        ),
        (b"Content-Type: multipart/report\r\n\r\n--b--\r\n", "report-type"),
        (b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nx\r\n", "body parts"),
        (_report("delivery-status", "text/plain", GOOD_FIELDS), "message/delivery-status"),
        (_report("delivery-status", "message/delivery-status", ""), "Reporting-MTA"),
        (
            _report("delivery-status", "message/delivery-status", "Reporting-MTA: dns; x"),
            "per-recipient",
        ),
        (
            _report(
                "delivery-status",
                "message/delivery-status",
                "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; a@b\r\nStatus: 5.0.0",
            ),
            "action",
        ),
    ],
)
def test_parse_dsn_rejects_non_dsn(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dsn(data)


def test_parse_dsn_accepts_a_minimal_foreign_dsn() -> None:
    data = _report(
        "Delivery-Status", "message/delivery-status", GOOD_FIELDS.replace("failed", "FAILED")
    )
    dsn = parse_dsn(data)
    assert isinstance(dsn, ParsedDSN)
    assert dsn.recipients[0]["action"] == "failed"
    assert dsn.returned_content_type is None
    assert dsn.human_readable.strip() == "hello"


def test_parse_dsn_on_deeply_nested_input() -> None:
    nested = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
        for i in range(2000)
    )
    with pytest.raises(ValueError):
        parse_dsn(b"Content-Type: multipart/report; report-type=delivery-status\r\n" + nested)


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_parse_dsn_never_crashes_on_bytes(data: bytes) -> None:
    try:
        parse_dsn(data)
    except ValueError:
        pass


@settings(max_examples=200)
@given(st.data())
def test_parse_dsn_never_crashes_on_mutated_dsn(data: st.DataObject) -> None:
    dsn = build([failed(), delayed()], ret="FULL")
    start = data.draw(st.integers(0, len(dsn)))
    end = data.draw(st.integers(start, min(len(dsn), start + 50)))
    junk = data.draw(st.binary(max_size=50))
    try:
        parse_dsn(dsn[:start] + junk + dsn[end:])
    except ValueError:
        pass


# --- properties: hostile text never breaks the message -----------------------------------------

INJECTIONS = st.sampled_from(
    [
        "x\r\nBcc: evil@example.com",
        "x\nContent-Type: text/html",
        "\r\n\r\nbody",
        "a\rb\x00c\x0bd\x1be\x85f\u2028g",
        "--=_mssante-dsn-0\r\n",
        "=?utf-8?b?QmNjOiBldmls?=",
    ]
)
TEXTS = st.one_of(st.text(), st.text(st.characters(codec="utf-8"), max_size=400), INJECTIONS)


def _normalised(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


@settings(max_examples=300)
@given(subject=TEXTS, diagnostic=TEXTS, headers=st.binary(max_size=300))
def test_hostile_subject_and_diagnostic(subject: str, diagnostic: str, headers: bytes) -> None:
    data = build(
        [failed(diagnostic_code=diagnostic), delivered()],
        original_subject=subject,
        original_headers=headers,
        original_message=None,
    )
    check_wire_format(data)
    msg = parse_std(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    eight_bit = ["Content-Transfer-Encoding"] if not headers.isascii() else []
    assert list(msg.keys()) == TOP_HEADERS + eight_bit  # nothing injected
    expected = _normalised(subject)[:250]
    got = str(msg["Subject"])
    assert got == ("Échec de remise : " + expected if expected else "Échec de remise")
    assert [p.get_content_type() for p in parts(data)] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    blocks = status_blocks(data)
    assert blocks[1][:3] == ["Final-Recipient", "Action", "Status"]
    assert blocks[2] == ["Final-Recipient", "Action", "Status"]
    assert len(blocks) == 3
    dsn = parse_dsn(data)
    assert [r["action"] for r in dsn.recipients] == ["failed", "delivered"]
    if _normalised(diagnostic):
        assert "diagnostic-code" in dsn.recipients[0]
        assert _normalised(diagnostic)[:100] in parts(data)[0].get_content()
