"""Machine credentials of APP mailboxes (R18): certificate bindings, OAuth2 clients, tokens.

The service runs on a fresh database (SQLite, or PostgreSQL with MSSANTE_TEST_DB=postgresql);
certificates come from a throwaway `DemoCA`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select

from mssante.domain.errors import AlreadyExists, AuthenticationFailed, NotFound, RuleViolation
from mssante.domain.mailboxes import MailboxSpec, MailboxStatus, MailboxType
from mssante.identity import InvalidToken
from mssante.pki import DemoCA, DistinguishedName, IssuedCert
from mssante.services import machine_credentials as mc_module
from mssante.services import traces
from mssante.services.machine_credentials import (
    API_AUDIENCE,
    InvalidScope,
    MachineCredentialService,
)
from mssante.services.mailboxes import MailboxService
from mssante.services.token_signer import TokenSigner
from mssante.storage.database import Database
from mssante.storage.schema import machine_credentials, trace_events
from mssante.testing.clients import seed_professional_mailbox, seed_structure_mailbox
from mssante.tls import certificate_fingerprint_sha256

DOMAIN = "alpha.mssante.fr"
ISSUER = "https://mx.alpha.mssante.fr"
APP = "dui.ehpad@alpha.mssante.fr"
APP2 = "lab.resultats@alpha.mssante.fr"
ORG = "secretariat@alpha.mssante.fr"
PER = "camille.martin@alpha.mssante.fr"
FINESS = "1750000010"
RPPS = "10000000017"  # idNat_PS 810000000017
PASSWORD = "Sesame-ouvre-toi 42!"

CA = DemoCA.create("test CA")  # EC keys are quick: one CA for the module


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return dt.datetime.now(dt.UTC).timestamp() + self.offset


@dataclass
class Env:
    db: Database
    mailboxes: MailboxService
    service: MachineCredentialService
    clock: Clock


@pytest.fixture
def env(tmp_path: Path, database_url: Callable[[], str]) -> Iterator[Env]:
    db = Database(database_url() or f"sqlite:///{tmp_path / 'machines.db'}")
    db.migrate()
    mailboxes = MailboxService(db, (DOMAIN,))
    seed_structure_mailbox(
        mailboxes, APP, FINESS, "EHPAD Les Tilleuls", PASSWORD, type=MailboxType.APP
    )
    mailboxes.create_mailbox(
        MailboxSpec(APP2, MailboxType.APP, id_nat_struct=FINESS, responsible="Biologiste")
    )
    mailboxes.create_mailbox(
        MailboxSpec(ORG, MailboxType.ORG, id_nat_struct=FINESS, responsible="Directrice")
    )
    seed_professional_mailbox(mailboxes, PER, RPPS, PASSWORD)
    clock = Clock()
    signer = TokenSigner.load_or_create(tmp_path / "data" / "oauth-signing-key.pem", clock=clock)
    service = MachineCredentialService(db, mailboxes, token_signer=signer, issuer=ISSUER)
    yield Env(db, mailboxes, service, clock)
    db.dispose()


def _client_cert(cn: str = "dui.ehpad-les-tilleuls", **kwargs: object) -> IssuedCert:
    dn = DistinguishedName(cn, organizational_unit=FINESS, organization="EHPAD Les Tilleuls")
    return CA.issue(dn, server=False, client=True, **kwargs)  # type: ignore[arg-type]


def _self_built(*, eku: list[x509.ObjectIdentifier] | None, ca: bool = False) -> x509.Certificate:
    """A certificate with exactly the extensions asked for (DemoCA always adds an EKU)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "lps.example")]))
        .issuer_name(CA.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(CA.private_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _events(env: Env, action: str) -> list[traces.TraceEvent]:
    with env.db.read() as conn:
        return traces.list_events(conn, action=action)


def _all_trace_text(env: Env) -> str:
    with env.db.read() as conn:
        rows = conn.execute(select(trace_events)).all()
    return "\n".join(" ".join(str(v) for v in row) for row in rows)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    header, payload, _ = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload))


# -- certificates ------------------------------------------------------------------------


def test_bind_certificate_to_an_app_mailbox(env: Env) -> None:
    cert = _client_cert()
    fingerprint = env.service.bind_certificate(
        APP, cert.cert_pem, actor="admin", description="DUI Tilleuls"
    )
    assert fingerprint == certificate_fingerprint_sha256(cert.certificate)
    assert len(fingerprint) == 64 and fingerprint == fingerprint.lower()
    [credential] = env.service.list(APP)
    assert credential.kind == "certificate" and credential.active
    assert credential.fingerprint_sha256 == fingerprint
    dn = "CN=dui.ehpad-les-tilleuls,OU=1750000010,O=EHPAD Les Tilleuls,C=FR"
    assert credential.subject_dn == dn
    assert credential.description == "DUI Tilleuls" and credential.client_id is None
    [event] = _events(env, "machine.certificate.bind")
    assert event.mailbox == APP and event.actor == "admin" and fingerprint in (event.detail or "")

    # DER is accepted too; the same certificate twice (even for another mailbox) is refused.
    der = _client_cert("lab").certificate.public_bytes(serialization.Encoding.DER)
    env.service.bind_certificate(APP2, der, actor="admin")
    with pytest.raises(AlreadyExists):
        env.service.bind_certificate(APP, cert.cert_pem, actor="admin")
    with pytest.raises(AlreadyExists):
        env.service.bind_certificate(APP2, cert.cert_pem, actor="admin")


def test_binding_rules(env: Env) -> None:
    good = _client_cert().cert_pem
    for address in (PER, ORG):  # only APP mailboxes
        with pytest.raises(RuleViolation, match="APP"):
            env.service.bind_certificate(address, good, actor="admin")
    with pytest.raises(NotFound):
        env.service.bind_certificate("nobody@alpha.mssante.fr", good, actor="admin")

    server_only = CA.issue(DistinguishedName("mx.alpha.mssante.fr"), server=True, client=False)
    with pytest.raises(RuleViolation, match="client certificate"):
        env.service.bind_certificate(APP, server_only.cert_pem, actor="admin")
    with pytest.raises(RuleViolation, match="CA certificate"):
        env.service.bind_certificate(APP, CA.cert_pem, actor="admin")
    expired = _client_cert(not_after=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    with pytest.raises(RuleViolation, match="expired"):
        env.service.bind_certificate(APP, expired.cert_pem, actor="admin")
    with pytest.raises(RuleViolation, match=r"X\.509"):
        env.service.bind_certificate(APP, b"-----BEGIN CERTIFICATE-----\nAAAA\n", actor="admin")
    with pytest.raises(RuleViolation, match="description"):
        env.service.bind_certificate(APP, good, actor="admin", description="x" * 300)
    env.mailboxes.set_status(APP2, MailboxStatus.CLOSED)
    with pytest.raises(RuleViolation, match="closed"):
        env.service.bind_certificate(APP2, good, actor="admin")
    assert env.service.list(APP) == []  # nothing was stored by the refusals

    # No EKU at all is a certificate usable for anything, clientAuth included (RFC 5280).
    no_eku = _self_built(eku=None)
    env.service.bind_certificate(APP, _pem(no_eku), actor="admin")
    with pytest.raises(RuleViolation):  # a CA, even with clientAuth, is not a leaf
        env.service.bind_certificate(
            APP, _pem(_self_built(eku=[x509.ExtendedKeyUsageOID.CLIENT_AUTH], ca=True)), actor="a"
        )


def test_principal_for_certificate(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    bound, stranger = _client_cert(), _client_cert("inconnu")
    fingerprint = env.service.bind_certificate(APP, bound.cert_pem, actor="admin")

    principal = env.service.principal_for_certificate(bound.certificate)
    assert principal.login == APP and principal.kind == "application"
    assert principal.id_nat_ps is None
    assert env.mailboxes.get(APP).owner_user_id == principal.user_id

    # A certificate of the same CA that is bound to nothing is refused.
    with pytest.raises(AuthenticationFailed):
        env.service.principal_for_certificate(stranger.certificate)

    # A suspended mailbox refuses, a reactivated one accepts again.
    env.mailboxes.set_status(APP, MailboxStatus.SUSPENDED)
    with pytest.raises(AuthenticationFailed):
        env.service.principal_for_certificate(bound.certificate)
    env.mailboxes.set_status(APP, MailboxStatus.ACTIVE)
    assert env.service.principal_for_certificate(bound.certificate).login == APP

    # Outside its validity period (checked again here, besides the TLS layer).
    later = bound.certificate.not_valid_after_utc + dt.timedelta(seconds=1)
    monkeypatch.setattr(mc_module, "utcnow", lambda: later)
    with pytest.raises(AuthenticationFailed):
        env.service.principal_for_certificate(bound.certificate)
    monkeypatch.undo()

    # Revoked by its fingerprint in the colon form that tools print.
    colons = ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    revoked = env.service.revoke(colons, actor="admin")
    assert revoked.revoked_at is not None and revoked.fingerprint_sha256 == fingerprint
    with pytest.raises(AuthenticationFailed):
        env.service.principal_for_certificate(bound.certificate)
    # Revoking again is harmless and keeps the first date; binding it again is refused.
    assert env.service.revoke(revoked.id).revoked_at == revoked.revoked_at
    with pytest.raises(AlreadyExists, match="revoked"):
        env.service.bind_certificate(APP, bound.cert_pem, actor="admin")
    assert len(_events(env, "machine.credential.revoke")) == 1
    with pytest.raises(NotFound):
        env.service.revoke("mss-app-0000000000000000")


# -- OAuth2 clients and tokens -----------------------------------------------------------


def test_create_client_keeps_only_a_hash(env: Env) -> None:
    client_id, secret = env.service.create_client(APP, actor="admin", description="DUI")
    assert client_id.startswith("mss-app-") and len(secret) >= 40
    with env.db.read() as conn:
        row = conn.execute(
            select(machine_credentials).where(machine_credentials.c.client_id == client_id)
        ).one()
    assert row.kind == "oauth_client" and row.secret_hash.startswith("$argon2id$")
    assert secret not in row.secret_hash
    [credential] = env.service.list(APP)
    assert credential.client_id == client_id and credential.fingerprint_sha256 is None
    [event] = _events(env, "machine.client.create")
    assert client_id in (event.detail or "")
    assert secret not in _all_trace_text(env)
    for address in (PER, ORG):
        with pytest.raises(RuleViolation):
            env.service.create_client(address, actor="admin")
    other_id, other_secret = env.service.create_client(APP, actor="admin")
    assert other_id != client_id and other_secret != secret


def test_issue_and_validate_a_token(env: Env) -> None:
    client_id, secret = env.service.create_client(APP, actor="admin")
    issued = env.service.issue_token(client_id, secret, peer="192.0.2.7")
    assert issued.token_type == "Bearer" and issued.expires_in == 300 and issued.scope == "api"
    assert issued.access_token not in repr(issued)
    header, claims = _parts(issued.access_token)
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": env.service.signer.kid}
    assert claims["iss"] == ISSUER and claims["aud"] == API_AUDIENCE
    assert claims["sub"] == APP and claims["mailboxes"] == [APP]
    assert claims["client_id"] == client_id and claims["jti"] == issued.jti
    assert claims["exp"] == claims["iat"] + 300  # type: ignore[operator]

    principal = env.service.validate_token(issued.access_token)
    assert principal.login == APP and principal.kind == "application"

    # The JWKS alone verifies the token (what an integrator does offline).
    [jwk] = env.service.signer.jwks()["keys"]
    assert "d" not in jwk and jwk["kid"] == header["kid"] and jwk["alg"] == "ES256"
    decoded = jwt.decode(issued.access_token, ECKey.import_key(jwk), algorithms=["ES256"])
    assert decoded.claims["sub"] == APP

    [event] = _events(env, "oauth.token")
    assert event.outcome == "ok" and event.actor == client_id and event.peer == "192.0.2.7"
    assert issued.jti in (event.detail or "")
    text = _all_trace_text(env)
    assert secret not in text and issued.access_token not in text
    assert issued.access_token.split(".")[2] not in text

    assert env.service.issue_token(client_id, secret, scope="api").scope == "api"
    with pytest.raises(InvalidScope):
        env.service.issue_token(client_id, secret, scope="api admin")


def test_wrong_credentials_are_refused_at_the_same_cost(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id, secret = env.service.create_client(APP, actor="admin")
    checked: list[str | None] = []
    real = mc_module.verify_password

    def spy(stored_hash: str | None, password: str) -> bool:
        checked.append(stored_hash)
        return real(stored_hash, password)

    monkeypatch.setattr(mc_module, "verify_password", spy)
    for cid, sec in (
        (client_id, secret[:-1] + ("A" if secret[-1] != "A" else "B")),
        ("mss-app-ffffffffffffffff", secret),
        (secret, client_id),  # swapped: the secret must not land in the traces
        (client_id, ""),
    ):
        with pytest.raises(AuthenticationFailed) as caught:
            env.service.issue_token(cid, sec)
        assert caught.value.message == "invalid client credentials"
    # Unknown clients cost one argon2 verification too (against a dummy hash).
    assert len(checked) == 4 and checked[1] is None and checked[2] is None
    refused = [e for e in _events(env, "oauth.token") if e.outcome == "refused"]
    assert len(refused) == 4
    assert secret not in _all_trace_text(env)
    assert any((e.actor or "").startswith("unknown:") for e in refused)


def test_token_expiry_and_tampering(env: Env) -> None:
    client_id, secret = env.service.create_client(APP, actor="admin")
    token = env.service.issue_token(client_id, secret).access_token
    signer = env.service.signer

    env.clock.offset = 299
    assert env.service.validate_token(token).login == APP
    env.clock.offset = 306  # 300 s lifetime + 5 s leeway
    with pytest.raises(InvalidToken, match="expired"):
        env.service.validate_token(token)
    env.clock.offset = 0

    header, claims = _parts(token)
    h, p, s = token.split(".")

    def refused(candidate: str, match: str) -> None:
        with pytest.raises(InvalidToken, match=match):
            env.service.validate_token(candidate)

    # Another mailbox in the payload, same signature.
    forged_payload = _b64(json.dumps({**claims, "sub": APP2, "mailboxes": [APP2]}).encode())
    refused(f"{h}.{forged_payload}.{s}", "bad signature")
    # A flipped signature byte.
    raw = bytearray(_unb64(s))
    raw[5] ^= 1
    refused(f"{h}.{p}.{_b64(bytes(raw))}", "bad signature")
    # Another key that claims our kid.
    other = ECKey.generate_key("P-256")
    forged = jwt.encode(dict(header), dict(claims), other, algorithms=["ES256"])
    refused(forged, "bad signature")
    refused(TokenSigner.generate().sign(claims), "unknown signing key")
    # alg=none and HMAC are refused before any key is used.
    none_header = _b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    refused(f"{none_header}.{p}.", "algorithm")
    hs = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": signer.kid}).encode())
    refused(f"{hs}.{p}.{s}", "algorithm")
    # Our key, wrong claims.
    refused(signer.sign({**claims, "iss": "https://mx.beta.mssante.fr"}), "issuer")
    refused(signer.sign({**claims, "aud": "account"}), "audience")
    refused(signer.sign({k: v for k, v in claims.items() if k != "exp"}), "exp")
    refused(signer.sign(claims, typ="JWT"), "typ")
    refused(signer.sign({**claims, "sub": APP2}), "revoked or mailbox")  # sub ≠ client's BAL
    refused(signer.sign({**claims, "client_id": "mss-app-0"}), "revoked or mailbox")
    refused("not-a-token", "compact JWS")
    refused("a.b.c", "malformed")
    refused("x" * 9000, "too large")

    # Still valid, until the client is revoked or the mailbox suspended.
    assert env.service.validate_token(token).login == APP
    env.mailboxes.set_status(APP, MailboxStatus.SUSPENDED)
    refused(token, "revoked or mailbox")
    with pytest.raises(AuthenticationFailed):
        env.service.issue_token(client_id, secret)
    env.mailboxes.set_status(APP, MailboxStatus.ACTIVE)
    assert env.service.validate_token(token).login == APP
    env.service.revoke(client_id, actor="admin")
    refused(token, "revoked or mailbox")
    with pytest.raises(AuthenticationFailed):
        env.service.issue_token(client_id, secret)


# -- the signer ---------------------------------------------------------------------------


def test_signer_key_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "oauth-signing-key.pem"
    first = TokenSigner.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = TokenSigner.load_or_create(path)
    assert again.kid == first.kid  # loaded, not replaced
    token = first.sign({"iss": ISSUER, "aud": API_AUDIENCE, "exp": 2**40})
    assert again.verify(token, issuer=ISSUER, audience=API_AUDIENCE)["iss"] == ISSUER
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left

    rsa_path = tmp_path / "rsa.pem"
    rsa_path.write_bytes(
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="EC P-256"):
        TokenSigner.load_or_create(rsa_path)


# -- professionals' mailboxes (PSC tokens on the API) -------------------------------------


def test_mailboxes_for_id_nat_ps(env: Env) -> None:
    id_nat_ps = "8" + RPPS
    assert [b.address for b in env.mailboxes.mailboxes_for_id_nat_ps(id_nat_ps)] == [PER]
    env.mailboxes.add_member(ORG, PER)
    assert [b.address for b in env.mailboxes.mailboxes_for_id_nat_ps(id_nat_ps)] == [PER, ORG]
    assert env.mailboxes.mailboxes_for_id_nat_ps("810000000025") == []


# -- the command line -----------------------------------------------------------------------


def test_cli_commands(tmp_path: Path, database_url: Callable[[], str]) -> None:
    from click.testing import CliRunner

    from conftest import ALPHA
    from mssante.cli import main
    from mssante.testing.trust_space import LocalTrustSpace

    space = LocalTrustSpace.create(tmp_path / "space", [ALPHA], database_urls=[database_url()])
    config = space.operators[0].config_file
    env = {"MSSANTE_CONFIG": None, "COLUMNS": "250"}

    def cli(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["--config", str(config), *args], env=env)
        return result.exit_code, result.stdout, result.stderr

    assert cli("structure", "create", "--id-nat-struct", FINESS, "--name", "EHPAD")[0] == 0
    code, _, _ = cli(
        "mailbox", "create", APP, "--type", "APP", "--id-nat-struct", FINESS,
        "--responsible", "DSI",
    )  # fmt: skip
    assert code == 0
    cert_file = tmp_path / "dui.pem"
    cert = _client_cert()
    cert_file.write_bytes(cert.cert_pem)

    code, stdout, _ = cli("mailbox", "bind-certificate", APP, str(cert_file))
    fingerprint = certificate_fingerprint_sha256(cert.certificate)
    assert code == 0 and fingerprint in stdout
    code, _, stderr = cli("mailbox", "bind-certificate", APP, str(cert_file))
    assert code == 1 and "already-exists" in stderr

    code, stdout, stderr = cli("mailbox", "create-client", APP, "--json", "--description", "DUI")
    assert code == 0 and "shown only now" in stderr
    created = json.loads(stdout)
    assert created["client_id"].startswith("mss-app-") and created["client_secret"]
    code, stdout, _ = cli("mailbox", "create-client", APP)
    assert code == 0 and "client_secret: " in stdout

    code, stdout, _ = cli("mailbox", "credentials", APP, "--json")
    listed = json.loads(stdout)
    assert [c["kind"] for c in listed] == ["certificate", "oauth_client", "oauth_client"]
    assert all("secret" not in json.dumps(c) for c in listed)
    assert listed[0]["fingerprint_sha256"] == fingerprint and listed[1]["description"] == "DUI"
    code, stdout, _ = cli("mailbox", "credentials", APP)
    assert code == 0 and created["client_id"] in stdout and "active" in stdout

    code, stdout, _ = cli("mailbox", "revoke-credential", created["client_id"])
    assert code == 0 and "revoked" in stdout
    code, stdout, _ = cli("mailbox", "revoke-credential", str(listed[0]["id"]))
    assert code == 0 and fingerprint in stdout
    code, stdout, _ = cli("mailbox", "credentials", APP, "--json")
    assert [c["revoked_at"] is not None for c in json.loads(stdout)] == [True, True, False]
    code, _, stderr = cli("mailbox", "revoke-credential", "424242")
    assert code == 1 and "not-found" in stderr
    code, _, stderr = cli("mailbox", "create-client", "nobody@alpha.mssante.fr")
    assert code == 1 and "not-found" in stderr

    key_file = space.operators[0].config.data_dir / "oauth-signing-key.pem"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
