"""The white list in force (R1–R4): `TrustListService` on a real database, then on running
servers that must follow a reload without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import smtplib
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mssante.domain.errors import TrustListRejected
from mssante.domain.trust import parse_dn
from mssante.pki import DistinguishedName
from mssante.runtime import Operator
from mssante.services import traces
from mssante.services.trust import TrustListService
from mssante.storage.database import Database
from mssante.testing.clients import seed_professional_mailbox, wait_for
from mssante.testing.trust_space import LocalTrustSpace, TrustListEntry, build_trust_list_xml

SHARED_DATA = Path(
    os.environ.get(
        "MSSANTE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)
WHITE_LIST = SHARED_DATA / "trust-list" / "listeblanchemssante.xml"
CHECKSUM = SHARED_DATA / "trust-list" / "checksum"
MIPIH_DN = "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"

needs_data = pytest.mark.skipif(
    not WHITE_LIST.is_file(), reason=f"reference white list not found in {SHARED_DATA}"
)


@pytest.fixture
def db(tmp_path: Path, database_url: Callable[[], str]) -> Iterator[Database]:
    database = Database(database_url() or f"sqlite:///{tmp_path / 'trust.db'}")
    database.migrate()
    yield database
    database.dispose()


def _load_real(service: TrustListService) -> None:
    service.load(WHITE_LIST.read_bytes(), CHECKSUM.read_text(), source=str(WHITE_LIST))


@needs_data
def test_real_white_list_loads(db: Database) -> None:
    service = TrustListService(db, ("exemple.mssante.fr",))
    assert service.status() is None and service.current() is None
    assert not service.in_trust_space("adsea29.mssante.fr")

    data = WHITE_LIST.read_bytes()
    status = service.load(data, CHECKSUM.read_text(), source="ansforge")
    assert status.domain_count == 619
    assert status.sha256 == hashlib.sha256(data).hexdigest()
    assert status.sha256 == CHECKSUM.read_text().split()[0].lower()
    assert status.generation == 1
    assert status.generated_at is not None and status.generated_at.year == 2025

    stored = service.status()
    assert stored is not None
    assert (stored.domain_count, stored.sha256, stored.generation, stored.source) == (
        619,
        status.sha256,
        1,
        "ansforge",
    )
    current = service.current()
    assert current is not None and len(current) == 619
    assert current.sha256 == status.sha256
    # 35 distinct DN strings from 29 organisations (OU), as measured in test_trust_list.py;
    # the database round trip keeps them all.
    assert len(current.operator_dns()) == 35
    assert len({dict(parse_dn(dn))["OU"] for dn in current.operator_dns()}) == 29

    # R4: listed, local, or outside; R5: the listed DN only.
    assert service.in_trust_space("adsea29.mssante.fr")
    assert service.in_trust_space("ADSEA29.mssante.fr.")
    assert service.in_trust_space("exemple.mssante.fr")  # local
    assert not service.in_trust_space("gmail.com")
    assert not service.in_trust_space("inconnu.mssante.fr")
    assert service.sender_authorised("adsea29.mssante.fr", MIPIH_DN)
    assert not service.sender_authorised(
        "adsea29.mssante.fr", MIPIH_DN.replace("318310021300028", "318310021300036")
    )
    assert service.is_operator(MIPIH_DN)

    # Another process (a fresh service on the same database) sees the same list.
    other = TrustListService(db, ())
    other_current = other.current()
    assert other_current is not None and other_current.sha256 == status.sha256
    with db.read() as conn:
        (event,) = traces.list_events(conn, action="trust_list.load")
    assert event.outcome == "ok" and "619 entries" in (event.detail or "")


@needs_data
def test_tampered_or_empty_list_keeps_the_list_in_force(db: Database) -> None:
    service = TrustListService(db, ())
    _load_real(service)
    before = service.status()
    current = service.current()
    assert before is not None and current is not None

    data = bytearray(WHITE_LIST.read_bytes())
    i = data.index(b"BREST LA SAUVEGARDE")
    data[i] = ord("C")  # one byte: still well-formed XML, but not the published file
    tampered = bytes(data)
    with pytest.raises(TrustListRejected):
        service.load(tampered, CHECKSUM.read_text(), source="tampered")

    empty = build_trust_list_xml([])
    with pytest.raises(TrustListRejected):
        service.load(empty)
    # A checksum that matches does not make an empty list acceptable.
    with pytest.raises(TrustListRejected):
        service.load(empty, hashlib.sha256(empty).hexdigest())
    with pytest.raises(TrustListRejected):
        service.load(b"<ListeBlancheMSSante", None)
    with pytest.raises(TrustListRejected):
        service.load(b"")

    after = service.status()
    assert after is not None
    assert (after.sha256, after.generation, after.domain_count) == (
        before.sha256,
        before.generation,
        619,
    )
    assert service.current() is current
    fresh = TrustListService(db, ()).current()  # what the database holds, not a cache
    assert fresh is not None
    assert fresh.sha256 == before.sha256
    assert fresh.domain_names() == current.domain_names()
    assert fresh.get("adsea29.mssante.fr") is not None
    with db.read() as conn:
        events = traces.list_events(conn, action="trust_list.load")
    assert [e.outcome for e in events].count("refused") == 5
    assert [e.outcome for e in events].count("ok") == 1


# -- running servers ----------------------------------------------------------------------

GAMMA_DN = DistinguishedName("mx.gamma.mssante.fr", "1130000045", "Operateur Gamma", "Gironde (33)")


def _ops(space: LocalTrustSpace) -> tuple[Operator, Operator]:
    a = space["alpha.mssante.fr"].operator
    b = space["beta.mssante.fr"].operator
    assert a is not None and b is not None
    return a, b


def _entries(space: LocalTrustSpace, *domains: str) -> list[TrustListEntry]:
    out = []
    for domain in domains:
        if domain == "gamma.mssante.fr":
            out.append(TrustListEntry(domain, "Gamma", GAMMA_DN.rfc4514()))
        else:
            spec = space[domain].spec
            out.append(TrustListEntry(domain, spec.organization, spec.dn().rfc4514()))
    return out


def _reload_elsewhere(operator: Operator, xml: bytes) -> None:
    """Load a list the way the CLI would: another process, the same database."""
    config = operator.config
    db = Database(config.database_url)
    try:
        TrustListService(db, tuple(config.operator.domains)).load(
            xml, hashlib.sha256(xml).hexdigest(), source="reload"
        )
    finally:
        db.dispose()


def _rcpt_at_alpha(space: LocalTrustSpace, sender: str, password: str, rcpt: str) -> int:
    a, _ = _ops(space)
    assert a.submission is not None
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    with smtplib.SMTP("127.0.0.1", a.submission.port, timeout=15) as client:
        client.starttls(context=ctx)
        client.login(sender, password)
        assert client.mail(sender)[0] == 250
        return client.rcpt(rcpt)[0]


def _mail_at_beta(space: LocalTrustSpace, cert: tuple[Path, Path], sender: str) -> int:
    _, b = _ops(space)
    assert b.inbound is not None
    ctx = ssl.create_default_context(cafile=str(space.ca_file))
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    with smtplib.SMTP("127.0.0.1", b.inbound.port, timeout=15) as client:
        client.starttls(context=ctx)
        client.ehlo("mx.peer.mssante.fr")
        return client.mail(sender)[0]


async def test_running_servers_follow_a_reload(
    trust_space: LocalTrustSpace, tmp_path: Path
) -> None:
    a, b = _ops(trust_space)
    sender, password = "camille.martin@alpha.mssante.fr", "mot de passe"
    await asyncio.to_thread(
        seed_professional_mailbox, a.services.mailboxes, sender, "10000000017", password
    )
    started = b.services.trust.status()
    assert started is not None and started.domain_count == 2  # loaded from the config file
    gamma = trust_space.ca.issue(GAMMA_DN)
    gamma_cert = (tmp_path / "gamma.pem", tmp_path / "gamma.key")
    gamma.write(*gamma_cert, chain=True)
    alpha_tls = trust_space["alpha.mssante.fr"].config.tls
    alpha_cert = (alpha_tls.cert_file, alpha_tls.key_file)
    gamma_rcpt = "contact@gamma.mssante.fr"

    assert await asyncio.to_thread(_rcpt_at_alpha, trust_space, sender, password, gamma_rcpt) == 550
    assert (
        await asyncio.to_thread(_mail_at_beta, trust_space, gamma_cert, "x@gamma.mssante.fr") == 550
    )

    # gamma joins the trust space.
    xml = build_trust_list_xml(
        _entries(trust_space, "alpha.mssante.fr", "beta.mssante.fr", "gamma.mssante.fr")
    )
    for operator in (a, b):
        await asyncio.to_thread(_reload_elsewhere, operator, xml)
    await wait_for(
        lambda: _rcpt_at_alpha(trust_space, sender, password, gamma_rcpt) == 250, timeout=6
    )
    await wait_for(
        lambda: _mail_at_beta(trust_space, gamma_cert, "x@gamma.mssante.fr") == 250, timeout=6
    )
    assert await asyncio.to_thread(_mail_at_beta, trust_space, alpha_cert, sender) == 250

    # alpha leaves it: beta stops accepting alpha's mail, without a restart.
    xml = build_trust_list_xml(_entries(trust_space, "beta.mssante.fr", "gamma.mssante.fr"))
    await asyncio.to_thread(_reload_elsewhere, b, xml)
    await wait_for(lambda: _mail_at_beta(trust_space, alpha_cert, sender) == 550, timeout=6)
    status = b.services.trust.status()
    assert status is not None and status.generation == 3 and status.domain_count == 2


async def test_a_bad_configured_file_keeps_the_list_in_force(
    trust_space: LocalTrustSpace,
) -> None:
    a, _ = _ops(trust_space)
    before = a.services.trust.status()
    assert before is not None
    trust_space.trust_list_file.write_bytes(build_trust_list_xml([]))
    await asyncio.to_thread(a.services.load_configured_trust_list)
    after = a.services.trust.status()
    assert after is not None
    assert (after.sha256, after.generation) == (before.sha256, before.generation)
    assert a.services.trust.in_trust_space("beta.mssante.fr")
