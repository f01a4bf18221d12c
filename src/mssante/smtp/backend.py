"""What the SMTP adapter needs from the services: the checks of the four stages
(connection, sender, recipient, content, as in maddy) and the durable acceptance.

`runtime.py` provides the implementation; the SMTP code only sees this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mssante.services.mailboxes import Principal
from mssante.services.ports import AcceptedRecipient, IncomingMessage, Role

__all__ = ["AcceptedRecipient", "IncomingMessage", "Role", "SmtpBackend", "TokenLogin"]


class LoginOutcomeLike(Protocol):
    @property
    def principal(self) -> Principal | None: ...
    @property
    def locked(self) -> bool: ...


@dataclass(frozen=True)
class TokenLogin:
    """The outcome of a bearer-token login (XOAUTH2, OAUTHBEARER)."""

    principal: Principal | None
    error: dict[str, str] | None = None  # RFC 7628 §3.2.2 error challenge, before base64
    expires_in: float | None = None  # seconds until the token expires (R16)
    temporary: bool = False  # the provider could not be reached: 454, not 535


class SmtpBackend(Protocol):
    hostname: str

    async def authenticate_password(
        self, login: str, password: str, peer: str, mechanism: str = "PLAIN/LOGIN"
    ) -> LoginOutcomeLike:
        """Throttled password (+TOTP) check; `outcome.locked` when a lock refused it."""

    async def authenticate(self, login: str, password: str, peer: str) -> Principal | None:
        """Password check (PLAIN, LOGIN); traces the attempt, never the secret."""

    @property
    def token_auth_available(self) -> bool:
        """Whether XOAUTH2 and OAUTHBEARER are offered (an identity provider is set)."""

    async def authenticate_token(self, token: str, peer: str, mechanism: str) -> TokenLogin:
        """Validate a professional's bearer token (R14–R17); never log or store it."""

    async def authenticate_certificate(self, cert_der: bytes, peer: str) -> Principal | None:
        """SASL EXTERNAL: the APP mailbox bound to this client certificate (R18)."""

    async def check_sender(
        self, role: Role, sender: str, principal: Principal | None, peer_dn: str | None, peer: str
    ) -> None:
        """Raise a DomainError when this sender may not be used on this connection."""

    async def check_recipient(
        self, role: Role, recipient: str, sender: str, peer: str
    ) -> AcceptedRecipient:
        """Classify a recipient (local or relayed) or raise the DomainError that refuses it."""

    async def accept(self, message: IncomingMessage) -> str:
        """Store durably (fsync) and queue; return the queue id. Raises on failure."""

    async def refused(
        self, role: Role, stage: str, reason: str, peer: str, address: str | None
    ) -> None:
        """Trace a refusal (R63)."""
