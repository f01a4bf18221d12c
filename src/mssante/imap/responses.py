"""IMAP replies: the capability list, and the one table mapping domain errors to responses.

Response codes: RFC 3501 §7.1, RFC 5530 (IMAP response codes), RFC 7162 (CONDSTORE),
RFC 4315 (UIDPLUS), RFC 7889 (APPENDLIMIT / TOOBIG). Human text in French, then English.
"""

from __future__ import annotations

from mssante.domain import errors

CAPABILITIES_BEFORE_TLS = ("IMAP4rev1", "IMAP4rev2", "STARTTLS", "LOGINDISABLED", "ID", "ENABLE")

CAPABILITIES_COMMON = (
    "IMAP4rev1",
    "IMAP4rev2",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "SEARCHRES",
    "LITERAL+",
    "SASL-IR",
    "QUOTA",
    "QUOTA=RES-STORAGE",
)

DOMAIN_ERROR_RESPONSES: dict[type[errors.DomainError], tuple[str, str]] = {
    errors.NotFound: ("NONEXISTENT", "Dossier inexistant / No such mailbox"),
    errors.UnknownMailbox: ("NONEXISTENT", "Boite inexistante / No such mailbox"),
    errors.NotAMember: ("NOPERM", "Acces refuse / Access denied"),
    errors.AlreadyExists: ("ALREADYEXISTS", "Existe deja / Already exists"),
    errors.RuleViolation: ("CANNOT", "Operation impossible / Cannot do that"),
    errors.ImmutableField: ("CANNOT", "Operation impossible / Cannot do that"),
    errors.AuthenticationFailed: (
        "AUTHENTICATIONFAILED",
        "Identifiants invalides / Authentication failed",
    ),
    errors.MessageTooLarge: ("TOOBIG", "Message trop volumineux / Message too big"),
    errors.MailboxClosed: ("NOPERM", "Boite fermee / Mailbox closed"),
    errors.MailboxSuspended: ("UNAVAILABLE", "Boite suspendue / Mailbox suspended"),
}


def no_for(error: errors.DomainError) -> tuple[str, str]:
    """(response code, text) for a domain error; the caller writes `tag NO [code] text`."""
    for cls in type(error).__mro__:
        found = DOMAIN_ERROR_RESPONSES.get(cls)
        if found is not None:
            return found
    return ("CANNOT", "Operation impossible / Cannot do that")
