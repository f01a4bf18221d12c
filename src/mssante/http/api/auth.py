"""Who calls the integration API, and which BALs that caller may use (RFC 6750 bearer).

Two kinds of tokens are accepted:

* our own client-credentials tokens (``POST /oauth/token``, R18): scoped to the one APP BAL
  of the OAuth client;
* professionals' tokens (Pro Santé Connect, or the demo provider in the demo): scoped to the
  PER BALs of the token's idNat_PS and the ORG/CAB BALs it is a member of (R15).

A route asks for :func:`caller` as a FastAPI dependency, then checks the BAL of its path
with :meth:`ApiCaller.readable` (a BAL out of scope is answered 404: its existence is not
revealed) or :meth:`ApiCaller.sendable` (403 when sending as a BAL out of scope).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from mssante.domain.errors import NotFound
from mssante.domain.mailboxes import MailboxStatus, normalise_address
from mssante.http.api.problems import ApiProblem
from mssante.identity import InvalidToken, TokenValidator, token_hash
from mssante.services.mailboxes import Mailbox, Principal

log = logging.getLogger("mssante.http.api")

REALM = "mssante"


@dataclass(frozen=True)
class ApiCaller:
    """An authenticated caller: the principal and the BALs its token covers."""

    principal: Principal
    kind: str  # application | professional
    mailboxes: frozenset[str]
    token_digest: str  # token_hash() of the bearer: for logs, never the token

    def readable(self, address: str) -> str:
        """The normalised address if the token covers it, else a 404 problem."""
        normalised = _normalised(address)
        if normalised not in self.mailboxes:
            raise ApiProblem(404, "not-found", "Aucune BAL accessible à cette adresse.")
        return normalised

    def sendable(self, address: str) -> str:
        """The normalised address if the token may send as it, else a 403 problem."""
        normalised = _normalised(address)
        if normalised not in self.mailboxes:
            detail = "Ce jeton ne permet pas d'envoyer au nom de cette BAL."
            raise ApiProblem(403, "forbidden", detail)
        return normalised


def _normalised(address: str) -> str:
    try:
        return normalise_address(address)
    except Exception:  # noqa: BLE001 - any malformed address is simply not in scope
        raise ApiProblem(404, "not-found", "Aucune BAL accessible à cette adresse.") from None


def _unauthenticated(detail: str, error: str | None = None) -> ApiProblem:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return ApiProblem(401, "unauthenticated", detail, headers={"WWW-Authenticate": challenge})


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate(
    services: Any, token_validator: TokenValidator | None, request: Request
) -> ApiCaller:
    """The caller behind the request's bearer token, or a 401/403/503 problem."""
    token = bearer_token(request)
    if token is None:
        raise _unauthenticated("Un jeton d'accès (Authorization: Bearer) est requis.")
    digest = token_hash(token)
    credentials = services.machine_credentials
    mailboxes = services.mailboxes
    if token_validator is None or credentials.signer.is_ours(token):
        try:
            principal = await asyncio.to_thread(credentials.validate_token, token)
            box = await asyncio.to_thread(mailboxes.get, principal.login)
        except (InvalidToken, NotFound) as exc:
            reason = exc.reason if isinstance(exc, InvalidToken) else "mailbox gone"
            log.info("API bearer token %s refused: %s", digest, reason)
            raise _unauthenticated(
                "Le jeton d'accès est invalide, expiré ou révoqué.", "invalid_token"
            ) from None
        return ApiCaller(principal, "application", frozenset({box.address}), digest)
    try:
        identity = await token_validator.validate_async(token)
    except InvalidToken as exc:
        log.info("API PSC token %s refused: %s", digest, exc.reason)
        if exc.temporary:
            raise ApiProblem(
                503,
                "unavailable",
                "Le service d'identité Pro Santé Connect ne répond pas ; réessayez plus tard.",
                headers={"Retry-After": "30"},
            ) from None
        if exc.error == "insufficient_scope":  # RFC 6750 §3.1
            raise ApiProblem(
                403,
                "forbidden",
                "Le jeton d'accès n'a pas la portée (scope) requise.",
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'},
            ) from None
        known = ("invalid_token", "insufficient_user_authentication")  # RFC 9470 §3
        error = exc.error if exc.error in known else "invalid_token"
        raise _unauthenticated("Le jeton d'accès est invalide, expiré ou révoqué.", error) from None
    principal = await asyncio.to_thread(mailboxes.principal_for_id_nat_ps, identity.id_nat_ps)
    boxes: list[Mailbox] = await asyncio.to_thread(
        mailboxes.mailboxes_for_id_nat_ps, identity.id_nat_ps
    )
    addresses = frozenset(b.address for b in boxes if b.status is not MailboxStatus.CLOSED)
    if principal is None or not addresses:
        log.info("API PSC token %s: no mailbox here for %s", digest, identity.id_nat_ps)
        raise ApiProblem(
            403, "forbidden", "Aucune BAL de cet opérateur n'est rattachée à ce professionnel."
        )
    return ApiCaller(principal, "professional", addresses, digest)


def caller_dependency(services: Any, token_validator: TokenValidator | None) -> Any:
    """A FastAPI dependency (``Depends(...)``) that yields the :class:`ApiCaller`."""

    async def caller(request: Request) -> ApiCaller:
        return await authenticate(services, token_validator, request)

    return caller
