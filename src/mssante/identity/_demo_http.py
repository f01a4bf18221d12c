"""HTTP endpoints of the demo identity provider (see :mod:`mssante.identity.demo_provider`)."""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mssante.identity._demo_pages import SECURITY_HEADERS, error_page, login_page
from mssante.identity.relying_party import pkce_s256
from mssante.identity.settings import PSC_ACR, PSC_SCOPE

if TYPE_CHECKING:
    from mssante.identity.demo_provider import DemoProfessional, DemoProvider

log = logging.getLogger("mssante.identity.demo_provider")

CODE_LIFETIME = 60.0
MAX_FORM_BYTES = 65536
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_LOGIN_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                 "code_challenge", "code_challenge_method", "acr_values")  # fmt: skip
_CLAIMS = ["sub", "SubjectNameID", "preferred_username", "given_name", "family_name", "acr"]


@dataclass(frozen=True, slots=True)
class Grant:
    """What an authorization code stands for until it is exchanged (once, within 60 s)."""

    client_id: str
    redirect_uri: str
    professional: DemoProfessional
    nonce: str | None
    code_challenge: str
    scope: str
    expires_at: float


async def _form(request: Request) -> dict[str, str] | None:
    """An urlencoded body without repeated parameters (RFC 6749 §3.1), else None."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    params: dict[str, str] = {}
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if key in params:
            return None
        params[key] = value
    return params


def _oauth_error(error: str, status: int = 400, description: str = "") -> JSONResponse:
    body = {"error": error, **({"error_description": description} if description else {})}
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="demo"'
    return JSONResponse(body, status_code=status, headers=headers)


def _html(page: str, status: int = 200) -> Response:
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def _redirect(redirect_uri: str, query: Mapping[str, str]) -> Response:
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{sep}{urlencode(query)}", 302, NO_STORE)


class Endpoints:
    """The routes of one :class:`DemoProvider`; state lives in the provider."""

    def __init__(self, provider: DemoProvider) -> None:
        self.p = provider
        self.codes: dict[str, Grant] = {}

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/auth", self.authorize, methods=["GET", "POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
                Route("/certs", self.certs),
                Route("/token/introspect", self.introspect, methods=["POST"]),
                Route("/demo/token", self.demo_token),
            ]
        )

    async def demo_token(self, request: Request) -> Response:
        """DEMO ONLY: a fresh access token for `?id_nat_ps=…`, for curl and mail clients.

        A real provider issues tokens only after the professional's CPS/e-CPS login; this
        shortcut exists so that the demo can be tried from a terminal.
        """
        person = self.p.professional(request.query_params.get("id_nat_ps", ""))
        if person is None:
            return _oauth_error("invalid_request", 404, "unknown demo professional")
        client_id = next(iter(self.p.clients))
        token = self.p.issue_access_token(person, client_id, "openid scope_all")
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.p.access_token_lifetime,
                "warning": "demo provider: never in production",
            },
            headers={"Cache-Control": "no-store"},
        )

    async def discovery(self, request: Request) -> Response:
        issuer = self.p.require_issuer()
        document: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/auth",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/certs",
            "introspection_endpoint": f"{issuer}/token/introspect",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "userinfo_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "acr_values_supported": [PSC_ACR],
            "scopes_supported": PSC_SCOPE.split(),
            "claims_supported": _CLAIMS,
        }
        return JSONResponse(document)

    async def certs(self, request: Request) -> Response:
        self.p.jwks_requests += 1
        return JSONResponse(self.p.jwks())

    async def authorize(self, request: Request) -> Response:
        if request.method == "GET":
            params: dict[str, str] | None = dict(request.query_params)
        else:
            params = await _form(request)
        if params is None:
            return _html(error_page("Paramètres de formulaire invalides."), 400)
        client = self.p.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or redirect_uri not in client[1]:  # never redirect to an unknown URI
            return _html(error_page("Application ou adresse de retour inconnue."), 400)
        state = params.get("state")
        issuer = self.p.require_issuer()

        def back(**values: str) -> Response:  # RFC 6749 §4.1.2, RFC 9207 iss
            extra = {"state": state} if state is not None else {}
            return _redirect(redirect_uri, {**values, **extra, "iss": issuer})

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        scope = params.get("scope", "")
        if "openid" not in scope.split():
            return back(error="invalid_scope")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return back(error="invalid_request", error_description="PKCE S256 required")
        if request.method == "GET":
            hidden = {k: params[k] for k in _LOGIN_FIELDS if k in params}
            return _html(login_page(params["client_id"], hidden, self.p.professionals))
        if params.get("action") == "deny":
            return back(error="access_denied")
        person = self.p.professional(params.get("professional", ""))
        if person is None:
            return _html(error_page("Professionnel inconnu."), 400)
        now = time.time()
        self.codes = {k: g for k, g in self.codes.items() if g.expires_at > now}
        code = secrets.token_urlsafe(32)
        self.codes[code] = Grant(
            client_id=params["client_id"],
            redirect_uri=redirect_uri,
            professional=person,
            nonce=params.get("nonce"),
            code_challenge=challenge,
            scope=scope,
            expires_at=now + CODE_LIFETIME,
        )
        log.info("demo login of %s for client %s", person.id_nat_ps, params["client_id"])
        return back(code=code)

    def _client(self, request: Request, form: Mapping[str, str]) -> str | None:
        """client_secret_basic or client_secret_post: the authenticated client_id, or None."""
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
            except ValueError:
                return None
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.p.clients.get(client_id)
        if client is None or not hmac.compare_digest(client[0].encode(), secret.encode()):
            return None
        return client_id

    async def token(self, request: Request) -> Response:
        form = await _form(request)
        if form is None:
            return _oauth_error("invalid_request")
        client_id = self._client(request, form)
        if client_id is None:
            return _oauth_error("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        if (
            grant is None
            or grant.expires_at < time.time()
            or grant.client_id != client_id
            or grant.redirect_uri != form.get("redirect_uri")
            or not 43 <= len(verifier) <= 128
            or not hmac.compare_digest(pkce_s256(verifier), grant.code_challenge)
        ):
            return _oauth_error("invalid_grant")
        access_token = self.p.issue_access_token(grant.professional, client_id, grant.scope)
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.p.access_token_lifetime,
            "id_token": self.p.issue_id_token(
                grant.professional, client_id, grant.nonce, access_token
            ),
            "scope": grant.scope,
        }
        return JSONResponse(body, headers=NO_STORE)

    async def userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        claims = self.p.verify_access_token(header[7:]) if header[:7].lower() == "bearer " else None
        person = self.p.professional_by_subject(str(claims.get("sub"))) if claims else None
        if claims is None or person is None:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return Response(status_code=401, headers=challenge)
        info = self.p.userinfo_claims(person)
        if not self.p.userinfo_signed:
            return JSONResponse(info, headers=NO_STORE)
        signed = self.p.sign({**info, "iss": self.p.require_issuer(), "aud": claims.get("azp")})
        return Response(signed, media_type="application/jwt", headers=NO_STORE)

    async def introspect(self, request: Request) -> Response:
        form = await _form(request)
        if form is None:
            return _oauth_error("invalid_request")
        if self._client(request, form) is None:
            return _oauth_error("invalid_client", 401)
        claims = self.p.verify_access_token(form.get("token", ""))
        if claims is None:
            return JSONResponse({"active": False}, headers=NO_STORE)
        extra = {"client_id": claims.get("azp"), "token_type": "Bearer", "active": True}
        return JSONResponse({**claims, **extra}, headers=NO_STORE)
