"""Interfaces and value types the services own; storage and adapters implement or use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from mssante.services.mailboxes import Principal


class BlobRefLike(Protocol):
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def key_id(self) -> str: ...


class BlobStore(Protocol):
    """Content-addressed, encrypted, durable storage of message bodies."""

    def put(self, data: bytes) -> BlobRefLike:
        """Store and fsync; return the reference (digest of the plaintext)."""

    def get(self, digest: str) -> bytes: ...


class Role(Enum):
    SUBMISSION = "submission"  # 587: authenticated professionals and software (R13)
    INBOUND = "inbound"  # 25: the other operators of the trust space (R5)


@dataclass(frozen=True)
class AcceptedRecipient:
    address: str
    local: bool
    notify: str | None = None  # RFC 3461 NOTIFY: "NEVER" or a comma list
    orcpt: str | None = None  # RFC 3461 ORCPT, "rfc822;addr"


@dataclass
class IncomingMessage:
    """A complete SMTP transaction, as the sender/recipient stages accepted it."""

    role: Role
    mail_from: str
    recipients: list[AcceptedRecipient]
    data: bytes
    peer: str
    helo: str
    envid: str | None = None
    ret: str | None = None
    body_type: str | None = None
    smtputf8: bool = False
    principal: Principal | None = None
    tls: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
