"""A Pro Santé Connect look-alike OpenID provider, for the demo and the tests. Never production.

It serves the PSC endpoints that the platform uses (``/.well-known/openid-configuration``,
``/auth``, ``/token``, ``/userinfo``, ``/certs``, ``/token/introspect``), signs with its own
RSA key (RS256), issues ``acr=eidas1`` tokens that carry ``SubjectNameID``, and lets the user
pick one of the fictitious professionals on a French page marked «Fournisseur d'identité de
DÉMONSTRATION — ne pas utiliser en production». :meth:`DemoProvider.start` refuses to run
unless ``allow_demo=True`` is passed, and always when ``MSSANTE_ENVIRONMENT=production``.

:meth:`DemoProvider.mint_access_token` forges tokens for tests: expired, not yet valid, wrong
issuer, audience or ``acr``, signed by another key.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from mssante.domain.identifiers import parse_idnat_ps
from mssante.identity._demo_http import Endpoints
from mssante.identity._demo_pages import DEMO_BANNER
from mssante.identity.errors import token_hash
from mssante.identity.settings import PSC_ACR, PSC_SCOPE, OidcSettings

log = logging.getLogger("mssante.identity.demo_provider")

PRODUCTION_ENV_VAR = "MSSANTE_ENVIRONMENT"
_SUBJECT_NAMESPACE = uuid.UUID("6f1c1d0e-3d9a-5b4e-9a51-6d6f2d707363")

__all__ = [
    "DEMO_BANNER",
    "PRODUCTION_ENV_VAR",
    "DemoProfessional",
    "DemoProvider",
    "DemoRefused",
    "generate_key",
]


class DemoRefused(RuntimeError):
    """The demo identity provider may not start here (production, or no explicit opt-in)."""


def generate_key(kty: Literal["RSA", "EC"] = "RSA") -> Key:
    """A fresh signing key with a ``kid`` (RSA 2048 or EC P-256)."""
    if kty == "EC":
        return ECKey.generate_key("P-256", auto_kid=True)
    return RSAKey.generate_key(2048, auto_kid=True)


def _alg_for(key: Key) -> str:
    return "ES256" if isinstance(key, ECKey) else "RS256"


def _subject(id_nat_ps: str) -> str:
    return str(uuid.uuid5(_SUBJECT_NAMESPACE, id_nat_ps))


@dataclass(frozen=True, slots=True)
class DemoProfessional:
    """A fictitious professional offered on the login page."""

    id_nat_ps: str
    given_name: str
    family_name: str
    profession: str = "Médecin"

    @property
    def subject(self) -> str:
        """A stable ``sub`` that differs from the idNat_PS (R61: use SubjectNameID, not sub)."""
        return _subject(self.id_nat_ps)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside someone else's loop: leave the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn before capture_signals existed
        return None


class DemoProvider:
    """The demo OpenID provider. ``clients`` maps a client_id to (secret, redirect URIs).

    ``signing_key`` (a private RSA or EC key with a ``kid``) defaults to a fresh RSA key.
    Test knobs: ``acr`` (what ID/access tokens carry), ``userinfo_signed`` (answer userinfo as
    a signed ``application/jwt``), :meth:`rotate_key`, :meth:`revoke`, ``jwks_requests``.
    """

    def __init__(
        self,
        professionals: Iterable[DemoProfessional],
        clients: Mapping[str, tuple[str, Sequence[str]]],
        *,
        access_token_lifetime: int = 600,
        acr: str = PSC_ACR,
        userinfo_signed: bool = False,
        signing_key: Key | None = None,
    ) -> None:
        self.professionals = [
            DemoProfessional(
                parse_idnat_ps(p.id_nat_ps).value, p.given_name, p.family_name, p.profession
            )
            for p in professionals
        ]
        if not self.professionals or not clients:
            raise ValueError("the demo provider needs at least one professional and one client")
        self._by_id = {p.id_nat_ps: p for p in self.professionals}
        self._by_subject = {p.subject: p for p in self.professionals}
        self.clients = {cid: (secret, tuple(uris)) for cid, (secret, uris) in clients.items()}
        self.access_token_lifetime = access_token_lifetime
        self.acr = acr
        self.userinfo_signed = userinfo_signed
        self._keys: list[Key] = [signing_key or generate_key()]
        self.revoked: set[str] = set()  # token hashes
        self.jwks_requests = 0
        self.issuer: str | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Endpoints(self).app()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, allow_demo: bool = False
    ) -> str:
        """Serve in the current loop (uvicorn task); returns the issuer URL once listening."""
        if os.environ.get(PRODUCTION_ENV_VAR, "").strip().lower() in ("production", "prod"):
            raise DemoRefused(f"{PRODUCTION_ENV_VAR}=production: the demo provider cannot start")
        if not allow_demo:
            raise DemoRefused("the demo identity provider only starts with allow_demo=True")
        if self._task is not None:
            raise RuntimeError("the demo provider is already running")
        # Bind here: uvicorn calls sys.exit() when it cannot bind, which would end the loop.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="demo-oidc-provider")
        self._server, self._task = server, task
        while not server.started:
            if task.done():
                sock.close()
                self._server = self._task = None
                task.result()
                raise RuntimeError("the demo provider stopped during startup")
            await asyncio.sleep(0.01)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        self.issuer = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        log.warning("%s: listening on %s", DEMO_BANNER, self.issuer)
        return self.issuer

    async def stop(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._server = self._task = None

    def require_issuer(self) -> str:
        if self.issuer is None:
            raise RuntimeError("the demo provider is not started")
        return self.issuer

    def settings_for(self, client_id: str, client_secret: str = "", **changes: Any) -> OidcSettings:
        """Settings that point at this (running) provider, for the validator and the RP."""
        issuer = self.require_issuer()
        return OidcSettings(
            issuer=issuer,
            authorization_endpoint=f"{issuer}/auth",
            token_endpoint=f"{issuer}/token",
            userinfo_endpoint=f"{issuer}/userinfo",
            jwks_uri=f"{issuer}/certs",
            introspection_endpoint=f"{issuer}/token/introspect",
            client_id=client_id,
            client_secret=client_secret,
            **changes,
        )

    # --- professionals and keys ------------------------------------------------------------

    def professional(self, id_nat_ps: str) -> DemoProfessional | None:
        return self._by_id.get(id_nat_ps)

    def professional_by_subject(self, subject: str) -> DemoProfessional | None:
        return self._by_subject.get(subject)

    @property
    def signing_key(self) -> Key:
        return self._keys[-1]

    def rotate_key(self, *, keep_previous: bool = True) -> str:
        """Sign with a new key from now on; returns its ``kid``."""
        key = generate_key()
        self._keys = [*self._keys, key] if keep_previous else [key]
        return str(key.kid)

    def jwks(self) -> dict[str, Any]:
        """The public JWK set served on ``/certs``."""
        keys = [{**k.as_dict(private=False), "use": "sig", "alg": _alg_for(k)} for k in self._keys]
        return {"keys": keys}

    def sign(self, claims: Mapping[str, Any], key: Key | None = None) -> str:
        key = key or self.signing_key
        alg = _alg_for(key)
        return jwt.encode({"alg": alg, "kid": str(key.kid)}, dict(claims), key, algorithms=[alg])

    # --- tokens ----------------------------------------------------------------------------

    def mint_access_token(
        self,
        id_nat_ps: str,
        *,
        expires_in: float = 600,
        acr: str = PSC_ACR,
        issuer: str | None = None,
        audience: str | list[str] | None = None,
        key: Key | None = None,
        not_before: float | datetime | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        omit_claims: Iterable[str] = (),
    ) -> str:
        """An access token like ``/token`` issues, with deviations for tests.

        ``audience`` defaults to the first client; ``key`` signs instead of the provider's key
        (RS256 for RSA, ES256 for EC); ``not_before`` is an epoch time or a datetime.
        """
        now = time.time()
        exp = now + expires_in
        issued = min(now, exp - 60)
        nbf = not_before.timestamp() if isinstance(not_before, datetime) else not_before
        person = self._by_id.get(parse_idnat_ps(id_nat_ps).value)
        client_id = next(iter(self.clients))
        claims: dict[str, Any] = {
            "iss": issuer or self.require_issuer(),
            "aud": audience if audience is not None else client_id,
            "azp": client_id,
            "sub": person.subject if person else _subject(id_nat_ps),
            "exp": int(exp),
            "iat": int(issued),
            "nbf": int(nbf if nbf is not None else issued),
            "jti": secrets.token_hex(16),
            "typ": "Bearer",
            "acr": acr,
            "scope": PSC_SCOPE,
            "SubjectNameID": id_nat_ps,
            "preferred_username": id_nat_ps,
        }
        if person:
            claims |= {"given_name": person.given_name, "family_name": person.family_name}
        claims |= dict(extra_claims or {})
        for name in omit_claims:
            claims.pop(name, None)
        return self.sign(claims, key)

    def issue_access_token(self, person: DemoProfessional, client_id: str, scope: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.require_issuer(),
            "aud": client_id,
            "azp": client_id,
            "sub": person.subject,
            "exp": now + self.access_token_lifetime,
            "iat": now,
            "nbf": now,
            "jti": secrets.token_hex(16),
            "typ": "Bearer",
            "acr": self.acr,
            "scope": scope,
            "SubjectNameID": person.id_nat_ps,
            "preferred_username": person.id_nat_ps,
            "given_name": person.given_name,
            "family_name": person.family_name,
        }
        return self.sign(claims)

    def issue_id_token(
        self, person: DemoProfessional, client_id: str, nonce: str | None, access_token: str
    ) -> str:
        now = int(time.time())
        half = hashlib.sha256(access_token.encode("ascii")).digest()[:16]
        claims: dict[str, Any] = {
            "iss": self.require_issuer(),
            "aud": client_id,
            "azp": client_id,
            "sub": person.subject,
            "exp": now + self.access_token_lifetime,
            "iat": now,
            "auth_time": now,
            "typ": "ID",
            "acr": self.acr,
            "at_hash": base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii"),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return self.sign(claims)

    def userinfo_claims(self, person: DemoProfessional) -> dict[str, Any]:
        return {
            "sub": person.subject,
            "SubjectNameID": person.id_nat_ps,
            "preferred_username": person.id_nat_ps,
            "given_name": person.given_name,
            "family_name": person.family_name,
            "email_verified": False,
        }

    def verify_access_token(self, token: str) -> dict[str, Any] | None:
        """Claims of a current, unrevoked access token signed by this provider, else None."""
        try:
            decoded = jwt.decode(token, KeySet(list(self._keys)), algorithms=["RS256", "ES256"])
        except (JoseError, ValueError, TypeError, KeyError):
            return None
        claims = decoded.claims
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
            return None
        if claims.get("iss") != self.issuer or claims.get("typ") != "Bearer":
            return None
        if not nbf <= now < exp or token_hash(token) in self.revoked:
            return None
        return claims

    def revoke(self, token: str) -> None:
        """Introspection and userinfo refuse this token from now on."""
        self.revoked.add(token_hash(token))
