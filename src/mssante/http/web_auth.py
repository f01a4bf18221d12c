"""Web login through Pro Santé Connect and the server-side session cookie (R61, SC.SSI/IE.58).

Routes (an ``APIRouter`` that :func:`mssante.http.app.create_app` includes):

* ``GET /auth/login`` — 302 to the PSC authorization URL (:meth:`RelyingParty.begin`: code
  flow, PKCE S256, ``scope=openid scope_all``, ``acr_values=eidas1``). The ``LoginState`` is
  kept server-side; the browser only holds its random key in the ``mssante_login`` cookie
  (HttpOnly, SameSite=Lax, ``Path=/auth``, 10 minutes), which binds the callback to the
  browser that started the login.
* ``GET /auth/callback`` — :meth:`RelyingParty.finish` (state, code exchange, ID token
  signature, ``iss``, ``aud``, ``nonce``, ``acr == eidas1``), the idNat_PS from
  ``SubjectNameID`` mapped to a principal of this operator, then a session: the
  ``mssante_session`` cookie (HttpOnly, SameSite=Lax, ``Secure`` over https) and a 303 to
  ``/``. The PSC access and ID tokens are dropped there (never stored, SC.MSS/CONF.28).
* ``GET /api/v1/session`` — the identity and mailboxes of a valid session (each call is
  activity); otherwise 401 problem+json with a French ``detail`` (« Session expirée après
  2 heures d'inactivité… »).
* ``POST /auth/logout`` — ends the session, clears the cookie, 303 to ``/``.

The redirect URI is ``<base>/auth/callback`` where ``<base>`` is ``[http] public_url`` or,
when it is empty, the scheme and ``Host`` of the request. Cookies, codes and tokens never
reach a log line or a trace (only 16-hex-digit SHA-256 prefixes do).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from mssante.domain.errors import AuthenticationFailed
from mssante.domain.mailboxes import MailboxStatus
from mssante.http.app import BASE_HEADERS, NO_STORE, problem
from mssante.identity import LoginFailed, OidcSettings, RelyingParty, TokenValidator
from mssante.services.mailboxes import MailboxService
from mssante.services.web_sessions import SessionExpired, WebSessionService

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "WebAuthServices",
    "french_duration",
    "web_auth_router",
]

log = logging.getLogger("mssante.http.web_auth")

SESSION_COOKIE = "mssante_session"
LOGIN_COOKIE = "mssante_login"
CALLBACK_PATH = "/auth/callback"
MECHANISM = "psc"

_NOT_CONFIGURED = "La connexion par Pro Santé Connect n'est pas configurée sur cet opérateur."
_LOGIN_FAILED = {
    "denied": (401, "La connexion a été refusée ou annulée sur Pro Santé Connect."),
    "insufficient_user_authentication": (
        401,
        "Le niveau d'authentification Pro Santé Connect est insuffisant : une connexion par "
        "carte CPS ou e-CPS (eIDAS substantiel) est requise.",
    ),
    "expired": (401, "La connexion a pris trop de temps ; recommencez."),
    "unavailable": (503, "Pro Santé Connect ne répond pas ; réessayez dans quelques minutes."),
    "temporarily_unavailable": (
        503,
        "Pro Santé Connect ne répond pas ; réessayez dans quelques minutes.",
    ),
}
_LOGIN_FAILED_DEFAULT = (
    401,
    "La connexion Pro Santé Connect n'a pas pu être vérifiée ; recommencez.",
)


@runtime_checkable
class WebAuthServices(Protocol):
    """What the web login uses of :class:`mssante.runtime.Services`."""

    @property
    def mailboxes(self) -> MailboxService: ...

    @property
    def web_sessions(self) -> WebSessionService: ...

    @property
    def oidc_settings(self) -> OidcSettings | None: ...

    @property
    def public_url(self) -> str | None: ...

    @property
    def token_validator(self) -> TokenValidator | None: ...


def french_duration(seconds: float) -> str:
    """« 2 heures », « 30 minutes », « 1 seconde »: the unit that divides the duration."""
    value = int(seconds)
    for size, unit in ((3600, "heure"), (60, "minute"), (1, "seconde")):
        if value >= size and value % size == 0:
            count = value // size
            return f"{count} {unit}{'s' if count > 1 else ''}"
    return "1 seconde" if value <= 1 else f"{value} secondes"


def _peer(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


class _WebAuth:
    def __init__(self, services: WebAuthServices) -> None:
        self.services = services
        self.sessions = services.web_sessions

    # -- helpers ------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        if self.services.public_url:
            return self.services.public_url.rstrip("/")
        return f"{request.url.scheme}://{request.url.netloc}"

    def secure(self, request: Request) -> bool:
        return self.base_url(request).startswith("https://")

    def relying_party(self, request: Request, settings: OidcSettings) -> RelyingParty:
        validator = self.services.token_validator
        # One JWKS cache per provider: the token validator's (closed with the services).
        jwks = validator.jwks if validator is not None else None
        return RelyingParty(settings, self.base_url(request) + CALLBACK_PATH, jwks=jwks)

    def set_cookie(
        self, response: Response, request: Request, name: str, value: str, **options: Any
    ) -> None:
        response.set_cookie(
            name,
            value,
            httponly=True,
            secure=self.secure(request),
            samesite="lax",
            **options,
        )

    def clear_cookie(self, response: Response, request: Request, name: str, path: str) -> None:
        response.delete_cookie(
            name, path=path, httponly=True, secure=self.secure(request), samesite="lax"
        )

    def session_problem(self, request: Request, detail: str) -> Response:
        response = problem(401, detail)
        if SESSION_COOKIE in request.cookies:
            self.clear_cookie(response, request, SESSION_COOKIE, "/")
        return response

    async def refused(
        self, request: Request, reason: str, status: int, detail: str, actor: str | None = None
    ) -> Response:
        await asyncio.to_thread(
            self.sessions.login_refused,
            source=_peer(request),
            reason=reason,
            mechanism=MECHANISM,
            actor=actor,
        )
        response = problem(status, detail)
        if LOGIN_COOKIE in request.cookies:
            self.clear_cookie(response, request, LOGIN_COOKIE, "/auth")
        return response

    # -- routes -------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        settings = self.services.oidc_settings
        if settings is None:
            return problem(503, _NOT_CONFIGURED)
        url, state = self.relying_party(request, settings).begin()
        key = await asyncio.to_thread(self.sessions.save_login_state, state)
        response = RedirectResponse(url, 302, headers={**BASE_HEADERS, **NO_STORE})
        max_age = int(self.sessions.login_state_lifetime)
        self.set_cookie(response, request, LOGIN_COOKIE, key, max_age=max_age, path="/auth")
        return response

    async def callback(self, request: Request) -> Response:
        settings = self.services.oidc_settings
        if settings is None:
            return problem(503, _NOT_CONFIGURED)
        key = request.cookies.get(LOGIN_COOKIE)
        state = await asyncio.to_thread(self.sessions.pop_login_state, key) if key else None
        if state is None:
            return await self.refused(
                request,
                "no-login-state",
                400,
                "Cette tentative de connexion a expiré ou n'a pas commencé dans ce navigateur ; "
                "recommencez la connexion.",
            )
        try:
            result = await self.relying_party(request, settings).finish(
                "?" + request.url.query, state
            )
        except LoginFailed as exc:
            status, detail = _LOGIN_FAILED.get(exc.error, _LOGIN_FAILED_DEFAULT)
            return await self.refused(request, f"{exc.error}: {exc.reason}", status, detail)
        principal = await asyncio.to_thread(
            self.services.mailboxes.principal_for_id_nat_ps, result.id_nat_ps
        )
        if principal is None:
            return await self.refused(
                request,
                "no-mailbox",
                403,
                "Aucune BAL de cet opérateur n'est rattachée à votre identité Pro Santé Connect.",
                actor=result.id_nat_ps,
            )
        old = request.cookies.get(SESSION_COOKIE)
        if old:  # a new login never keeps a session the browser had (no fixation)
            await asyncio.to_thread(
                self.sessions.revoke, old, source=_peer(request), reason="new-login"
            )
        token = await asyncio.to_thread(
            self.sessions.create, principal, source=_peer(request), mechanism=MECHANISM
        )
        response = RedirectResponse("/", 303, headers={**BASE_HEADERS, **NO_STORE})
        self.set_cookie(response, request, SESSION_COOKIE, token, path="/")
        self.clear_cookie(response, request, LOGIN_COOKIE, "/auth")
        return response

    async def session(self, request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return self.session_problem(
                request, "Aucune session ouverte : connectez-vous avec Pro Santé Connect."
            )
        try:
            principal = await asyncio.to_thread(self.sessions.touch, token)
        except SessionExpired as exc:
            if exc.reason == "idle":
                idle = french_duration(self.sessions.idle_timeout)
                detail = (
                    f"Session expirée après {idle} d'inactivité : "
                    "reconnectez-vous avec Pro Santé Connect."
                )
            elif exc.reason == "lifetime":
                most = french_duration(self.sessions.absolute_timeout)
                detail = (
                    f"Session expirée (durée maximale de {most} atteinte) : "
                    "reconnectez-vous avec Pro Santé Connect."
                )
            else:
                detail = "Session fermée : ce compte n'est plus actif."
            return self.session_problem(request, detail)
        except AuthenticationFailed:
            return self.session_problem(
                request, "Session inconnue ou terminée : reconnectez-vous avec Pro Santé Connect."
            )
        addresses: list[str] = []
        if principal.id_nat_ps:
            boxes = await asyncio.to_thread(
                self.services.mailboxes.mailboxes_for_id_nat_ps, principal.id_nat_ps
            )
            addresses = [b.address for b in boxes if b.status is not MailboxStatus.CLOSED]
        body = {
            "login": principal.login,
            "kind": principal.kind,
            "id_nat_ps": principal.id_nat_ps,
            "mailboxes": addresses,
            "idle_timeout": int(self.sessions.idle_timeout),
        }
        return JSONResponse(body, headers={**BASE_HEADERS, **NO_STORE})

    async def logout(self, request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await asyncio.to_thread(self.sessions.revoke, token, source=_peer(request))
        response = RedirectResponse("/", 303, headers={**BASE_HEADERS, **NO_STORE})
        self.clear_cookie(response, request, SESSION_COOKIE, "/")
        return response


def web_auth_router(services: object) -> APIRouter:
    """The web login routes; none when ``services`` lacks what they need (test doubles)."""
    router = APIRouter()
    if not isinstance(services, WebAuthServices):
        return router
    web = _WebAuth(services)
    router.add_api_route(
        "/auth/login",
        web.login,
        methods=["GET"],
        tags=["web"],
        summary="Start a Pro Santé Connect login (302 to PSC)",
        response_class=Response,
    )
    router.add_api_route(
        CALLBACK_PATH,
        web.callback,
        methods=["GET"],
        tags=["web"],
        summary="Pro Santé Connect callback: opens the session",
        response_class=Response,
    )
    router.add_api_route(
        "/api/v1/session",
        web.session,
        methods=["GET"],
        tags=["web"],
        summary="Who the session cookie speaks for (2-hour inactivity rule)",
        response_class=Response,
    )
    router.add_api_route(
        "/auth/logout",
        web.logout,
        methods=["POST"],
        tags=["web"],
        summary="End the session",
        response_class=Response,
    )
    return router
