"""Validation of Pro Santé Connect access tokens, shared by every listener (R14–R17).

``TokenValidator.validate`` is synchronous and may block on HTTP (JWKS refresh, optional
introspection, userinfo fallback): asyncio listeners call it through ``asyncio.to_thread`` or
``await validator.validate_async(token)``. It is thread-safe and keeps no token: only
:func:`token_hash` values reach the logs (R17).

Checks, in order: compact JWS with ``alg`` in RS256/PS256/ES256 and a signature that verifies
against the provider's JWKS; ``iss`` exactly the configured issuer; ``exp``/``nbf``/``iat``
with the configured leeway; ``aud`` containing an accepted audience; not an ID or refresh
token (Keycloak ``typ`` claim); ``acr`` equal to ``required_acr`` (``eidas1``); required
scopes; optional RFC 7662 introspection (``active`` must be true); the idNat_PS from
``SubjectNameID`` (or ``preferred_username``, or userinfo when the token carries neither).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from mssante.identity import claims as c
from mssante.identity.errors import InvalidToken, ProviderUnavailable, token_hash
from mssante.identity.jwks import JwksCache, verify_jws
from mssante.identity.settings import OidcSettings

log = logging.getLogger("mssante.identity.tokens")

__all__ = ["InvalidToken", "ProviderUnavailable", "TokenIdentity", "TokenValidator", "token_hash"]


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """Who a valid access token speaks for. Holds no token, only its hash."""

    subject: str
    id_nat_ps: str
    issuer: str
    expires_at: datetime
    acr: str
    token_hash: str
    given_name: str | None = None
    family_name: str | None = None
    preferred_username: str | None = None
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds until expiry (negative once expired): when to close the session (R16)."""
        return (self.expires_at - (now or datetime.now(UTC))).total_seconds()


def client_basic_auth(client_id: str, client_secret: str) -> str:
    """``Authorization`` value for client_secret_basic (RFC 6749 §2.3.1: form-encode first)."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return frozenset(s for s in scp if isinstance(s, str))
    return frozenset()


class TokenValidator:
    """Validates bearer access tokens for SMTP/IMAP/HTTP (XOAUTH2, OAUTHBEARER, Bearer)."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        http: httpx.Client | None = None,
        use_introspection: bool = False,
        userinfo_fallback: bool = True,
        required_scopes: Collection[str] = (),
        min_jwks_refresh_interval: float = 10.0,
        jwks: JwksCache | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.accepted_audiences:
            raise ValueError("OidcSettings needs a client_id or an audience to check tokens")
        if use_introspection and not settings.introspection_endpoint:
            raise ValueError("use_introspection=True but the settings have no introspection URL")
        self.settings = settings
        self.use_introspection = use_introspection
        self.userinfo_fallback = userinfo_fallback
        self.required_scopes = frozenset(required_scopes)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout)
        self._clock = clock
        self.jwks = jwks or JwksCache(
            settings.jwks_uri,
            http=self._http,
            ttl=settings.jwks_cache_ttl,
            min_refresh_interval=min_jwks_refresh_interval,
            clock=clock,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def validate(self, token: str) -> TokenIdentity:
        """The identity behind ``token``, or :class:`InvalidToken`. Blocking, thread-safe."""
        digest = token_hash(token) if isinstance(token, str) else "-"
        try:
            identity = self._validate(token, digest)
        except InvalidToken as exc:
            log.info("access token %s refused: %s (%s)", digest, exc.reason, exc.error)
            raise
        log.debug("access token %s accepted for idNat_PS %s", digest, identity.id_nat_ps)
        return identity

    async def validate_async(self, token: str) -> TokenIdentity:
        """``validate`` in a worker thread, for asyncio listeners."""
        return await asyncio.to_thread(self.validate, token)

    def _validate(self, token: str, digest: str) -> TokenIdentity:
        s = self.settings
        _, claims = verify_jws(token, self.jwks)
        c.check_issuer(claims, s.issuer)
        exp = c.check_times(claims, self._clock(), s.leeway)
        c.check_audience(claims, s.accepted_audiences)
        typ = claims.get("typ")
        if isinstance(typ, str) and typ.lower() != "bearer":
            raise InvalidToken("not an access token")
        acr = c.check_acr(claims, s.required_acr)
        scopes = _scopes(claims)
        if not self.required_scopes <= scopes:
            raise InvalidToken("token lacks a required scope", "insufficient_scope")
        subject = c.string_claim(claims, "sub")
        if subject is None:
            raise InvalidToken("missing sub claim")
        if self.use_introspection:
            self._introspect(token, subject)
        profile: Mapping[str, Any] = claims
        raw = c.raw_id_nat_ps(claims)
        if raw is None and self.userinfo_fallback:
            profile = self._userinfo(token, subject)
            raw = c.raw_id_nat_ps(profile)
        if raw is None:
            raise InvalidToken("token carries no SubjectNameID")
        azp = claims.get("azp") or claims.get("client_id")
        return TokenIdentity(
            subject=subject,
            id_nat_ps=c.parse_id_nat_ps(raw),
            issuer=s.issuer,
            expires_at=datetime.fromtimestamp(exp, UTC),
            acr=acr,
            token_hash=digest,
            given_name=c.string_claim(profile, "given_name"),
            family_name=c.string_claim(profile, "family_name"),
            preferred_username=c.string_claim(profile, "preferred_username"),
            client_id=azp if isinstance(azp, str) else None,
            scopes=scopes,
            claims=dict(claims),
        )

    def _introspect(self, token: str, subject: str) -> None:
        """RFC 7662 §2: POST the token with the client's credentials; ``active`` must be true."""
        s = self.settings
        assert s.introspection_endpoint is not None
        try:
            response = self._http.post(
                s.introspection_endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                headers={
                    "Authorization": client_basic_auth(s.client_id, s.client_secret),
                    "Accept": "application/json",
                },
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"introspection failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ProviderUnavailable(f"introspection answered HTTP {response.status_code}")
        try:
            result = response.json()
        except ValueError:
            raise ProviderUnavailable("introspection response is not JSON") from None
        if not isinstance(result, dict) or result.get("active") is not True:
            raise InvalidToken("token is not active (introspection)")
        if "sub" in result and result["sub"] != subject:
            raise InvalidToken("introspection subject differs from the token's")

    def _userinfo(self, token: str, subject: str) -> dict[str, Any]:
        s = self.settings
        try:
            response = self._http.get(
                s.userinfo_endpoint,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"userinfo failed: {type(exc).__name__}") from None
        profile = c.decode_userinfo(response, self.jwks, s.issuer, s.client_id)
        if profile.get("sub") != subject:
            raise InvalidToken("userinfo subject differs from the token's")
        return profile
