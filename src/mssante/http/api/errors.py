"""French details for the domain errors of the message routes.

The status and the slug come from the one table of `problems.DOMAIN_ERRORS`; this module only
writes the ``detail`` a user of the DUI can act on (which recipient, which limit…). The
English message of a domain error is kept out of answers except the short rule text of a
`RuleViolation` (a code, a field name), which the integrator needs.
"""

from __future__ import annotations

from mssante.domain import errors
from mssante.http.api.problems import ApiProblem, from_domain
from mssante.services.api_send import (
    IdempotencyConflict,
    LegalRecipientsMissing,
    PatientMessageTooLarge,
    RecipientRefused,
    SizeLimitExceeded,
)
from mssante.services.api_views import ReceiptAlreadySent

_RECIPIENT = {
    errors.UnknownMailbox: "n'existe pas chez cet opérateur",
    errors.NotInTrustSpace: "n'appartient pas à l'espace de confiance MSSanté (liste blanche "
    "de l'ANS)",
    errors.MailboxSuspended: "est suspendue",
    errors.MailboxClosed: "est fermée",
    errors.InvalidAddress: "n'est pas une adresse valide",
}


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".replace(".", ",")


def api_error(exc: errors.DomainError) -> ApiProblem:
    """The problem document for a domain error raised by a message use case."""
    if isinstance(exc, RecipientRefused):
        reason = next(
            (text for cls, text in _RECIPIENT.items() if isinstance(exc.cause, cls)),
            "est refusée",
        )
        problem = from_domain(exc.cause, f"Le destinataire {exc.address} {reason}.")
        problem.extra["recipient"] = exc.address
        return problem
    if isinstance(exc, PatientMessageTooLarge):
        return ApiProblem(
            413,
            "message-too-large",
            "Un message destiné à un patient (adresse @patient.mssante.fr, messagerie de Mon "
            f"espace santé) ne peut pas dépasser {_mib(exc.limit)} Mo, pièces jointes comprises "
            f"(R29) ; ce message fait {_mib(exc.size)} Mo. Réduisez ou retirez des pièces "
            "jointes ; rien n'a été envoyé.",
            size=exc.size,
            limit=exc.limit,
        )
    if isinstance(exc, SizeLimitExceeded):
        return ApiProblem(
            413,
            "message-too-large",
            f"Le message fait {_mib(exc.size)} Mo ; la limite de cette BAL est de "
            f"{_mib(exc.limit)} Mo. Rien n'a été envoyé.",
            size=exc.size,
            limit=exc.limit,
        )
    if isinstance(exc, IdempotencyConflict):
        return from_domain(
            exc,
            "Cette clé d'idempotence a déjà servi pour une autre requête de cette BAL ; "
            "utilisez une nouvelle clé pour un nouveau message.",
        )
    if isinstance(exc, LegalRecipientsMissing):
        return from_domain(exc, " ".join(exc.notices) or "Destinataire obligatoire manquant.")
    if isinstance(exc, ReceiptAlreadySent):
        return from_domain(exc, "L'accusé de lecture de ce message a déjà été envoyé.")
    if isinstance(exc, errors.NotAMember):
        return from_domain(exc, "Ce jeton ne permet pas d'envoyer au nom de cette BAL.")
    if isinstance(exc, errors.RuleViolation | errors.InvalidIdentifier | errors.InvalidAddress):
        return from_domain(exc, f"Règle non respectée : {exc.message[:300]}")
    return from_domain(exc)
