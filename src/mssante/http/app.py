"""The FastAPI application: OAuth2 client credentials, the JWKS and ``/api/v1/me`` (R18).

Routes:

* ``POST /oauth/token`` — client credentials grant (RFC 6749 §4.4). The client authenticates
  with HTTP Basic (``client_secret_basic``, §2.3.1) or with ``client_id``/``client_secret``
  form fields (``client_secret_post``), never both. Errors follow §5.2: a JSON object with
  ``error`` and an ASCII ``error_description``, 400 or 401 (with ``WWW-Authenticate``), and
  ``Cache-Control: no-store`` on every answer.
* ``GET /.well-known/jwks.json`` — the public key that signs our access tokens (RFC 7517).
* ``GET /api/v1/me`` — who the bearer token (RFC 6750) speaks for: one of our client-credentials
  tokens (an APP mailbox), or a Pro Santé Connect token when a ``TokenValidator`` is given
  (the PER mailboxes of that idNat_PS and the ORG/CAB mailboxes it is a member of, R15).

Every error other than the OAuth endpoint's is an RFC 9457 ``application/problem+json`` with a
French ``detail``. An unexpected exception is answered 500 with an error id that is also on
the log line; no traceback, SQL or token ever reaches a response. Tokens and secrets are never
logged: only :func:`~mssante.identity.token_hash` values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote_plus

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mssante import __version__
from mssante.domain.errors import AuthenticationFailed
from mssante.http.api.auth import authenticate
from mssante.http.api.models import problem_responses
from mssante.http.api.openapi import setup_openapi
from mssante.http.api.problems import ApiProblem, problem_handler
from mssante.identity import TokenValidator
from mssante.services.machine_credentials import InvalidScope, MachineCredentialService
from mssante.services.mailboxes import MailboxService

__all__ = ["HttpServices", "create_app"]

log = logging.getLogger("mssante.http")

MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 32
REALM = "mssante"
PROBLEM = "application/problem+json"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASE_HEADERS = {"X-Content-Type-Options": "nosniff"}

_TITLES = {
    400: "Requête invalide",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Ressource introuvable",
    405: "Méthode non autorisée",
    413: "Requête trop volumineuse",
    415: "Type de contenu non pris en charge",
    500: "Erreur interne",
    503: "Service momentanément indisponible",
}
_DETAILS = {
    404: "Aucune ressource à cette adresse.",
    405: "Cette méthode n'est pas acceptée à cette adresse.",
}


class HttpServices(Protocol):
    """What the HTTP adapter uses of :class:`mssante.runtime.Services`."""

    @property
    def machine_credentials(self) -> MachineCredentialService: ...

    @property
    def mailboxes(self) -> MailboxService: ...


# -- answers ------------------------------------------------------------------------------

_OAUTH_ERROR: dict[str, Any] = {
    "description": "RFC 6749 §5.2 error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
            }
        }
    },
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An RFC 9457 problem document (``type`` about:blank: the status says it all)."""
    body = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Erreur"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM,
        headers={**BASE_HEADERS, **NO_STORE, **(headers or {})},
    )


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer of the token endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description  # ASCII only (§5.2 error_description syntax)
        self.status = status

    def response(self) -> JSONResponse:
        headers = {**BASE_HEADERS, **NO_STORE}
        if self.status == 401:
            headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


# -- request parsing ----------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise OAuthError("invalid_request", "request body too large or malformed length")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OAuthError("invalid_request", "request body too large")
    return bytes(body)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded body (RFC 6749 §4.4.2, Appendix B); parameters at most once (§3.2)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = await _read_body(request, MAX_FORM_BYTES)
    try:
        parsed = parse_qs(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "malformed form body") from None
    form: dict[str, str] = {}
    for key, values in parsed.items():
        if len(values) != 1:
            raise OAuthError("invalid_request", f"parameter {key[:40]!r} repeated")
        form[key] = values[0]
    return form


def _basic_credentials(header: str) -> tuple[str, str]:
    """client_secret_basic: both parts form-urlencoded, then base64 (RFC 6749 §2.3.1)."""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
    if ":" not in decoded:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    raw_id, _, raw_secret = decoded.partition(":")
    return unquote_plus(raw_id), unquote_plus(raw_secret)


def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str]:
    header = request.headers.get("authorization")
    if header is not None:
        if header[:6].lower() != "basic ":
            raise OAuthError("invalid_client", "unsupported client authentication scheme", 401)
        if "client_secret" in form:  # RFC 6749 §2.3: one method per request
            raise OAuthError("invalid_request", "more than one client authentication method")
        client_id, secret = _basic_credentials(header)
        if "client_id" in form and form["client_id"] != client_id:
            raise OAuthError("invalid_request", "client_id differs from the authenticated one")
        return client_id, secret
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not secret:
        raise OAuthError("invalid_client", "client authentication required", 401)
    return client_id, secret


def _bearer(request: Request) -> str | None:
    """The RFC 6750 §2.1 bearer token, or None when the request has no bearer credentials."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip()


def _peer(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


# -- the catch-all ------------------------------------------------------------------------


class CatchAll:
    """Answer any unexpected exception with problem+json 500 and an error id (logged)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            error_id = secrets.token_hex(6)
            # The path only: a query string may carry a credential.
            log.exception(
                "HTTP %s %s failed (error id %s)", scope.get("method"), scope.get("path"), error_id
            )
            if started:
                return
            response = problem(
                500,
                f"Une erreur interne est survenue (identifiant {error_id}). "
                "Communiquez cet identifiant au support de l'opérateur.",
                error_id=error_id,
            )
            await response(scope, receive, send)


# -- the application ----------------------------------------------------------------------


def _allowed(app: FastAPI, request: Request) -> str:
    """The methods of every operation whose path template matches (Starlette names only the
    first route's), read from the OpenAPI document the app publishes."""
    methods: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in item if m in _HTTP_METHODS}
    return ", ".join(sorted(methods))


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def create_app(services: HttpServices, *, token_validator: TokenValidator | None = None) -> FastAPI:
    """The HTTP API of one operator. ``token_validator`` enables PSC tokens on the API."""
    credentials = services.machine_credentials
    app = FastAPI(
        title="mssante API",
        version=__version__,
        docs_url=None,  # the interactive pages load scripts from a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",  # and /openapi.json, an alias (setup_openapi)
    )
    app.add_middleware(CatchAll)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = _DETAILS.get(exc.status_code, _TITLES.get(exc.status_code, "Erreur."))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110 §15.5.6: every method of every route here
            headers["Allow"] = _allowed(app, request) or headers.get("Allow", "")
        return problem(exc.status_code, detail, headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        detail = "Les paramètres de la requête sont invalides."
        if request.url.path.startswith("/api/"):  # the integration API's problem types
            return ApiProblem(400, "invalid-request", detail).response(request.url.path)
        return problem(400, detail)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ApiProblem, problem_handler)  # issue 7: RFC 9457 with type URIs
    setup_openapi(app)  # /api/openapi.json (3.1), /api/docs

    from mssante.http.web_auth import web_auth_router  # here: web_auth imports this module

    app.include_router(web_auth_router(services))  # PSC web login and sessions (R61)

    from mssante.http.api import api_router
    from mssante.http.directory_routes import directory_router
    from mssante.http.fhir import fhir_router

    app.include_router(api_router(services, token_validator))  # messages, webhooks (issue 7)
    app.include_router(directory_router(services, token_validator))  # search, suggest (issue 5)
    app.include_router(fhir_router(services))  # FHIR R4 directory API (SPEC §4.1)

    @app.post(
        "/oauth/token",
        tags=["oauth"],
        summary="Client credentials grant (RFC 6749 §4.4)",
        responses={400: _OAUTH_ERROR, 401: _OAUTH_ERROR},
    )
    async def token(request: Request) -> Response:
        try:
            form = await _form(request)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise OAuthError("invalid_request", "grant_type is required")
            if grant_type != "client_credentials":
                raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
            client_id, secret = _client_credentials(request, form)
            try:
                issued = await asyncio.to_thread(
                    credentials.issue_token,
                    client_id,
                    secret,
                    scope=form.get("scope"),
                    peer=_peer(request),
                )
            except AuthenticationFailed:
                raise OAuthError("invalid_client", "client authentication failed", 401) from None
            except InvalidScope:
                raise OAuthError("invalid_scope", "the requested scope is not granted") from None
        except OAuthError as exc:
            return exc.response()
        body = {
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        }
        return JSONResponse(body, headers={**BASE_HEADERS, **NO_STORE})

    @app.get("/.well-known/jwks.json", tags=["oauth"], summary="Keys that sign our tokens")
    async def jwks() -> Response:
        return JSONResponse(
            credentials.signer.jwks(),
            headers={**BASE_HEADERS, "Cache-Control": "public, max-age=300"},
        )

    @app.get(
        "/api/v1/me",
        tags=["api"],
        summary="Who the bearer token speaks for",
        responses=problem_responses(403),
    )
    async def me(request: Request) -> Response:
        try:
            caller = await authenticate(services, token_validator, request)
        except ApiProblem as exc:
            return exc.response(instance=request.url.path)
        body: dict[str, Any] = {
            "login": caller.principal.login,
            "kind": caller.kind,
            "mailboxes": sorted(caller.mailboxes),
        }
        if caller.kind == "professional":
            body["login"] = body["id_nat_ps"] = caller.principal.id_nat_ps
        return JSONResponse(body, headers={**BASE_HEADERS, **NO_STORE})

    return app
