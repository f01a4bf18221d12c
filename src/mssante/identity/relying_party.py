"""Relying party: the webmail login through Pro Santé Connect (R61).

Authorization code flow with PKCE S256, ``scope=openid scope_all``, ``acr_values=eidas1``,
``state`` and ``nonce``. :meth:`RelyingParty.begin` gives the URL to redirect the browser to
and a :class:`LoginState` that the web layer keeps server-side (it holds the PKCE verifier);
:meth:`RelyingParty.finish` takes the callback URL (or its query parameters), exchanges the
code, validates the ID token (signature by JWKS, ``iss``, ``aud``/``azp``, ``exp``, ``nonce``,
``acr == eidas1``, ``at_hash``) and reads ``SubjectNameID`` from userinfo: the idNat_PS.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from mssante.identity import claims as c
from mssante.identity.errors import InvalidToken, LoginFailed, token_hash
from mssante.identity.jwks import JwksCache, verify_jws
from mssante.identity.settings import OidcSettings
from mssante.identity.tokens import client_basic_auth

log = logging.getLogger("mssante.identity.relying_party")

ClientAuthMethod = Literal["client_secret_basic", "client_secret_post"]

__all__ = ["LoginFailed", "LoginResult", "LoginState", "RelyingParty", "pkce_s256"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_s256(code_verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return _b64url(hashlib.sha256(code_verifier.encode("ascii")).digest())


def _with_query(url: str, params: Mapping[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


@dataclass(frozen=True, slots=True)
class LoginState:
    """What the web layer keeps between ``begin`` and ``finish`` (server-side, one use)."""

    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A completed login. ``access_token``/``id_token`` are secrets: keep them in memory only."""

    id_nat_ps: str
    id_token_claims: Mapping[str, Any]
    access_token: str = field(repr=False)
    expires_at: datetime
    userinfo: Mapping[str, Any] = field(default_factory=dict, repr=False)
    id_token: str = field(default="", repr=False)
    refresh_token: str | None = field(default=None, repr=False)

    @property
    def subject(self) -> str:
        return str(self.id_token_claims.get("sub", ""))

    @property
    def given_name(self) -> str | None:
        return c.string_claim(self.userinfo, "given_name") or c.string_claim(
            self.id_token_claims, "given_name"
        )

    @property
    def family_name(self) -> str | None:
        return c.string_claim(self.userinfo, "family_name") or c.string_claim(
            self.id_token_claims, "family_name"
        )


class RelyingParty:
    """OpenID Connect client of Pro Santé Connect (or the demo provider)."""

    def __init__(
        self,
        settings: OidcSettings,
        redirect_uri: str,
        *,
        http: httpx.AsyncClient | None = None,
        jwks: JwksCache | None = None,
        client_auth_method: ClientAuthMethod = "client_secret_basic",
        max_login_age: float = 600.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.client_id:
            raise ValueError("the relying party needs a client_id")
        if client_auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError(f"unsupported client_auth_method {client_auth_method!r}")
        self.settings = settings
        self.redirect_uri = redirect_uri
        self.client_auth_method = client_auth_method
        self.max_login_age = max_login_age
        self._http = http
        self._timeout = timeout
        self._clock = clock
        self.jwks = jwks or JwksCache(
            settings.jwks_uri, ttl=settings.jwks_cache_ttl, timeout=timeout, clock=clock
        )

    def close(self) -> None:
        self.jwks.close()

    def begin(self, **extra_params: str) -> tuple[str, LoginState]:
        """The authorization URL to redirect to, and the state to keep for ``finish``.

        ``extra_params`` adds parameters (``prompt``, ``login_hint``…), never replaces one.
        """
        s = self.settings
        login = LoginState(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),  # 86 chars of [A-Za-z0-9_-] (RFC 7636 §4.1)
            created_at=self._clock(),
        )
        params = {
            "response_type": "code",
            "client_id": s.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": s.scope,
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": pkce_s256(login.code_verifier),
            "code_challenge_method": "S256",
            **({"acr_values": s.required_acr} if s.required_acr else {}),
        }
        clash = set(extra_params) & set(params)
        if clash:
            raise ValueError(f"begin() cannot override {sorted(clash)}")
        params.update(extra_params)
        return _with_query(s.authorization_endpoint, params), login

    def logout_url(
        self, id_token: str, post_logout_redirect_uri: str | None = None, state: str | None = None
    ) -> str | None:
        """RP-initiated logout URL (``end_session_endpoint``), or None when there is none."""
        endpoint = self.settings.end_session_endpoint
        if not endpoint:
            return None
        params = {"id_token_hint": id_token, "client_id": self.settings.client_id}
        if post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = post_logout_redirect_uri
        if state:
            params["state"] = state
        return _with_query(endpoint, params)

    async def finish(
        self, callback: str | Mapping[str, str], login_state: LoginState
    ) -> LoginResult:
        """Complete the login from the callback; raises :class:`LoginFailed`."""
        params = _callback_params(callback)
        s = self.settings
        if "error" in params:
            raise LoginFailed(f"identity provider answered {params['error'][:64]!r}", "denied")
        if not hmac.compare_digest(params.get("state", ""), login_state.state):
            raise LoginFailed("state mismatch", "invalid_state")
        if self._clock() - login_state.created_at > self.max_login_age:
            raise LoginFailed("login took too long", "expired")
        if "iss" in params and params["iss"] != s.issuer:  # RFC 9207 mix-up defence
            raise LoginFailed("callback issuer mismatch", "invalid_issuer")
        code = params.get("code")
        if not code:
            raise LoginFailed("callback has no code", "invalid_request")
        if self._http is not None:
            return await self._complete(self._http, code, login_state)
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            return await self._complete(http, code, login_state)

    async def _complete(
        self, http: httpx.AsyncClient, code: str, login_state: LoginState
    ) -> LoginResult:
        tokens = await self._exchange(http, code, login_state)
        access_token, id_token = tokens["access_token"], tokens["id_token"]
        try:
            id_claims = await asyncio.to_thread(self._check_id_token, id_token, access_token)
            id_claims = self._check_nonce(id_claims, login_state)
            userinfo = await self._userinfo(http, access_token, id_claims)
        except InvalidToken as exc:
            log.warning("login refused (id token %s): %s", token_hash(id_token), exc.reason)
            raise LoginFailed(exc.reason, exc.error) from None
        raw = c.raw_id_nat_ps(userinfo) or c.raw_id_nat_ps(id_claims)
        if raw is None:
            raise LoginFailed("no SubjectNameID in userinfo nor in the ID token", "no_identity")
        try:
            id_nat_ps = c.parse_id_nat_ps(raw)
        except InvalidToken as exc:
            raise LoginFailed(exc.reason, "no_identity") from None
        expires_in = tokens.get("expires_in")
        lifetime = expires_in if isinstance(expires_in, int | float) else 0
        expires_at = datetime.fromtimestamp(self._clock() + lifetime, UTC)
        log.info("PSC login of idNat_PS %s (id token %s)", id_nat_ps, token_hash(id_token))
        refresh = tokens.get("refresh_token")
        return LoginResult(
            id_nat_ps=id_nat_ps,
            id_token_claims=id_claims,
            access_token=access_token,
            expires_at=expires_at,
            userinfo=userinfo,
            id_token=id_token,
            refresh_token=refresh if isinstance(refresh, str) else None,
        )

    async def _exchange(
        self, http: httpx.AsyncClient, code: str, login_state: LoginState
    ) -> dict[str, Any]:
        s = self.settings
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": login_state.code_verifier,
        }
        headers = {"Accept": "application/json"}
        if self.client_auth_method == "client_secret_basic":
            headers["Authorization"] = client_basic_auth(s.client_id, s.client_secret)
        else:
            data |= {"client_id": s.client_id, "client_secret": s.client_secret}
        try:
            response = await http.post(s.token_endpoint, data=data, headers=headers)
        except httpx.HTTPError as exc:
            raise LoginFailed(
                f"token endpoint unreachable: {type(exc).__name__}", "unavailable"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise LoginFailed(f"token endpoint answered HTTP {response.status_code}", "unavailable")
        if response.status_code != 200:
            error = str(body.get("error", "unknown"))[:64]
            raise LoginFailed(f"token endpoint refused the code: {error}", error)
        if str(body.get("token_type", "")).lower() != "bearer":
            raise LoginFailed("token endpoint returned no bearer token", "invalid_response")
        for key in ("access_token", "id_token"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise LoginFailed(f"token endpoint returned no {key}", "invalid_response")
        return body

    def _check_id_token(self, id_token: str, access_token: str) -> dict[str, Any]:
        """OpenID Connect Core §3.1.3.7 (blocking: may fetch the JWKS)."""
        s = self.settings
        _, claims = verify_jws(id_token, self.jwks)
        c.check_issuer(claims, s.issuer)
        c.check_audience(claims, (s.client_id,))
        aud = c.audiences(claims)
        azp = claims.get("azp")
        if (len(aud) > 1 or azp is not None) and azp != s.client_id:
            raise InvalidToken("ID token azp is not this client")
        c.check_times(claims, self._clock(), s.leeway)
        c.numeric_claim(claims, "iat", required=True)
        c.check_acr(claims, s.required_acr)
        if not c.string_claim(claims, "sub"):
            raise InvalidToken("ID token has no sub")
        at_hash = claims.get("at_hash")
        if at_hash is not None:  # §3.1.3.8; the three allowed algorithms all use SHA-256
            digest = hashlib.sha256(access_token.encode("ascii", "replace")).digest()
            if not hmac.compare_digest(str(at_hash), _b64url(digest[:16])):
                raise InvalidToken("ID token at_hash does not match the access token")
        return claims

    @staticmethod
    def _check_nonce(claims: dict[str, Any], login_state: LoginState) -> dict[str, Any]:
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce, login_state.nonce):
            raise InvalidToken("ID token nonce mismatch")
        return claims

    async def _userinfo(
        self, http: httpx.AsyncClient, access_token: str, id_claims: Mapping[str, Any]
    ) -> dict[str, Any]:
        s = self.settings
        try:
            response = await http.get(
                s.userinfo_endpoint,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise LoginFailed(
                f"userinfo unreachable: {type(exc).__name__}", "unavailable"
            ) from None
        userinfo = await asyncio.to_thread(
            c.decode_userinfo, response, self.jwks, s.issuer, s.client_id
        )
        if userinfo.get("sub") != id_claims.get("sub"):  # Core §5.3.2
            raise InvalidToken("userinfo sub differs from the ID token's")
        return userinfo


def _callback_params(callback: str | Mapping[str, str]) -> dict[str, str]:
    if not isinstance(callback, str):
        return {str(k): str(v) for k, v in callback.items()}
    query = urlsplit(callback).query if "?" in callback or "://" in callback else callback
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise LoginFailed(f"repeated callback parameter {key!r}", "invalid_request")
        params[key] = value
    return params
