"""Machine credentials of APP mailboxes (R18): client certificates and OAuth2 clients.

Software that acts for an applicative BAL (a DUI, an LPS, a lab system) logs in without a
human PSC login, two ways:

* **TLS client certificate** (SMTP ``AUTH EXTERNAL``, RFC 4422 App. A): the certificate is
  bound to one APP mailbox by its SHA-256 fingerprint (exact match; the subject DN is kept
  for the administrators). Chain and validity are checked by the TLS layer against the trust
  anchors; here only the binding.
* **OAuth2 client credentials** (RFC 6749 §4.4) for the HTTP API: a ``client_id`` and a
  random secret shown once and stored as an argon2id hash. ``issue_token`` exchanges them for
  a short-lived JWT access token (RFC 9068) signed by the operator's
  :class:`~mssante.services.token_signer.TokenSigner`; ``validate_token`` checks it and that
  the credential and the mailbox are still in force.

Every change and every token request is traced (R63) in the same transaction; a trace holds
the client_id, a certificate fingerprint or a token hash, never a secret or a token.
"""

from __future__ import annotations

import builtins
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from mssante.domain.errors import AlreadyExists, AuthenticationFailed, NotFound, RuleViolation
from mssante.domain.mailboxes import MailboxStatus, MailboxType
from mssante.identity.errors import InvalidToken, token_hash
from mssante.services import traces
from mssante.services.mailboxes import MailboxService, Principal
from mssante.services.passwords import hash_password, verify_password
from mssante.services.token_signer import TokenSigner
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import machine_credentials, mailboxes, users
from mssante.tls import certificate_fingerprint_sha256

__all__ = [
    "API_AUDIENCE",
    "DEFAULT_SCOPE",
    "DEFAULT_TOKEN_LIFETIME",
    "CredentialKind",
    "InvalidScope",
    "IssuedToken",
    "MachineCredential",
    "MachineCredentialService",
]

API_AUDIENCE = "mssante-api"
DEFAULT_TOKEN_LIFETIME = 300
DEFAULT_SCOPE = "api"
MAX_DESCRIPTION = 255
CLIENT_ID_PREFIX = "mss-app-"


class CredentialKind:
    CERTIFICATE = "certificate"
    OAUTH_CLIENT = "oauth_client"


class InvalidScope(RuleViolation):
    """The token request asks for a scope this operator does not grant (RFC 6749 §5.2)."""

    code = "invalid-scope"


@dataclass(frozen=True)
class MachineCredential:
    """A bound certificate or an OAuth2 client; never holds a secret."""

    id: int
    mailbox: str
    kind: str
    fingerprint_sha256: str | None
    subject_dn: str | None
    client_id: str | None
    description: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def from_row(cls, row: Row[Any]) -> MachineCredential:
        m = row._mapping
        created = as_utc(m["created_at"])
        assert created is not None
        return cls(
            id=int(m["id"]),
            mailbox=str(m["address"]),
            kind=str(m["kind"]),
            fingerprint_sha256=m["fingerprint_sha256"],
            subject_dn=m["subject_dn"],
            client_id=m["client_id"],
            description=m["description"],
            created_at=created,
            revoked_at=as_utc(m["revoked_at"]),
        )


@dataclass(frozen=True)
class IssuedToken:
    """The answer to a client-credentials request (RFC 6749 §5.1)."""

    access_token: str = field(repr=False)
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    scope: str = DEFAULT_SCOPE
    jti: str = ""


def _parse_certificate(cert_pem: bytes) -> x509.Certificate:
    try:
        if cert_pem.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(cert_pem)
        return x509.load_der_x509_certificate(cert_pem)
    except ValueError:
        raise RuleViolation("not an X.509 certificate (PEM or DER expected)") from None


def _check_client_certificate(cert: x509.Certificate, now: datetime) -> None:
    """A leaf certificate usable for TLS client authentication (RFC 5280 §4.2.1.3, §4.2.1.12)."""
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is not None and basic.ca:
        raise RuleViolation("a CA certificate cannot be bound to a mailbox")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise RuleViolation("the certificate is not a client certificate (no clientAuth usage)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise RuleViolation("the certificate key may not sign (no digitalSignature usage)")
    if cert.not_valid_after_utc <= now:
        raise RuleViolation("the certificate has expired")


def _description(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = " ".join(value.split())
    if len(value) > MAX_DESCRIPTION:
        raise RuleViolation(f"a description has at most {MAX_DESCRIPTION} characters")
    return value


def _normalise_fingerprint(value: str) -> str | None:
    """``AB:CD:…`` or ``abcd…`` (64 hex digits) → lower-case hex; None if not a fingerprint."""
    digits = value.strip().replace(":", "").lower()
    if len(digits) == 64 and all(ch in string.hexdigits for ch in digits):
        return digits
    return None


_SELECT = select(
    machine_credentials,
    mailboxes.c.address,
    mailboxes.c.type.label("mailbox_type"),
    mailboxes.c.status.label("mailbox_status"),
    users.c.id.label("user_id"),
    users.c.login.label("user_login"),
    users.c.kind.label("user_kind"),
    users.c.status.label("user_status"),
).select_from(
    machine_credentials.join(mailboxes, mailboxes.c.id == machine_credentials.c.mailbox_id).join(
        users, users.c.id == mailboxes.c.owner_user_id, isouter=True
    )
)


def _in_force(row: Row[Any] | None) -> bool:
    """Credential not revoked, APP mailbox active, its owner user active."""
    return (
        row is not None
        and row.revoked_at is None
        and row.mailbox_type == MailboxType.APP.value
        and row.mailbox_status == MailboxStatus.ACTIVE.value
        and row.user_id is not None
        and row.user_status == "active"
    )


def _principal(row: Row[Any]) -> Principal:
    return Principal(user_id=row.user_id, login=row.user_login, kind=row.user_kind, id_nat_ps=None)


class MachineCredentialService:
    """Binds certificates, manages OAuth2 clients and issues/validates their tokens."""

    def __init__(
        self,
        db: Database,
        mailboxes: MailboxService,
        *,
        token_signer: TokenSigner,
        issuer: str,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        audience: str = API_AUDIENCE,
    ) -> None:
        if not issuer:
            raise ValueError("the token issuer (operator URL) is required")
        if not 30 <= token_lifetime <= 3600:
            raise ValueError("token_lifetime must be between 30 and 3600 seconds")
        self.db = db
        self.mailboxes = mailboxes
        self.signer = token_signer
        self.issuer = issuer
        self.token_lifetime = token_lifetime
        self.audience = audience

    # -- helpers ----------------------------------------------------------------------

    def _app_mailbox(self, conn: Connection, address: str) -> tuple[int, str]:
        box = self.mailboxes.get_in(conn, address)
        if box.type is not MailboxType.APP:
            raise RuleViolation(
                f"{box.address} is a {box.type.value} mailbox: machine credentials are for APP"
            )
        if box.status is MailboxStatus.CLOSED:
            raise RuleViolation(f"{box.address} is closed")
        return box.id, box.address

    # -- certificates (SMTP AUTH EXTERNAL) --------------------------------------------

    def bind_certificate(
        self, app_address: str, cert_pem: bytes, *, actor: str, description: str | None = None
    ) -> str:
        """Bind a client certificate to an APP mailbox; returns its SHA-256 fingerprint."""
        cert = _parse_certificate(cert_pem)
        now = utcnow()
        _check_client_certificate(cert, now)
        fingerprint = certificate_fingerprint_sha256(cert)
        subject = cert.subject.rfc4514_string()[:1000]
        note = _description(description)
        try:
            with self.db.write() as conn:
                mailbox_id, address = self._app_mailbox(conn, app_address)
                existing = conn.execute(
                    select(machine_credentials.c.revoked_at).where(
                        machine_credentials.c.fingerprint_sha256 == fingerprint
                    )
                ).first()
                if existing is not None:
                    state = "revoked" if existing.revoked_at is not None else "in force"
                    raise AlreadyExists(f"certificate {fingerprint} is already bound ({state})")
                conn.execute(
                    insert(machine_credentials).values(
                        mailbox_id=mailbox_id,
                        kind=CredentialKind.CERTIFICATE,
                        fingerprint_sha256=fingerprint,
                        subject_dn=subject,
                        description=note,
                        created_at=now,
                    )
                )
                traces.record(
                    conn,
                    "machine.certificate.bind",
                    mailbox=address,
                    actor=actor,
                    detail=f"sha256={fingerprint} subject={subject}",
                )
        except IntegrityError:  # a concurrent bind of the same certificate
            raise AlreadyExists(f"certificate {fingerprint} is already bound") from None
        return fingerprint

    def principal_for_certificate(self, cert: x509.Certificate) -> Principal:
        """The APP mailbox's owner for a presented client certificate (exact fingerprint).

        Raises AuthenticationFailed when the certificate is bound to nothing, its binding is
        revoked, the mailbox is not active or the certificate is outside its validity period.
        The chain was verified by the TLS layer; the caller writes the login trace.
        """
        fingerprint = certificate_fingerprint_sha256(cert)
        with self.db.read() as conn:
            row = conn.execute(
                _SELECT.where(
                    machine_credentials.c.fingerprint_sha256 == fingerprint,
                    machine_credentials.c.kind == CredentialKind.CERTIFICATE,
                )
            ).first()
        now = utcnow()
        valid_now = cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        if row is None or not _in_force(row) or not valid_now:
            raise AuthenticationFailed("certificate not bound to an active APP mailbox")
        return _principal(row)

    # -- OAuth2 clients (HTTP API) ----------------------------------------------------

    def create_client(
        self, app_address: str, *, actor: str, description: str | None = None
    ) -> tuple[str, str]:
        """A new client of an APP mailbox: (client_id, client_secret). The secret is shown
        once; only its argon2id hash is kept."""
        note = _description(description)
        client_id = CLIENT_ID_PREFIX + secrets.token_hex(8)
        client_secret = secrets.token_urlsafe(32)
        secret_hash = hash_password(client_secret)
        with self.db.write() as conn:
            mailbox_id, address = self._app_mailbox(conn, app_address)
            conn.execute(
                insert(machine_credentials).values(
                    mailbox_id=mailbox_id,
                    kind=CredentialKind.OAUTH_CLIENT,
                    client_id=client_id,
                    secret_hash=secret_hash,
                    description=note,
                    created_at=utcnow(),
                )
            )
            traces.record(
                conn,
                "machine.client.create",
                mailbox=address,
                actor=actor,
                detail=f"client_id={client_id}",
            )
        return client_id, client_secret

    def revoke(self, reference: int | str, *, actor: str = "cli") -> MachineCredential:
        """Revoke a credential given by id, client_id or certificate fingerprint.

        Revoking twice is harmless (the first revocation date is kept). Tokens already issued
        to a revoked client stop working at once (``validate_token`` checks the credential).
        """
        with self.db.write() as conn:
            row = self._find(conn, reference)
            if row is None:
                raise NotFound(f"no machine credential {reference}")
            if row.revoked_at is None:
                conn.execute(
                    update(machine_credentials)
                    .where(machine_credentials.c.id == row.id)
                    .values(revoked_at=utcnow())
                )
                traces.record(
                    conn,
                    "machine.credential.revoke",
                    mailbox=row.address,
                    actor=actor,
                    detail=f"{row.kind} {row.client_id or row.fingerprint_sha256}",
                )
                row = self._find(conn, row.id)
                assert row is not None
        return MachineCredential.from_row(row)

    @staticmethod
    def _find(conn: Connection, reference: int | str) -> Row[Any] | None:
        if isinstance(reference, int) or reference.strip().isdigit():
            cond = machine_credentials.c.id == int(reference)
        elif (fingerprint := _normalise_fingerprint(reference)) is not None:
            cond = machine_credentials.c.fingerprint_sha256 == fingerprint
        else:
            cond = machine_credentials.c.client_id == reference.strip()
        return conn.execute(_SELECT.where(cond)).first()

    def get(self, reference: int | str) -> MachineCredential:
        with self.db.read() as conn:
            row = self._find(conn, reference)
        if row is None:
            raise NotFound(f"no machine credential {reference}")
        return MachineCredential.from_row(row)

    def list(self, app_address: str) -> builtins.list[MachineCredential]:
        """Every credential of a mailbox, revoked ones included, oldest first."""
        with self.db.read() as conn:
            box = self.mailboxes.get_in(conn, app_address)
            rows = conn.execute(
                _SELECT.where(machine_credentials.c.mailbox_id == box.id).order_by(
                    machine_credentials.c.id
                )
            )
            return [MachineCredential.from_row(r) for r in rows]

    # -- tokens -----------------------------------------------------------------------

    def issue_token(
        self,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        peer: str | None = None,
    ) -> IssuedToken:
        """Client credentials grant (RFC 6749 §4.4.2): a short-lived access token.

        The secret check costs the same whether the client exists or not. Raises
        AuthenticationFailed (wrong client or secret, revoked, mailbox not active; the
        reason is never told) or InvalidScope.
        """
        client_id = client_id.strip()
        with self.db.read() as conn:
            row = (
                conn.execute(
                    _SELECT.where(
                        machine_credentials.c.client_id == client_id,
                        machine_credentials.c.kind == CredentialKind.OAUTH_CLIENT,
                    )
                ).first()
                if 0 < len(client_id) <= 100
                else None
            )
        secret_ok = verify_password(row.secret_hash if row is not None else None, client_secret)
        if row is None or not secret_ok or not _in_force(row):
            if row is None:
                reason = "unknown client_id"
            elif not secret_ok:
                reason = "wrong secret"
            else:
                reason = "credential revoked or mailbox not active"
            self._trace_token(
                "refused",
                mailbox=row.address if row is not None else None,
                # An unknown client_id may be a secret pasted in the wrong field: hash it.
                actor=client_id if row is not None else f"unknown:{token_hash(client_id)}",
                peer=peer,
                detail=reason,
            )
            raise AuthenticationFailed("invalid client credentials")
        granted = DEFAULT_SCOPE
        if scope is not None and scope.strip():
            requested = set(scope.split())
            if not requested <= {DEFAULT_SCOPE}:
                self._trace_token(
                    "refused", mailbox=row.address, actor=client_id, peer=peer, detail="scope"
                )
                raise InvalidScope("requested scope not granted to machine clients")
        now = int(self.signer.now())
        jti = secrets.token_urlsafe(16)
        address = str(row.address)
        token = self.signer.sign(
            {
                "iss": self.issuer,
                "sub": address,
                "aud": self.audience,
                "client_id": client_id,
                "iat": now,
                "nbf": now,
                "exp": now + self.token_lifetime,
                "jti": jti,
                "scope": granted,
                "mailboxes": [address],
            }
        )
        self._trace_token(
            "ok",
            mailbox=address,
            actor=client_id,
            peer=peer,
            detail=f"jti={jti} token={token_hash(token)} expires_in={self.token_lifetime}",
        )
        return IssuedToken(
            access_token=token, expires_in=self.token_lifetime, scope=granted, jti=jti
        )

    def _trace_token(
        self, outcome: str, *, mailbox: str | None, actor: str, peer: str | None, detail: str
    ) -> None:
        with self.db.write() as conn:
            traces.record(
                conn,
                "oauth.token",
                outcome,
                mailbox=mailbox,
                actor=actor,
                peer=peer,
                detail=detail,
            )

    def validate_token(self, token: str) -> Principal:
        """The APP mailbox owner behind one of our access tokens, else InvalidToken.

        Checks signature, ``iss``, ``aud``, ``exp``; then that the client is not revoked and
        its mailbox (the ``sub``) is still the client's and active.
        """
        claims = self.signer.verify(token, issuer=self.issuer, audience=self.audience)
        client_id, subject = claims.get("client_id"), claims.get("sub")
        if not isinstance(client_id, str) or not isinstance(subject, str):
            raise InvalidToken("missing client_id or sub claim")
        with self.db.read() as conn:
            row = conn.execute(
                _SELECT.where(
                    machine_credentials.c.client_id == client_id,
                    machine_credentials.c.kind == CredentialKind.OAUTH_CLIENT,
                )
            ).first()
        if row is None or not _in_force(row) or row.address != subject:
            raise InvalidToken("client revoked or mailbox not active")
        return _principal(row)
