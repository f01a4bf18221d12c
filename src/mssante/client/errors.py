"""Errors of the SDK: one class per problem ``type`` slug of the API (RFC 9457).

Every error answer of the API is an ``application/problem+json`` document whose ``type`` is
``https://mssante.fr/problems/<slug>`` (docs/api.md, "Errors"). :func:`error_from_response`
builds the matching :class:`ApiError` subclass; a catch-all ``except ApiError`` sees them all,
with the French ``detail`` meant for the user in ``str(error)``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = [
    "PROBLEM_BASE",
    "ApiError",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidRequest",
    "MailboxSuspended",
    "MessageTooLarge",
    "NotFound",
    "NotInTrustSpace",
    "RateLimited",
    "ServerError",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "error_from_response",
]

PROBLEM_BASE = "https://mssante.fr/problems/"


class ClientError(Exception):
    """Anything the SDK raises."""


class ConnectionFailed(ClientError):
    """The operator could not be reached (after the retries the call allows)."""


class ApiError(ClientError):
    """The API answered with an error: the problem document (RFC 9457) it carried."""

    slug = ""

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",  # the RFC 9457 member name
        title: str = "",
        detail: str = "",
        problem: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.problem: dict[str, Any] = problem or {}
        super().__init__(detail or title or f"HTTP {status}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, type={self.type!r})"


class InvalidRequest(ApiError):
    slug = "invalid-request"


class Unauthenticated(ApiError):
    slug = "unauthenticated"


class Forbidden(ApiError):
    slug = "forbidden"


class NotFound(ApiError):
    slug = "not-found"


class NotInTrustSpace(InvalidRequest):
    slug = "not-in-trust-space"


class Conflict(ApiError):
    """A 409 answer, or a request that conflicts with an earlier one."""

    slug = ""


class MailboxSuspended(Conflict):
    slug = "mailbox-suspended"


class IdempotencyConflict(Conflict):
    """The Idempotency-Key was already used for a different request."""

    slug = "idempotency-conflict"


class MessageTooLarge(ApiError):
    slug = "message-too-large"


class UnsupportedMediaType(ApiError):
    slug = "unsupported-media-type"


class RateLimited(ApiError):
    slug = "rate-limited"


class Unavailable(ApiError):
    slug = "unavailable"


class ServerError(ApiError):
    slug = "internal"


_BY_SLUG: dict[str, type[ApiError]] = {
    cls.slug: cls
    for cls in (
        InvalidRequest,
        Unauthenticated,
        Forbidden,
        NotFound,
        NotInTrustSpace,
        MailboxSuspended,
        IdempotencyConflict,
        MessageTooLarge,
        UnsupportedMediaType,
        RateLimited,
        Unavailable,
        ServerError,
    )
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: MessageTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}

# French texts for answers that carry no problem document (a proxy, the OAuth endpoint).
_FALLBACK_DETAIL = {
    400: "Requête invalide.",
    401: "Authentification refusée : jeton ou identifiants client invalides.",
    403: "Accès refusé.",
    404: "Ressource introuvable.",
    413: "Requête trop volumineuse.",
    429: "Trop de requêtes ; réessayez plus tard.",
    503: "Service momentanément indisponible ; réessayez plus tard.",
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The :class:`ApiError` for an error answer (its body must have been read)."""
    status = response.status_code
    problem: dict[str, Any] = {}
    try:
        parsed = json.loads(response.content) if response.content else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        problem = parsed
    type_ = str(problem.get("type") or "about:blank")
    cls: type[ApiError] | None = None
    if type_.startswith(PROBLEM_BASE):
        cls = _BY_SLUG.get(type_[len(PROBLEM_BASE) :])
    if cls is None:
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    detail = problem.get("detail")
    if not isinstance(detail, str) or not detail:
        # RFC 6749 §5.2 errors of /oauth/token: {"error", "error_description"}
        oauth = problem.get("error_description") or problem.get("error")
        detail = _FALLBACK_DETAIL.get(status, f"Erreur HTTP {status}.")
        if oauth:
            detail = f"{detail} ({oauth})"
    title = problem.get("title")
    return cls(
        status,
        type=type_,
        title=title if isinstance(title, str) else "",
        detail=detail,
        problem=problem,
    )
