"""RFC 9457 problem documents of the integration API, and the one table that maps domain
errors to them.

Every error answer of ``/api/v1/…`` is ``application/problem+json`` with a stable ``type``
URI (``https://mssante.fr/problems/<slug>``), a French ``title`` and ``detail``, and never
a traceback, SQL text or token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mssante.domain import errors
from mssante.services.api_send import IdempotencyConflict
from mssante.services.api_views import ReceiptAlreadySent

PROBLEM_BASE = "https://mssante.fr/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# slug -> French title. The slugs are a public interface: never rename one.
TITLES: dict[str, str] = {
    "invalid-request": "Requête invalide",
    "unauthenticated": "Authentification requise",
    "forbidden": "Accès refusé",
    "not-found": "Ressource introuvable",
    "not-in-trust-space": "Destinataire hors de l'espace de confiance MSSanté",
    "mailbox-suspended": "BAL suspendue ou fermée",
    "message-too-large": "Message trop volumineux",
    "idempotency-conflict": "Clé d'idempotence déjà utilisée pour une autre requête",
    "unsupported-media-type": "Type de contenu non pris en charge",
    "rate-limited": "Trop de requêtes",
    "unavailable": "Service momentanément indisponible",
    "internal": "Erreur interne",
}


class ApiProblem(Exception):
    """Raised anywhere in a route: answered as one problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        assert slug in TITLES, slug
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, instance: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": TITLES[self.slug],
            "status": self.status,
            "detail": self.detail,
            **({"instance": instance} if instance else {}),
            **self.extra,
        }
        return JSONResponse(
            body,
            status_code=self.status,
            media_type=PROBLEM_MEDIA_TYPE,
            headers={
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                **self.headers,
            },
        )


# The one table: domain error -> (HTTP status, slug). Most specific classes first.
DOMAIN_ERRORS: tuple[tuple[type[errors.DomainError], int, str], ...] = (
    (IdempotencyConflict, 422, "idempotency-conflict"),
    (ReceiptAlreadySent, 409, "invalid-request"),
    (errors.NotInTrustSpace, 422, "not-in-trust-space"),
    (errors.TrustListRejected, 422, "invalid-request"),
    (errors.MailboxSuspended, 409, "mailbox-suspended"),
    (errors.MailboxClosed, 409, "mailbox-suspended"),
    (errors.NotAMember, 403, "forbidden"),
    (errors.RelayDenied, 403, "forbidden"),
    (errors.PeerNotAuthorised, 403, "forbidden"),
    (errors.AuthenticationFailed, 401, "unauthenticated"),
    (errors.MessageTooLarge, 413, "message-too-large"),
    (errors.UnknownMailbox, 422, "invalid-request"),
    (errors.InvalidAddress, 422, "invalid-request"),
    (errors.InvalidIdentifier, 422, "invalid-request"),
    (errors.ImmutableField, 422, "invalid-request"),
    (errors.RuleViolation, 422, "invalid-request"),
    (errors.InvalidLifecycleTransition, 409, "invalid-request"),
    (errors.AlreadyExists, 409, "invalid-request"),
    (errors.NotFound, 404, "not-found"),
)


def from_domain(exc: errors.DomainError, detail: str | None = None) -> ApiProblem:
    """The problem for a domain error; ``detail`` overrides the generic French text."""
    for cls, status, slug in DOMAIN_ERRORS:
        if isinstance(exc, cls):
            return ApiProblem(status, slug, detail or _FRENCH.get(slug, TITLES[slug] + "."))
    return ApiProblem(422, "invalid-request", detail or "La requête ne peut pas être traitée.")


_FRENCH = {
    "not-in-trust-space": "Le domaine du destinataire n'appartient pas à l'espace de confiance "
    "MSSanté (liste blanche de l'ANS).",
    "mailbox-suspended": "Cette BAL est suspendue ou fermée.",
    "forbidden": "Ce jeton ne permet pas d'agir au nom de cette BAL.",
    "unauthenticated": "Authentification refusée.",
    "message-too-large": "Le message dépasse la taille autorisée.",
    "not-found": "Ressource introuvable.",
}


async def problem_handler(request: Request, exc: Exception) -> Response:
    """FastAPI exception handler for :class:`ApiProblem`."""
    assert isinstance(exc, ApiProblem)
    return exc.response(instance=request.url.path)
