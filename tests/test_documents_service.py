"""Document messages (issue 6): compose → read, R36–R45, indexing on delivery, R44 reports.

The synthetic CDA documents shipped in `mssante/data/cda/` are always available; the ANS
examples of the shared data (and the CDA XSD) are used when present. The end-to-end tests run
two operators of a `LocalTrustSpace` with real SMTP submission and relay, on the database
engine under test (`MSSANTE_TEST_DB`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import logging
import os
import re
import zipfile
from datetime import UTC, date, datetime
from email.message import EmailMessage
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import select

from mssante.domain.errors import RuleViolation
from mssante.domain.mailboxes import MailboxType
from mssante.formats.cda_validation import CdaValidator
from mssante.formats.mdn import parse_mdn
from mssante.formats.xdm import XdmDocumentInput, build_xdm, read_xdm
from mssante.formats.xdm_metadata import INS_TEST_OID, format_patient_id
from mssante.services.documents import (
    PatientIdentity,
    SenderIdentity,
    build_package,
    compose_document_message,
    failure_report_target,
    has_xdm_attachment,
    integration_error_code,
    integration_failure_mdn,
    read_document_message,
)
from mssante.storage.schema import documents
from mssante.testing.clients import (
    make_message,
    seed_professional_mailbox,
    seed_structure_mailbox,
    submit,
    wait_for,
)
from mssante.testing.trust_space import LocalTrustSpace

SHARED = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
CDA_DIR = SHARED / "cda"
needs_shared = pytest.mark.skipif(not CDA_DIR.is_dir(), reason=f"no shared data at {CDA_DIR}")

LDL = resources.files("mssante.data").joinpath("cda/LDL-SES-DEMO.xml").read_bytes()
DLU = resources.files("mssante.data").joinpath("cda/DLU-EHPAD-FLUDT-DEMO.xml").read_bytes()
INS = "238031305501250"  # the synthetic patient (valid NIR key), INS-NIR de test OID
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
HOSPITAL = SenderIdentity(
    id_nat_ps="810000000017",
    family="Martin",
    given="Camille",
    id_nat_struct="1750000028",
    organisation="Centre hospitalier de démonstration",
)
SENDER = "camille.martin@alpha.mssante.fr"
GP = "lea.dubois@beta.mssante.fr"
PATIENT_BAL = f"{INS}@patient.mssante.fr"
PASSWORD = "correct horse battery staple"
NOW = datetime(2025, 2, 3, 10, 0, tzinfo=UTC)


def compose(**overrides: object) -> object:
    args: dict[str, object] = {
        "sender_address": SENDER,
        "sender_identity": HOSPITAL,
        "recipients": [GP],
        "documents": [(LDL, "text/xml")],
        "nil": "MSSANTE-TEST-1.0",
        "now": NOW,
    }
    args.update(overrides)
    return compose_document_message(**args)  # type: ignore[arg-type]


def parsed(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data, policy=email.policy.default)


# -- composing ------------------------------------------------------------------------------


def test_round_trip_headers_and_metadata() -> None:
    message = compose()
    msg = parsed(message.data)
    assert msg["X-MSS-CODECDA"] == "11490-0"  # R39
    assert msg["X-MSS-INS"] == "O"  # R40: INS with its OID and the four traits
    assert msg["X-MSS-NIL"] == "MSSANTE-TEST-1.0"
    assert msg["Message-ID"] == message.message_id and msg["Date"]  # R27
    label = "Lettre de liaison à la sortie d'un établissement de soins"
    assert message.subject == f"XDM/1.0/DDM+{label} EXEMPLE JEANNE 12/03/1938"  # R41
    assert msg["Subject"] == message.subject
    text = msg.get_body(("plain",))
    assert text is not None and text.get_content_charset() == "utf-8"  # R26
    assert 'charset="UTF-8"' in message.data.decode("ascii")
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert names == ["IHE_XDM.ZIP"]  # no PDF in a structured CDA: no copy
    package = read_xdm(message.package.xdm)
    assert package.ok, package.problems
    entry = package.documents[0].entry
    assert entry.patient_id == format_patient_id(INS, INS_TEST_OID)
    assert (entry.type_code and entry.type_code.code) == "11490-0"
    assert (entry.class_code and entry.class_code.code) == "10"  # ASS_X04
    assert (entry.format_code and entry.format_code.code) == "urn:asip:ci-sis:ldl-ses:2017"
    assert (entry.healthcare_facility_type_code and entry.healthcare_facility_type_code.code) == (
        "SA01"
    )  # read from the CDA when not given
    assert entry.practice_setting_code and entry.practice_setting_code.code == "ETABLISSEMENT"
    assert entry.creation_time == "20250121150000"  # 16:00+01:00 in UTC
    assert "^^Internet^" + SENDER in entry.authors[0].telecoms
    assert entry.authors[0].person.startswith("810000000017^Martin^Camille")

    received = read_document_message(message.data)
    assert received.ok and received.has_xdm, received.problems
    assert (received.patient_ins, received.patient_oid) == (INS, INS_TEST_OID)
    assert received.subject == f"{label} EXEMPLE JEANNE 12/03/1938"  # prefix hidden (UX.28)
    assert [d.type_code for d in received.documents] == ["11490-0"]
    assert received.documents[0].document_date == datetime(2025, 1, 21, 15, tzinfo=UTC)
    assert received.anomalies == ()
    assert integration_error_code(received) is None


def test_two_documents_list_their_codes_in_order() -> None:
    message = compose(documents=[(LDL, "text/xml"), (DLU, "application/hl7-v3+xml")])
    assert message.headers["X-MSS-CODECDA"] == "11490-0,74207-2"
    assert [d.file_name for d in message.documents] == ["DOC0001.XML", "DOC0002.XML"]
    received = read_document_message(message.data)
    assert [d.type_code for d in received.documents] == ["11490-0", "74207-2"]


def test_ins_without_its_traits_gives_x_mss_ins_n() -> None:
    no_birth = re.sub(rb"<birthTime [^>]*/>", b"", LDL)
    assert compose(documents=[(no_birth, "text/xml")]).headers["X-MSS-INS"] == "N"


def test_pdf_is_wrapped_and_its_copy_named_by_r42() -> None:
    patient = PatientIdentity(
        INS, INS_TEST_OID, "Exemple", "Jeanne", date(1938, 3, 12), "F", dossier="D-42"
    )
    message = compose(
        documents=[(PDF, "application/pdf"), (PDF, "application/pdf")],
        patient=patient,
        type_code="11490-0",
        healthcare_facility_type="SA01",
        practice_setting="ETABLISSEMENT",
    )
    msg = parsed(message.data)
    attachments = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    first = "20250203_Lettre_de_liaison_a_la_sortie_d_un_etablissement_de_soins_EXEMPLE_Jeanne_D-42"
    assert list(attachments) == ["IHE_XDM.ZIP", first + ".pdf", first + "_2.pdf"]
    assert attachments[first + ".pdf"] == PDF
    received = read_document_message(message.data)
    assert received.ok, received.problems
    assert received.documents[0].format_code == "urn:ihe:iti:xds-sd:pdf:2008"
    assert message.headers == {
        "X-MSS-NIL": "MSSANTE-TEST-1.0",
        "X-MSS-CODECDA": "11490-0,11490-0",
        "X-MSS-INS": "O",
    }


@pytest.mark.parametrize(
    ("overrides", "slot"),
    [
        ({"healthcare_facility_type": "SA99"}, "healthcareFacilityTypeCode"),
        ({"practice_setting": "NOWHERE"}, "practiceSettingCode"),
        ({"confidentiality": "SECRET"}, "confidentialityCode"),
        ({"type_code": "34112-3"}, "typeCode"),  # the CDA says 11490-0
        ({"documents": [(b"<x/>", "image/png")]}, "document"),
        (
            {"documents": [(LDL.replace(b"1.2.250.1.213.1.1.1.29", b"1.2.3"), "text/xml")]},
            "formatCode",
        ),
        (
            {"documents": [(LDL.replace(b'code="11490-0"', b'code="XYZ-1"'), "text/xml")]},
            "typeCode",
        ),
        (
            {"documents": [(LDL.replace(b"1.2.250.1.213.1.4.10", b"1.2.3.4"), "text/xml")]},
            "patientId",
        ),
        ({"documents": [(PDF, "application/pdf")]}, "patientId"),
        ({"nil": ""}, "X-MSS-NIL"),
        ({"nil": "a\r\nBcc: x@y"}, "X-MSS-NIL"),
        ({"use_case": "nope"}, "use_case"),
    ],
)
def test_invalid_input_is_refused_naming_the_slot(overrides: dict[str, object], slot: str) -> None:
    with pytest.raises(RuleViolation) as info:
        compose(**overrides)
    assert slot in info.value.message


def test_documents_about_two_patients_are_refused() -> None:
    other = LDL.replace(INS.encode(), b"279035121518989")
    with pytest.raises(RuleViolation, match="patientId"):
        build_package(
            sender_address=SENDER,
            sender_identity=HOSPITAL,
            documents=[(LDL, "text/xml"), (other, "text/xml")],
        )


def test_legal_policy_inform_warn_require() -> None:
    # 11490-0 (lettre de liaison de sortie): médecin traitant and patient are mandatory.
    inform = compose(gp=GP, legal_policy="inform")
    assert inform.allowed and inform.notices[0].startswith("Pour information")
    assert "le patient" in inform.notices[0]
    warn = compose(gp=GP, legal_policy="warn")
    assert warn.allowed and warn.notices[0].startswith("Attention")
    require = compose(legal_policy="require")
    assert not require.allowed and require.notices[0].startswith("Envoi bloqué")
    assert "le médecin traitant et le patient" in require.notices[0]
    complete = compose(recipients=[GP, PATIENT_BAL], gp=GP, legal_policy="require")
    assert complete.allowed and complete.notices == ()


def test_use_case_gives_defaults_and_notices() -> None:
    message = compose(use_case="ehpad-pharmacie", documents=[(DLU, "text/xml")])
    assert any("n'est pas prévu pour le cas d'usage" in n for n in message.notices)
    entry = read_xdm(message.package.xdm).documents[0].entry
    assert (
        entry.healthcare_facility_type_code and entry.healthcare_facility_type_code.code == "SA17"
    )


@needs_shared
@pytest.mark.parametrize("name", ["LDL-SES_2022.01.xml", "DLU-EHPAD-FLUDT_2022.01.xml"])
def test_ans_examples_round_trip_with_xsd_validation(name: str, tmp_path: Path) -> None:
    validator = CdaValidator(CDA_DIR / "schemas", None, cache_dir=tmp_path)
    example = (CDA_DIR / "examples" / name).read_bytes()
    message = compose(documents=[(example, "text/xml")])
    received = read_document_message(message.data, validator=validator)
    assert received.ok, received.problems
    assert received.patient_ins == "279035121518989"
    for synthetic in (LDL, DLU):  # the shipped documents are XSD-valid too
        assert validator.validate_xsd(synthetic) == []


# -- receiving hostile or odd messages -------------------------------------------------------


def mail_with(
    attachment: bytes, filename: str = "IHE_XDM.ZIP", to: str = GP, **headers: str
) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = headers.pop("subject", "XDM/1.0/DDM+CR AUTRE PATIENT Paul 01/01/1950")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Bonjour\n")
    msg.add_attachment(attachment, maintype="application", subtype="zip", filename=filename)
    return msg.as_bytes()


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("attachment", "reason"),
    [
        (b"not a zip at all", "not-a-zip"),
        (zipped({"../../etc/passwd": b"x"}), "path-traversal"),
        (zipped({"IHE_XDM/SUBSET01/BIG.XML": b"\0" * (30 * 1024 * 1024)}), "ratio"),
        (zipped({"README.TXT": b"no metadata"}), "missing-metadata"),
        (
            zipped(
                {
                    "IHE_XDM/SUBSET01/METADATA.XML": b'<?xml version="1.0"?><!DOCTYPE r ['
                    b'<!ENTITY a "aaaa">]><r>&a;</r>'
                }
            ),
            "xml-",
        ),
        (b"", "empty-attachment"),
    ],
)
def test_hostile_packages_are_reported_not_raised(attachment: bytes, reason: str) -> None:
    received = read_document_message(mail_with(attachment))
    assert received.has_xdm and not received.ok
    assert received.refused is not None and received.refused.code.startswith(reason)
    assert integration_error_code(received) == "906"


def test_hostile_cda_inside_a_valid_package_is_a_problem() -> None:
    message = compose()
    package = read_xdm(message.package.xdm)
    entry = package.documents[0].entry
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    xdm = build_xdm(
        package.submission,
        [XdmDocumentInput(evil, "text/xml", entry)],
        sender_name="x",
        sender_software="x",
    )
    received = read_document_message(mail_with(xdm))
    assert [p.code for p in received.problems] == ["cda-refused"]


def test_garbage_never_raises() -> None:
    for raw in (b"", b"\xff\xfe\x00" * 100, b"Content-Type: multipart/mixed\r\n\r\nIHE_XDM.ZIP"):
        assert read_document_message(raw).ok is False


def test_lower_case_name_and_patient_from_metadata_not_subject() -> None:
    xdm = compose().package.xdm
    received = read_document_message(mail_with(xdm, filename="ihe_xdm.zip"))
    assert received.ok and received.attachment_name == "ihe_xdm.zip"  # R36
    assert received.patient_ins == INS  # R43: the subject names another patient
    assert not has_xdm_attachment(make_message(SENDER, [GP]))
    assert has_xdm_attachment(b"...filename*=UTF-8''Ihe_Xdm.Zip...")


def test_header_anomalies_are_listed_never_fatal() -> None:
    xdm = compose().package.xdm
    raw = mail_with(xdm, X_MSS_INS="peut-etre", X_MSS_CODECDA="34112-3")
    received = read_document_message(raw)
    assert received.ok
    found = {(a.header, a.value) for a in received.anomalies}
    assert ("X-MSS-INS", "peut-etre") in found
    assert ("X-MSS-CODECDA", "34112-3") in found  # not the CDA's 11490-0 (R39)


def test_integration_error_codes() -> None:
    assert integration_error_code(read_document_message(make_message(SENDER, [GP]))) is None
    mismatch = LDL.replace(INS.encode(), b"279035121518989")
    assert integration_error_code(
        read_document_message(mail_with(_package_about(INS, mismatch)))
    ) == ("904")
    no_ins = re.sub(rb'<id root="1.2.250.1.213.1.4.10"[^>]*/>', b"", LDL)
    assert integration_error_code(
        read_document_message(mail_with(_package_about(INS, no_ins)))
    ) == ("903")
    partial = re.sub(rb"<birthTime [^>]*/>", b"", LDL)
    assert integration_error_code(
        read_document_message(mail_with(_package_about(INS, partial)))
    ) == ("905")


def _package_about(ins: str, cda: bytes) -> bytes:
    """A package whose metadata names `ins` whatever the CDA holds (as a faulty sender)."""
    good = read_xdm(compose().package.xdm)
    entry = good.documents[0].entry
    return build_xdm(
        good.submission,
        [XdmDocumentInput(cda, "text/xml", entry)],
        sender_name="Logiciel fautif",
        sender_software="x",
    )


def test_failure_report_target_and_formats() -> None:
    plain = mail_with(b"x")
    assert failure_report_target(plain, "a@alpha.mssante.fr") == "a@alpha.mssante.fr"
    asking = mail_with(b"x", Disposition_Notification_To="ack@alpha.mssante.fr")
    assert failure_report_target(asking, "a@alpha.mssante.fr") == "ack@alpha.mssante.fr"
    auto = mail_with(b"x", Auto_Submitted="auto-replied")
    assert failure_report_target(auto, "a@alpha.mssante.fr") is None
    assert failure_report_target(plain, "") is None
    mdn = parse_mdn(integration_failure_mdn(asking, 902, GP, message_id_domain="beta.mssante.fr"))
    assert mdn.error_code == "902" and mdn.subject_error_code == "902"
    assert mdn.disposition.startswith("automatic-action/MDN-sent-automatically; processed/Error")
    standard = parsed(
        integration_failure_mdn(
            plain, "906", GP, message_id_domain="beta.mssante.fr", to_address=SENDER
        )
    )
    assert standard["Subject"].startswith("[KO Intégration système !][906] XDM/1.0/DDM+")
    assert standard["Auto-Submitted"] == "auto-replied" and standard["To"] == SENDER
    assert [p.get_filename() for p in standard.iter_attachments()] == ["IHE_XDM.ZIP"]


# -- end to end: indexing at delivery, R44 reports --------------------------------------------


async def _seed(space: LocalTrustSpace) -> None:
    a = space["alpha.mssante.fr"].operator
    b = space["beta.mssante.fr"].operator
    assert a and b
    await asyncio.to_thread(
        seed_professional_mailbox, a.services.mailboxes, SENDER, "10000000017", PASSWORD
    )
    await asyncio.to_thread(
        seed_professional_mailbox, b.services.mailboxes, GP, "10000000025", PASSWORD
    )
    await asyncio.to_thread(
        seed_structure_mailbox,
        b.services.mailboxes,
        "dpi@beta.mssante.fr",
        "1130000037",
        "Hôpital Beta",
        PASSWORD,
        type=MailboxType.APP,
    )


async def _send(space: LocalTrustSpace, recipients: list[str], data: bytes) -> None:
    a = space["alpha.mssante.fr"].operator
    assert a and a.submission
    refused = await asyncio.to_thread(
        submit,
        "127.0.0.1",
        a.submission.port,
        space.ca_file,
        SENDER,
        PASSWORD,
        SENDER,
        recipients,
        data,
    )
    assert refused == {}


def _rows(space: LocalTrustSpace, domain: str) -> list[dict[str, object]]:
    op = space[domain].operator
    assert op is not None
    with op.services.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(documents).order_by(documents.c.id))]


async def test_inbound_document_message_is_indexed(trust_space: LocalTrustSpace) -> None:
    await _seed(trust_space)
    message = compose(recipients=[GP], documents=[(LDL, "text/xml"), (DLU, "text/xml")])
    await _send(trust_space, [GP], make_message(SENDER, [GP]))  # no XDM: not indexed
    await _send(trust_space, [GP], message.data)  # type: ignore[attr-defined]
    rows = await wait_for(lambda: _rows(trust_space, "beta.mssante.fr"))
    assert isinstance(rows, list) and len(rows) == 2
    assert {r["type_code"] for r in rows} == {"11490-0", "74207-2"}
    assert {r["patient_ins"] for r in rows} == {INS}
    assert {r["patient_oid"] for r in rows} == {INS_TEST_OID}
    ldl = next(r for r in rows if r["type_code"] == "11490-0")
    assert str(ldl["document_date"]).startswith("2025-01-21 15:00")
    assert ldl["title"] == "Lettre de liaison à la sortie de l'établissement de santé"
    assert json.loads(str(ldl["problems"])) == []
    b = trust_space["beta.mssante.fr"].operator
    assert b is not None
    stored = b.services.store.list(GP)
    assert len(stored) == 2  # both delivered; the second one is the document message
    assert _rows(trust_space, "alpha.mssante.fr") == []  # the Sent copy is not indexed


async def test_indexing_failure_never_fails_delivery(
    trust_space: LocalTrustSpace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _seed(trust_space)
    b = trust_space["beta.mssante.fr"].operator
    assert b is not None

    indexer = b.services.delivery.documents
    index = indexer.index_message

    def boom(*args: object, **kwargs: object) -> None:
        index(*args, **kwargs)  # type: ignore[arg-type]  # rows written, then a failure:
        raise RuntimeError("index broken")  # the savepoint takes them back

    monkeypatch.setattr(indexer, "index_message", boom)
    with caplog.at_level(logging.WARNING, logger="mssante.delivery"):
        await _send(trust_space, [GP], compose().data)  # type: ignore[attr-defined]
        await wait_for(lambda: b.services.store.list(GP))
    assert any(
        "document indexing failed" in r.getMessage() and "[error " in r.getMessage()
        for r in caplog.records
    )
    assert _rows(trust_space, "beta.mssante.fr") == []


async def test_app_mailbox_answers_an_mdn_when_asked(trust_space: LocalTrustSpace) -> None:
    await _seed(trust_space)
    mismatch = LDL.replace(INS.encode(), b"279035121518989")
    raw = mail_with(
        _package_about(INS, mismatch),
        to="dpi@beta.mssante.fr",
        Disposition_Notification_To=SENDER,
        Message_ID="<doc-1@alpha.mssante.fr>",
    )
    await _send(trust_space, ["dpi@beta.mssante.fr"], raw)
    a = trust_space["alpha.mssante.fr"].operator
    assert a is not None
    inbox = await wait_for(lambda: a.services.store.list(SENDER))
    mdn = parse_mdn(a.services.store.read(inbox[0]))  # type: ignore[index]
    assert mdn.error_code == "904"
    assert mdn.subject.startswith("[KO Intégration système !][904] ")
    assert mdn.final_recipient_address == "dpi@beta.mssante.fr"
    assert mdn.original_message_id == "<doc-1@alpha.mssante.fr>"
    assert "IHE_XDM.ZIP" in mdn.attachments
    rows = _rows(trust_space, "beta.mssante.fr")
    assert [json.loads(str(r["problems"]))[0]["code"] for r in rows] == ["ins-mismatch"]


async def test_app_mailbox_answers_a_standard_mail_otherwise(trust_space: LocalTrustSpace) -> None:
    await _seed(trust_space)
    raw = mail_with(b"PK\x03\x04 broken", to="dpi@beta.mssante.fr")
    await _send(trust_space, ["dpi@beta.mssante.fr", GP], raw)
    a = trust_space["alpha.mssante.fr"].operator
    assert a is not None
    inbox = await wait_for(lambda: a.services.store.list(SENDER))
    report = parsed(a.services.store.read(inbox[0]))  # type: ignore[index]
    assert report["Subject"].startswith("[KO Intégration système !][906] XDM/1.0/DDM+")
    assert report["Auto-Submitted"] == "auto-replied"
    assert report["From"] == "dpi@beta.mssante.fr"
    body = report.get_body(("plain",))
    assert body is not None and "906" in body.get_content()
    await asyncio.sleep(0.5)
    assert len(a.services.store.list(SENDER)) == 1  # the PER recipient does not answer
    rows = _rows(trust_space, "beta.mssante.fr")
    assert len(rows) == 2 and all(r["type_code"] is None for r in rows)  # refused, one row each


def test_demo_documents_fall_back_to_the_synthetic_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mssante import demo_documents
    from mssante.domain.identifiers import is_valid_nir

    assert is_valid_nir(INS)
    monkeypatch.setenv("MSSANTE_SHARED_DATA", str(tmp_path))  # no shared data there
    identity = demo_documents.sender_identity("Dr Camille Martin, médecin", "10000000017", None)
    assert (identity.id_nat_ps, identity.family, identity.given) == (
        "810000000017",
        "Martin",
        "Camille",
    )
    made = demo_documents.document_message(
        5, "camille.martin@hopital-demo.mssante.fr", identity, (GP,), "Bonjour"
    )
    assert made is not None
    data, record = made
    assert record["source"] == "document synthétique LDL-SES-DEMO.xml"
    assert record["documents"] == [
        {
            "type_code": "11490-0",
            "title": "Lettre de liaison à la sortie de l'établissement de santé",
        }
    ]
    received = read_document_message(data)
    assert received.ok and received.patient_ins == INS
    assert demo_documents.document_message(1, SENDER, identity, (GP,), "Bonjour") is None
    lines = demo_documents.summary_lines(
        record
        | {
            "received_documents": [
                {"recipient": GP, "type_code": "11490-0", "title": "LDL", "patient_ins": INS}
            ]
        }
    )
    assert lines[0].startswith("      document envoyé : 11490-0")
    assert lines[1] == f"      reçu par {GP} : 11490-0 « LDL », patient INS {INS}"
