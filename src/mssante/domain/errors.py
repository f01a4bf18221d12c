"""Domain errors.

Every rule of the domain raises one of these. Each adapter (SMTP, CLI, later IMAP and HTTP)
keeps one table that maps them to its own replies; the domain never knows about wire
formats. Messages are in English for logs; adapters pick the user-facing text.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every rule violation the domain can report."""

    code = "domain-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidIdentifier(DomainError):
    """An identifier (RPPS, FINESS, SIRET, INS…) is malformed or fails its check key."""

    code = "invalid-identifier"


class InvalidAddress(DomainError):
    """An email address or domain is syntactically invalid."""

    code = "invalid-address"


class NotInTrustSpace(DomainError):
    """The domain is neither local nor listed in the ANS white list (R4)."""

    code = "not-in-trust-space"


class UnknownMailbox(DomainError):
    """No local mailbox has this address."""

    code = "unknown-mailbox"


class MailboxSuspended(DomainError):
    """The mailbox exists but is suspended: temporary refusal."""

    code = "mailbox-suspended"


class MailboxClosed(DomainError):
    """The mailbox is closed: it keeps its traces but refuses mail (5.2.1)."""

    code = "mailbox-closed"


class NotAMember(DomainError):
    """The authenticated principal may not act on this mailbox."""

    code = "not-a-member"


class ImmutableField(DomainError):
    """Address and type of a mailbox never change (R46)."""

    code = "immutable-field"


class RuleViolation(DomainError):
    """A mailbox or structure rule of SPEC §3 (R46) is not met."""

    code = "rule-violation"


class AlreadyExists(DomainError):
    """An entity with the same unique key already exists."""

    code = "already-exists"


class NotFound(DomainError):
    """A referenced entity does not exist."""

    code = "not-found"


class InvalidLifecycleTransition(DomainError):
    """The mailbox cannot go from its current status to the requested one."""

    code = "invalid-transition"


class PeerNotAuthorised(DomainError):
    """An inbound operator's certificate does not match the white list (R5)."""

    code = "peer-not-authorised"


class MessageTooLarge(DomainError):
    """The message exceeds the configured size (R28)."""

    code = "message-too-large"


class TrustListRejected(DomainError):
    """A white list failed to parse, failed its checksum, or is empty (R1–R3)."""

    code = "trust-list-rejected"


class AuthenticationFailed(DomainError):
    """Credentials are wrong; the message never says which part."""

    code = "authentication-failed"


class RelayDenied(DomainError):
    """Inbound from another operator to a domain that is not hosted here."""

    code = "relay-denied"
