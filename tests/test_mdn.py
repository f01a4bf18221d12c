"""MDN builder/parser: RFC 8098, and the MSSanté integration-failure form (R25, R26, R44)."""

from __future__ import annotations

import email
import email.policy
import os
import re
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante.formats.dsn import RecipientStatus, build_dsn
from mssante.formats.mdn import (
    AUTOMATIC,
    INTEGRATION_ERRORS,
    KO_PREFIX,
    MANUAL,
    Attachment,
    Decision,
    build_mdn,
    document_attachments,
    integration_error,
    parse_mdn,
    should_send_mdn,
)

SHARED = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
MESSAGES = SHARED / "mss-messages"
needs_shared = pytest.mark.skipif(
    not MESSAGES.is_dir(), reason="shared reference data not available"
)
NOW = datetime(2024, 2, 20, 5, 19, tzinfo=UTC)
SUBJECT = "XDM/1.0/DDM+ECHOGRAPHIE ABDOMINOPELVIENNE CORSE FIGATELLIX 12/10/1988"
ORIGINAL = (
    b"Return-Path: <serviceX@cha.mssante.fr>\r\n"
    b"From: Service X <serviceX@cha.mssante.fr>\r\n"
    b"To: serviceY_auto@chb.mssante.fr\r\n"
    b"Subject: " + SUBJECT.encode() + b"\r\n"
    b"Message-ID: <199509192301.23456@cha.mssante.fr>\r\n"
    b"Disposition-Notification-To: serviceX@cha.mssante.fr\r\n"
    b"Original-Recipient: rfc822;serviceY_auto@chb.mssante.fr\r\n"
    b"\r\n"
    b"Veuillez trouver le compte rendu.\r\n"
)
HEADERS = ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"


def _mdn(**kwargs: object) -> bytes:
    args: dict[str, object] = {
        "reporting_ua": "chb.mssante.fr; mssante",
        "final_recipient": "serviceY_auto@chb.mssante.fr",
        "message_id_domain": "chb.mssante.fr",
        "now": NOW,
    }
    args.update(kwargs)
    return build_mdn(HEADERS, **args)  # type: ignore[arg-type]


def _parts(data: bytes) -> list[Message]:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    payload = msg.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, Message)]


def _report_lines(data: bytes) -> list[str]:
    body = _parts(data)[1].as_string().split("\n\n", 1)[1]
    return [line for line in body.splitlines() if line]


# --- the published examples ---------------------------------------------------------------


@needs_shared
def test_parse_the_published_ko_902_example() -> None:
    mdn = parse_mdn((MESSAGES / "ig-trans-cda-courriel-mss/exemple-MDN-KO-902.eml").read_bytes())
    assert mdn.subject == f"[KO Intégration système !][902] {SUBJECT}"
    assert mdn.subject_error_code == "902"
    assert (mdn.action_mode, mdn.sending_mode) == ("automatic-action", "MDN-sent-automatically")
    assert mdn.disposition_type == "processed" and mdn.is_error
    assert (mdn.error_code, mdn.error_label) == ("902", "Identifiant de patient inconnu")
    assert mdn.final_recipient_address == "serviceY_auto@chb.mssante.fr"
    assert mdn.original_recipient == "rfc822;serviceY_auto@chb.mssante.fr"
    assert mdn.original_message_id == "<199509192301.23456>"
    assert "902" in mdn.human_readable and "intégré" in mdn.human_readable
    assert mdn.returned_content_type == "message/rfc822"


@needs_shared
def test_parse_the_direct_project_mdn() -> None:
    mdn = parse_mdn((MESSAGES / "direct-project/MDN.eml").read_bytes())
    assert mdn.disposition == "automatic-action/MDN-sent-automatically;processed"
    assert mdn.disposition_type == "processed" and mdn.modifiers == ()
    assert not mdn.is_error and mdn.error_code is None and mdn.subject_error_code is None
    assert mdn.reporting_ua == "Direct.West.Hobo.Lab;Direct Security Agent"
    assert mdn.final_recipient_address == "Jean@opsstation.lab"
    assert mdn.original_message_id == "<c8a0389fd14c40c185956ff9108bab07@Direct.Surescripts.com>"
    assert mdn.human_readable == "Message Delivery Notification"


@needs_shared
def test_the_standard_error_mail_is_not_a_mdn() -> None:
    data = (
        MESSAGES / "ig-trans-cda-courriel-mss/exemple-courriel-standard-KO-902.eml"
    ).read_bytes()
    with pytest.raises(ValueError, match="not a MDN"):
        parse_mdn(data)


@needs_shared
def test_built_mdn_has_the_structure_of_the_published_example() -> None:
    example_bytes = (MESSAGES / "ig-trans-cda-courriel-mss/exemple-MDN-KO-902.eml").read_bytes()
    example = parse_mdn(example_bytes)
    built_bytes = _mdn(error=integration_error(902), original_message=ORIGINAL)
    built = parse_mdn(built_bytes)
    assert built.subject == example.subject  # same original subject, same prefix and code
    top = [email.message_from_bytes(b) for b in (example_bytes, built_bytes)]
    assert [m.get_content_type() for m in top] == ["multipart/report"] * 2
    assert [m.get_param("report-type") for m in top] == ["disposition-notification"] * 2
    kinds = [[p.get_content_type() for p in _parts(b)[:3]] for b in (example_bytes, built_bytes)]
    assert (
        kinds[0] == kinds[1] == ["text/plain", "message/disposition-notification", "message/rfc822"]
    )
    assert set(example.fields) <= set(built.fields)  # Original-Recipient, Final-Recipient, ...
    assert built.disposition.split("^")[0] == example.disposition.split("^")[0]
    assert (built.error_code, built.error_label) == (
        example.error_code,
        "Identifiant patient inconnu",
    )
    assert built.original_recipient == example.original_recipient
    assert built.final_recipient_address == example.final_recipient_address


@needs_shared
def test_integration_error_labels_are_those_of_the_volet() -> None:
    table = (MESSAGES / "ig-trans-cda-courriel-mss/error-codes.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"<p>(90\d)</p>\s*</td>\s*<td>\s*<p>(.*?)</p>", table))
    assert rows == INTEGRATION_ERRORS
    assert sorted(INTEGRATION_ERRORS) == [str(c) for c in range(900, 907)]


# --- building -----------------------------------------------------------------------------


def test_integration_failure_mdn() -> None:
    data = _mdn(error=integration_error("903"))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    lines = _report_lines(data)
    assert lines == [
        "Reporting-UA: chb.mssante.fr; mssante",
        "Original-Recipient: rfc822;serviceY_auto@chb.mssante.fr",
        "Final-Recipient: rfc822;serviceY_auto@chb.mssante.fr",
        "Original-Message-ID: <199509192301.23456@cha.mssante.fr>",
        "Disposition: automatic-action/MDN-sent-automatically; processed/Error: "
        "903^INS non present dans le document",
        "Error: 903^INS non present dans le document",
    ]
    mdn = parse_mdn(data)
    assert mdn.subject == f"{KO_PREFIX}[903] {SUBJECT}" and mdn.subject_error_code == "903"
    assert "INS non présent dans le document" in mdn.human_readable
    assert "Code d'erreur : 903" in mdn.human_readable
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "serviceX@cha.mssante.fr"
    assert msg["From"].addresses[0].addr_spec == "serviceY_auto@chb.mssante.fr"
    assert msg["In-Reply-To"] == "<199509192301.23456@cha.mssante.fr>"
    assert msg["Auto-Submitted"] == "auto-replied"
    text = msg.get_body(("plain",))
    assert text is not None and text.get_content_charset() == "utf-8"  # R26
    assert not msg.defects and all(not p.defects for p in msg.walk())


def test_rfc8098_error_style() -> None:
    lines = _report_lines(_mdn(error=("906", "Erreur 'Autre'"), error_style="rfc8098"))
    assert "Disposition: automatic-action/MDN-sent-automatically; processed/error" in lines
    assert "Error: 906^Erreur 'Autre'" in lines
    mdn = parse_mdn(_mdn(error=("906", "Erreur 'Autre'"), error_style="rfc8098"))
    assert mdn.modifiers == ("error",) and (mdn.error_code, mdn.error_label) == (
        "906",
        "Erreur 'Autre'",
    )


def test_success_mdn_keeps_the_document_subject() -> None:
    mdn = parse_mdn(_mdn())
    assert mdn.subject == SUBJECT and not mdn.is_error
    assert mdn.disposition == "automatic-action/MDN-sent-automatically; processed"
    assert "traité" in mdn.human_readable


def test_manual_read_receipt() -> None:
    headers = HEADERS.replace(SUBJECT.encode(), b"=?UTF-8?Q?R=C3=A9union?=")
    data = build_mdn(
        headers,
        reporting_ua="webmail.example.mssante.fr",
        final_recipient="rfc822; serviceY_auto@chb.mssante.fr",
        message_id_domain="example.mssante.fr",
        disposition="displayed",
        mode=MANUAL,
        now=NOW,
    )
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Accusé de lecture : Réunion"
    assert msg["Auto-Submitted"] is None
    mdn = parse_mdn(data)
    assert (mdn.action_mode, mdn.sending_mode, mdn.disposition_type) == (
        "manual-action",
        "MDN-sent-manually",
        "displayed",
    )
    assert "envoyé par le destinataire" in mdn.human_readable


def test_returned_parts_and_attachments() -> None:
    headers_only = parse_mdn(_mdn())
    assert headers_only.returned_content_type == "text/rfc822-headers"
    assert headers_only.returned_content is not None
    assert b"Message-ID: <199509192301.23456@cha.mssante.fr>" in headers_only.returned_content
    assert b"Veuillez" not in headers_only.returned_content
    pdf = "20220531_CR d'imagerie médicale_CORSE_FIGATELLIX.pdf"
    data = _mdn(
        error=integration_error(902),
        original_message=ORIGINAL.replace(b"Veuillez", "Veuillez trouver ci-joint é".encode()),
        attachments=[
            Attachment("IHE_XDM.zip", "application/zip", b"PK\x03\x04zip"),
            Attachment(pdf, "application/pdf", b"%PDF-1.4" * 30),
        ],
    )
    mdn = parse_mdn(data)
    assert mdn.returned_content_type == "message/rfc822"
    assert mdn.attachments == ("IHE_XDM.zip", pdf)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    found = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    assert found["IHE_XDM.zip"] == b"PK\x03\x04zip" and found[pdf] == b"%PDF-1.4" * 30


def test_document_attachments_of_a_message() -> None:
    original = EmailMessage()
    original["Subject"] = SUBJECT
    original.set_content("Bonjour")
    original.add_attachment(b"PK", maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    original.add_attachment(
        b"%PDF", maintype="application", subtype="pdf", filename="20220531_CR.pdf"
    )
    original.add_attachment(b"x", maintype="text", subtype="plain", filename="notes.txt")
    found = document_attachments(original.as_bytes())
    assert [(a.filename, a.content_type, a.data) for a in found] == [
        ("IHE_XDM.ZIP", "application/zip", b"PK"),
        ("20220531_CR.pdf", "application/pdf", b"%PDF"),
    ]


def test_no_header_injection() -> None:
    evil = HEADERS.replace(SUBJECT.encode(), b"Hi\r\n\tBcc: victim@x.fr")
    data = build_mdn(
        evil,
        reporting_ua="ua\r\nX-Evil: 1",
        final_recipient="serviceY_auto@chb.mssante.fr",
        message_id_domain="chb.mssante.fr",
        error=("902", "Label\r\nBcc: victim@x.fr"),
    )
    head = data.split(b"\r\n\r\n")[0]
    assert b"\r\nBcc:" not in head and b"\r\nX-Evil" not in data
    assert not any(
        line.startswith("Bcc") or line.startswith("X-Evil") for line in _report_lines(data)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"disposition": "read"}, "disposition type"),
        ({"mode": "automatic-action/MDN-sent-by-magic"}, "disposition mode"),
        ({"error": ("9 0", "x")}, "error code"),
        ({"message_id_domain": "bad domain"}, "message_id_domain"),
        ({"final_recipient": "not an address"}, "final_recipient"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _mdn(**kwargs)


def test_to_address_defaults_to_disposition_notification_to() -> None:
    headers = HEADERS.replace(b"Disposition-Notification-To: serviceX@cha.mssante.fr\r\n", b"")
    with pytest.raises(ValueError, match="Disposition-Notification-To"):
        build_mdn(headers, reporting_ua="ua", final_recipient="a@b.fr", message_id_domain="b.fr")
    data = build_mdn(
        headers,
        reporting_ua="ua",
        final_recipient="a@b.fr",
        message_id_domain="b.fr",
        to_address="Other <other@c.mssante.fr>",
    )
    assert b"To: <other@c.mssante.fr>\r\n" in data


def test_integration_error_codes() -> None:
    assert integration_error(902) == ("902", "Identifiant patient inconnu")
    with pytest.raises(ValueError):
        integration_error(907)


# --- parsing ------------------------------------------------------------------------------


def test_parse_rejects_what_is_not_a_mdn() -> None:
    dsn = build_dsn(
        reporting_mta="mx.chb.mssante.fr",
        from_address="mailer-daemon@chb.mssante.fr",
        to_address="serviceX@cha.mssante.fr",
        recipients=[RecipientStatus("rfc822;a@chb.mssante.fr", "delivered", "2.0.0")],
        original_headers=HEADERS,
        original_message=None,
        ret=None,
        envid=None,
        arrival_date=None,
        original_message_id=None,
        original_subject=None,
        message_id_domain="chb.mssante.fr",
    )
    for data in (dsn, ORIGINAL, b"", b"\x00\xff garbage"):
        with pytest.raises(ValueError, match="not a MDN"):
            parse_mdn(data)
    good = _mdn()
    without_disposition = re.sub(rb"Disposition: [^\r]*\r\n", b"", good)
    with pytest.raises(ValueError, match="disposition"):
        parse_mdn(without_disposition)
    with pytest.raises(ValueError, match="Disposition"):
        parse_mdn(
            good.replace(b"Disposition: automatic-action/", b"Disposition: automatic-action ")
        )


@settings(max_examples=200)
@given(st.binary(max_size=2000))
def test_parse_never_raises_anything_but_value_error(data: bytes) -> None:
    prefix = (
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n"
    )
    for candidate in (data, prefix + data):
        try:
            parse_mdn(candidate)
        except ValueError:
            pass


# --- should we send one? (R25) ------------------------------------------------------------


def test_no_mdn_without_request() -> None:
    decision = should_send_mdn({"From": "a@b.fr", "Return-Path": "<a@b.fr>"})
    assert decision == Decision(False, False, (), decision.reason)


def test_mdn_without_confirmation_when_return_path_matches() -> None:
    decision = should_send_mdn(HEADERS)
    assert decision.send and not decision.needs_confirmation
    assert decision.to == ("serviceX@cha.mssante.fr",)
    mapping = {
        "disposition-notification-to": "X <ServiceX@CHA.mssante.fr>",
        "RETURN-PATH": "<servicex@cha.mssante.fr>",
    }
    assert should_send_mdn(mapping).send and not should_send_mdn(mapping).needs_confirmation


@pytest.mark.parametrize(
    "headers",
    [
        {"Disposition-Notification-To": "other@c.mssante.fr", "Return-Path": "<a@b.fr>"},
        {"Disposition-Notification-To": "a@b.fr"},
        {"Disposition-Notification-To": "a@b.fr", "Return-Path": "<>"},
        {"Disposition-Notification-To": "a@b.fr, c@d.fr", "Return-Path": "<a@b.fr>"},
    ],
)
def test_mdn_needs_user_confirmation(headers: dict[str, str]) -> None:
    decision = should_send_mdn(headers)
    assert decision.send and decision.needs_confirmation and decision.reason


@pytest.mark.parametrize(
    "headers",
    [
        {
            "Disposition-Notification-To": "a@b.fr",
            "Return-Path": "<a@b.fr>",
            "Content-Type": 'multipart/report; report-type="disposition-notification"; boundary=x',
        },
        {"Disposition-Notification-To": "not-an-address", "Return-Path": "<a@b.fr>"},
        {
            "Disposition-Notification-To": "a@b.fr",
            "Return-Path": "<a@b.fr>",
            "Disposition-Notification-Options": "signed-receipt-protocol=required,pkcs7-signature",
        },
    ],
)
def test_no_mdn(headers: dict[str, str]) -> None:
    assert not should_send_mdn(headers).send


def test_optional_options_are_ignored() -> None:
    headers = {
        "Disposition-Notification-To": "a@b.fr",
        "Return-Path": "<a@b.fr>",
        "Disposition-Notification-Options": "signed-receipt-protocol=optional,pkcs7-signature",
    }
    assert should_send_mdn(headers).send


def test_folded_bytes_headers() -> None:
    raw = b'Return-Path: <a@b.fr>\nDisposition-Notification-To:\n "Dr A" <a@b.fr>\n\nbody'
    decision = should_send_mdn(raw)
    assert decision.send and not decision.needs_confirmation and decision.to == ("a@b.fr",)
    assert AUTOMATIC == "automatic-action/MDN-sent-automatically"
