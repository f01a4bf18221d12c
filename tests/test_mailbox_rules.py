"""Mailbox rules (R46, SPEC §3): types, identifiers, immutability, life cycle, who may send.

The rules are exercised through `MailboxService` of running operators, then through real
SMTP sessions on both roles: submission at alpha, inbound at beta with alpha's certificate.
Every refusal leaves a trace, and no trace ever holds a body or a password (R63).
"""

from __future__ import annotations

import asyncio
import secrets
import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, Text, select

from mssante.domain.errors import (
    AlreadyExists,
    ImmutableField,
    InvalidIdentifier,
    InvalidLifecycleTransition,
    NotFound,
    RuleViolation,
)
from mssante.domain.mailboxes import MailboxSpec, MailboxStatus, MailboxType
from mssante.formats.dsn import parse_dsn
from mssante.runtime import Operator
from mssante.services import traces
from mssante.services.mailboxes import MailboxService
from mssante.storage.database import Database
from mssante.storage.schema import trace_events
from mssante.testing.clients import (
    make_message,
    seed_professional_mailbox,
    seed_structure_mailbox,
    wait_for,
)
from mssante.testing.trust_space import LocalTrustSpace

PASSWORD = "Sesame-ouvre-toi 42!"
PER_A = "camille.martin@alpha.mssante.fr"
PER_A2 = "hugo.bernard@alpha.mssante.fr"
ORG_A = "secretariat@alpha.mssante.fr"
PER_B = "lea.dubois@beta.mssante.fr"
CLOSED_B = "ancien.medecin@beta.mssante.fr"
SUSPENDED_B = "en.conge@beta.mssante.fr"
FINESS_A = "1750000010"


def _ops(space: LocalTrustSpace) -> tuple[Operator, Operator]:
    a = space["alpha.mssante.fr"].operator
    b = space["beta.mssante.fr"].operator
    assert a is not None and b is not None
    return a, b


# -- the service: creation rules --------------------------------------------------------


@pytest.fixture
def mailboxes(tmp_path: Path, database_url: Callable[[], str]) -> Iterator[MailboxService]:
    """The mailbox use cases of an operator hosting alpha.mssante.fr, on a fresh database."""
    db = Database(database_url() or f"sqlite:///{tmp_path / 'mailboxes.db'}")
    db.migrate()
    yield MailboxService(db, ("alpha.mssante.fr",))
    db.dispose()


def test_creation_rules(mailboxes: MailboxService) -> None:
    m = mailboxes
    # Identifiers are checked (prefix, length, Luhn key).
    with pytest.raises(InvalidIdentifier):
        m.create_professional("810000000018", "Martin", "Camille")
    with pytest.raises(InvalidIdentifier):
        m.create_structure("1750000029", "EHPAD Les Tilleuls")
    with pytest.raises(InvalidIdentifier):
        m.create_mailbox(MailboxSpec(PER_A, MailboxType.PER, id_nat_ps="810000000018"))
    with pytest.raises(InvalidIdentifier):
        m.create_mailbox(
            MailboxSpec(ORG_A, MailboxType.ORG, id_nat_struct="12345", responsible="Directrice")
        )

    assert m.create_professional("810000000017", "Martin", "Camille") == "810000000017"
    assert m.create_structure(FINESS_A, "EHPAD Les Tilleuls") == FINESS_A
    with pytest.raises(AlreadyExists):
        m.create_structure(FINESS_A, "Doublon")

    # PER needs an idNat_PS, of a registered professional.
    with pytest.raises(RuleViolation):
        m.create_mailbox(MailboxSpec(PER_A, MailboxType.PER))
    with pytest.raises(NotFound):
        m.create_mailbox(MailboxSpec(PER_A, MailboxType.PER, id_nat_ps="810000000025"))
    per = m.create_mailbox(MailboxSpec(PER_A, MailboxType.PER, id_nat_ps="810000000017"))
    assert (per.type, per.status, per.id_nat_ps) == (
        MailboxType.PER,
        MailboxStatus.ACTIVE,
        "810000000017",
    )
    with pytest.raises(AlreadyExists):
        m.create_mailbox(MailboxSpec(PER_A.upper(), MailboxType.PER, id_nat_ps="810000000017"))

    # ORG and APP need an idNat_Struct and a responsible person.
    for kind in (MailboxType.ORG, MailboxType.APP):
        address = f"{kind.value.lower()}@alpha.mssante.fr"
        with pytest.raises(RuleViolation):
            m.create_mailbox(MailboxSpec(address, kind, responsible="Directrice"))
        with pytest.raises(RuleViolation):
            m.create_mailbox(MailboxSpec(address, kind, id_nat_struct=FINESS_A))
        with pytest.raises(RuleViolation):
            m.create_mailbox(MailboxSpec(address, kind, id_nat_struct=FINESS_A, responsible=" "))
        box = m.create_mailbox(
            MailboxSpec(address, kind, id_nat_struct=FINESS_A, responsible="Directrice")
        )
        assert box.type is kind and box.responsible == "Directrice"
    with pytest.raises(NotFound):  # the structure must be registered
        m.create_mailbox(
            MailboxSpec(
                "dui@alpha.mssante.fr",
                MailboxType.APP,
                id_nat_struct="1750000028",
                responsible="DSI",
            )
        )
    # Only hosted domains.
    with pytest.raises(RuleViolation):
        m.create_mailbox(MailboxSpec(PER_B, MailboxType.PER, id_nat_ps="810000000017"))
    assert {b.address for b in m.list_mailboxes()} == {
        PER_A,
        "org@alpha.mssante.fr",
        "app@alpha.mssante.fr",
    }


def test_address_and_type_are_immutable(mailboxes: MailboxService) -> None:
    m = mailboxes
    seed_structure_mailbox(m, ORG_A, FINESS_A, "EHPAD Les Tilleuls", "")
    for changes in (
        {"type": "PER"},
        {"address": "autre@alpha.mssante.fr"},
        {"type": "ORG", "description": "x"},
    ):
        with pytest.raises(ImmutableField):
            m.update(ORG_A, changes)
    box = m.get(ORG_A)
    assert (box.address, box.type, box.description) == (
        ORG_A,
        MailboxType.ORG,
        "EHPAD Les Tilleuls",
    )
    updated = m.update(ORG_A, {"description": "Secrétariat", "list_rouge": True})
    assert updated.description == "Secrétariat" and updated.list_rouge
    assert (updated.address, updated.type) == (ORG_A, MailboxType.ORG)


def test_update_keeps_the_creation_rules(mailboxes: MailboxService) -> None:
    """`update` cannot reach a state `create_mailbox` refuses (R46)."""
    m = mailboxes
    seed_structure_mailbox(m, ORG_A, FINESS_A, "EHPAD Les Tilleuls", "")
    for changes in ({"responsible": ""}, {"responsible": "  "}, {"rank": 0}):
        with pytest.raises(RuleViolation):
            m.update(ORG_A, changes)
    with pytest.raises(RuleViolation):  # the life cycle has its own use case
        m.update(ORG_A, {"status": "closed"})
    box = m.get(ORG_A)
    assert (box.responsible, box.rank, box.status) == ("Directrice", 1, MailboxStatus.ACTIVE)
    assert m.update(ORG_A, {"responsible": "Cadre de sante", "rank": 2}).rank == 2


def test_life_cycle(mailboxes: MailboxService) -> None:
    m = mailboxes
    seed_professional_mailbox(m, PER_A, "10000000017", "")
    with pytest.raises(InvalidLifecycleTransition):
        m.set_status(PER_A, MailboxStatus.ACTIVE)
    assert m.set_status(PER_A, MailboxStatus.SUSPENDED).status is MailboxStatus.SUSPENDED
    assert m.set_status(PER_A, MailboxStatus.ACTIVE).status is MailboxStatus.ACTIVE
    assert m.set_status(PER_A, MailboxStatus.CLOSED).status is MailboxStatus.CLOSED
    for target in MailboxStatus:  # closed is final
        with pytest.raises(InvalidLifecycleTransition):
            m.set_status(PER_A, target)
    assert m.get(PER_A).status is MailboxStatus.CLOSED
    with m.db.read() as conn:
        actions = [e.action for e in traces.list_events(conn, mailbox=PER_A)]
    assert actions[:3] == ["mailbox.close", "mailbox.reactivate", "mailbox.suspend"]


def test_members_only_on_org_and_cab(mailboxes: MailboxService) -> None:
    m = mailboxes
    seed_professional_mailbox(m, PER_A, "10000000017", "")
    seed_professional_mailbox(m, PER_A2, "10000000033", "")
    seed_structure_mailbox(m, ORG_A, FINESS_A, "EHPAD Les Tilleuls", "")
    with pytest.raises(RuleViolation):
        m.add_member(PER_A2, PER_A)
    with pytest.raises(NotFound):
        m.add_member(ORG_A, "inconnu@alpha.mssante.fr")
    m.add_member(ORG_A, PER_A)
    with pytest.raises(AlreadyExists):
        m.add_member(ORG_A, PER_A)
    assert m.members(ORG_A) == [PER_A]


# -- over SMTP --------------------------------------------------------------------------


def _seed_both(space: LocalTrustSpace) -> None:
    a, b = _ops(space)
    seed_professional_mailbox(a.services.mailboxes, PER_A, "10000000017", PASSWORD)
    seed_professional_mailbox(a.services.mailboxes, PER_A2, "10000000033", PASSWORD)
    # No password where nobody logs in: argon2id costs a quarter of a second a hash.
    seed_structure_mailbox(a.services.mailboxes, ORG_A, FINESS_A, "EHPAD", "")
    a.services.mailboxes.add_member(ORG_A, PER_A)
    mb = b.services.mailboxes
    seed_professional_mailbox(mb, PER_B, "10000000025", "")
    seed_professional_mailbox(mb, CLOSED_B, "10000000041", "")
    seed_professional_mailbox(mb, SUSPENDED_B, "10000000058", "")
    mb.set_status(CLOSED_B, MailboxStatus.CLOSED)
    mb.set_status(SUSPENDED_B, MailboxStatus.SUSPENDED)


def _submission(space: LocalTrustSpace, login: str, password: str) -> smtplib.SMTP:
    a, _ = _ops(space)
    assert a.submission is not None
    client = smtplib.SMTP("127.0.0.1", a.submission.port, timeout=15)
    client.starttls(context=ssl.create_default_context(cafile=str(space.ca_file)))
    client.login(login, password)
    return client


def _inbound_from_alpha(space: LocalTrustSpace) -> smtplib.SMTP:
    _, b = _ops(space)
    assert b.inbound is not None
    tls = space["alpha.mssante.fr"].config.tls
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    client = smtplib.SMTP("127.0.0.1", b.inbound.port, timeout=15)
    client.starttls(context=ctx)
    client.ehlo("mx.alpha.mssante.fr")
    return client


def _refused(operator: Operator, action: str, mailbox: str) -> list[traces.TraceEvent]:
    with operator.services.db.read() as conn:
        events = traces.list_events(conn, action=action, mailbox=mailbox)
    return [e for e in events if e.outcome == "refused"]


def _rcpt_replies(client: smtplib.SMTP, sender: str, rcpts: Sequence[str]) -> list[Any]:
    code, text = client.mail(sender)
    assert code == 250, text
    replies = [client.rcpt(r) for r in rcpts]
    client.rset()
    return replies


async def test_closed_and_suspended_mailboxes_refuse_at_rcpt(
    trust_space: LocalTrustSpace,
) -> None:
    await asyncio.to_thread(_seed_both, trust_space)
    a, b = _ops(trust_space)

    def local_submission() -> list[Any]:
        # Alpha's own BALs, closed and suspended, seen from alpha's submission.
        a.services.mailboxes.set_status(PER_A2, MailboxStatus.SUSPENDED)
        client = _submission(trust_space, PER_A, PASSWORD)
        try:
            suspended = _rcpt_replies(client, PER_A, [PER_A2])
            a.services.mailboxes.set_status(PER_A2, MailboxStatus.CLOSED)
            closed = _rcpt_replies(client, PER_A, [PER_A2])
            return suspended + closed
        finally:
            client.quit()

    def inbound() -> list[Any]:
        client = _inbound_from_alpha(trust_space)
        try:
            return _rcpt_replies(client, PER_A, [CLOSED_B, SUSPENDED_B, PER_B])
        finally:
            client.quit()

    suspended, closed = await asyncio.to_thread(local_submission)
    assert suspended[0] == 450 and suspended[1].startswith(b"4.2.1")
    assert closed[0] == 550 and closed[1].startswith(b"5.2.1")
    assert len(_refused(a, "submission.rcpt", PER_A2)) == 2

    closed_b, suspended_b, active_b = await asyncio.to_thread(inbound)
    assert closed_b[0] == 550 and closed_b[1].startswith(b"5.2.1")
    assert suspended_b[0] == 450 and suspended_b[1].startswith(b"4.2.1")
    assert active_b[0] == 250
    assert len(_refused(b, "inbound.rcpt", CLOSED_B)) == 1
    assert len(_refused(b, "inbound.rcpt", SUSPENDED_B)) == 1


async def test_closed_remote_mailbox_bounces_end_to_end(trust_space: LocalTrustSpace) -> None:
    """Alpha accepts any address of a listed domain; beta's 5.2.1 comes back as a DSN."""
    await asyncio.to_thread(_seed_both, trust_space)
    a, b = _ops(trust_space)

    def send() -> None:
        client = _submission(trust_space, PER_A, PASSWORD)
        try:
            client.sendmail(PER_A, [CLOSED_B], make_message(PER_A, [CLOSED_B]))
        finally:
            client.quit()

    await asyncio.to_thread(send)
    inbox = await wait_for(lambda: a.services.store.list(PER_A))
    report = parse_dsn(a.services.store.read(inbox[0]))  # type: ignore[index]
    assert report.recipients[0]["action"] == "failed"
    assert report.recipients[0]["status"] == "5.2.1"
    assert len(_refused(b, "inbound.rcpt", CLOSED_B)) == 1
    assert b.services.store.list(CLOSED_B) == []


async def test_mailbox_closed_between_rcpt_and_data_is_reported(
    trust_space: LocalTrustSpace,
) -> None:
    """250 to RCPT and DATA is a promise (RFC 5321 §6.1): when the BAL closes in between,
    the message is not delivered and the sender gets a failure report."""
    await asyncio.to_thread(_seed_both, trust_space)
    a, _ = _ops(trust_space)

    def send() -> tuple[int, bytes]:
        client = _submission(trust_space, PER_A, PASSWORD)
        try:
            assert client.mail(PER_A)[0] == 250
            assert client.rcpt(PER_A2)[0] == 250
            a.services.mailboxes.set_status(PER_A2, MailboxStatus.CLOSED)
            return client.data(make_message(PER_A, [PER_A2]))
        finally:
            client.quit()

    code, _ = await asyncio.to_thread(send)
    assert code == 250
    assert a.services.store.list(PER_A2) == []
    inbox = await wait_for(lambda: a.services.store.list(PER_A), timeout=5)
    report = parse_dsn(a.services.store.read(inbox[0]))  # type: ignore[index]
    assert report.recipients[0]["action"] == "failed"
    assert report.recipients[0]["status"] == "5.2.1"
    assert PER_A2 in report.recipients[0]["final-recipient"]


async def test_sending_as_another_mailbox(trust_space: LocalTrustSpace) -> None:
    await asyncio.to_thread(_seed_both, trust_space)
    a, b = _ops(trust_space)

    def attempts() -> dict[str, tuple[int, bytes]]:
        out = {}
        # PER_A2 is neither the owner nor a member of these BALs.
        client = _submission(trust_space, PER_A2, PASSWORD)
        try:
            for sender in (PER_A, ORG_A, "inconnu@alpha.mssante.fr", PER_B):
                out[f"A2 as {sender}"] = client.mail(sender)
                client.rset()
        finally:
            client.quit()
        # PER_A is a member of the ORG BAL: it may send as it.
        client = _submission(trust_space, PER_A, PASSWORD)
        try:
            out["A as ORG"] = client.mail(ORG_A)
            rcpt = client.rcpt(PER_B)
            assert rcpt[0] == 250, rcpt
            out["A as ORG data"] = client.data(make_message(ORG_A, [PER_B], subject="Equipe"))
        finally:
            client.quit()
        return out

    replies = await asyncio.to_thread(attempts)
    for key in ("A2 as " + s for s in (PER_A, ORG_A, "inconnu@alpha.mssante.fr", PER_B)):
        code, text = replies[key]
        assert code == 550 and text.startswith(b"5.7.1"), (key, code, text)
    for sender in (PER_A, ORG_A, "inconnu@alpha.mssante.fr", PER_B):
        assert len(_refused(a, "submission.mail", sender)) == 1, sender
    assert replies["A as ORG"][0] == 250
    assert replies["A as ORG data"][0] == 250
    stored = await wait_for(lambda: b.services.store.list(PER_B))
    message = b.services.store.read(stored[0])  # type: ignore[index]
    assert f"From: {ORG_A}".encode() in message
    assert len(a.services.store.list(ORG_A, "Sent")) == 1  # filed in the ORG BAL's Sent


async def test_refusals_are_traced_and_traces_hold_no_secret(
    trust_space: LocalTrustSpace,
) -> None:
    await asyncio.to_thread(_seed_both, trust_space)
    a, b = _ops(trust_space)
    marker = f"CORPS-SECRET-{secrets.token_hex(8)}"
    wrong_password = f"mauvais-{secrets.token_hex(8)}"

    def traffic() -> None:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _submission(trust_space, PER_A, wrong_password)
        client = _submission(trust_space, PER_A, PASSWORD)
        try:
            data = make_message(
                PER_A,
                [PER_B, PER_A2],
                subject=f"Compte rendu {marker}-objet",
                body=f"Bonjour,\n\n{marker}\n\nPatient: 1 84 12 75 123 456 78\n",
            )
            refused = client.sendmail(PER_A, [PER_B, PER_A2, CLOSED_B], data)
            assert refused == {}  # CLOSED_B is remote: alpha accepts, beta refuses
            with pytest.raises(smtplib.SMTPSenderRefused):
                client.sendmail(PER_B, [PER_A2], data)
        finally:
            client.quit()

    await asyncio.to_thread(traffic)
    await wait_for(lambda: b.services.store.list(PER_B))
    await wait_for(lambda: a.services.store.list(PER_A))  # the bounce for CLOSED_B

    with a.services.db.read() as conn:
        logins = traces.list_events(conn, action="login")
    # smtplib tries PLAIN, then LOGIN, with the wrong password: two refusals.
    assert sorted(e.outcome for e in logins) == ["ok", "refused", "refused"]
    assert all(e.actor == PER_A for e in logins)
    assert len(_refused(a, "submission.mail", PER_B)) == 1
    assert len(_refused(b, "inbound.rcpt", CLOSED_B)) == 1

    text_columns = [c for c in trace_events.columns if isinstance(c.type, String | Text)]
    for operator in (a, b):
        with operator.services.db.read() as conn:
            rows = conn.execute(select(*text_columns)).all()
        assert len(rows) > 10
        for row in rows:
            for value in row:
                if value is None:
                    continue
                assert marker not in value, row
                assert PASSWORD not in value, row
                assert wrong_password not in value, row
                assert "1 84 12 75" not in value, row
