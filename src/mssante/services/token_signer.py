"""The operator's own token signer: short-lived access tokens for APP mailboxes (R18).

One EC P-256 private key, kept as PKCS#8 PEM (mode 0600) in the data directory and created on
first use, signs JWT access tokens (RFC 9068, header ``typ: at+jwt``) with ES256 (RFC 7518
§3.4). The public half is published as a JWK set (RFC 7517 §5) with ``kid`` = the RFC 7638
thumbprint, so that integrators can check a token offline.

``verify`` checks, in order: compact JWS of reasonable size, header ``alg`` exactly ES256,
``typ`` ``at+jwt``, no ``crit``, ``kid`` equal to ours (when present), the signature, then the
claims ``iss`` (exact), ``aud`` (contains the audience), ``exp`` (required), ``nbf`` and
``iat`` with a small leeway. Every refusal raises :class:`~mssante.identity.InvalidToken`
whose reason never contains the token.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from mssante.identity import claims as c
from mssante.identity.errors import InvalidToken

__all__ = ["ALGORITHM", "TOKEN_TYPE", "TokenSigner"]

log = logging.getLogger("mssante.services.token_signer")

ALGORITHM = "ES256"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 §2.1 media type, not a secret
MAX_TOKEN_LENGTH = 8 * 1024
DEFAULT_LEEWAY = 5.0  # the signer and the verifiers share the operator's clock


def _write_new_key(path: Path) -> None:
    """Create ``path`` (mode 0600) atomically; FileExistsError if another process won."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # atomic, and refuses to replace a key another worker wrote
    finally:
        tmp.unlink(missing_ok=True)


class TokenSigner:
    """Signs and verifies the operator's access tokens with one ES256 key."""

    def __init__(
        self, private_key: ec.EllipticCurvePrivateKey, *, clock: Callable[[], float] = time.time
    ) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("the token signing key must be an EC P-256 key (ES256)")
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._key = ECKey.import_key(pem)
        self.kid = self._key.thumbprint()
        self._clock = clock

    @classmethod
    def generate(cls, *, clock: Callable[[], float] = time.time) -> TokenSigner:
        """A signer with a fresh key kept in memory only (tests)."""
        return cls(ec.generate_private_key(ec.SECP256R1()), clock=clock)

    @classmethod
    def load_or_create(cls, path: Path, *, clock: Callable[[], float] = time.time) -> TokenSigner:
        """The key at ``path``, created there (mode 0600) when absent."""
        path = Path(path)
        if not path.exists():
            try:
                _write_new_key(path)
                log.info("token signing key created at %s", path)
            except FileExistsError:
                pass  # another worker created it first: use theirs
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("token signing key %s is readable by others (mode %o)", path, mode & 0o777)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: the token signing key must be an EC P-256 private key")
        return cls(key, clock=clock)

    def now(self) -> float:
        """The signer's clock (epoch seconds)."""
        return self._clock()

    # -- publication ------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The public JWK set (no private member)."""
        public = self._key.as_dict(private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    # -- tokens -----------------------------------------------------------------------

    def sign(self, claims: Mapping[str, Any], *, typ: str = TOKEN_TYPE) -> str:
        header = {"alg": ALGORITHM, "typ": typ, "kid": self.kid}
        return jwt.encode(header, dict(claims), self._key, algorithms=[ALGORITHM])

    def verify(
        self,
        token: str,
        *,
        issuer: str,
        audience: str,
        leeway: float = DEFAULT_LEEWAY,
        typ: str = TOKEN_TYPE,
    ) -> dict[str, Any]:
        """The claims of a valid token of ours, else :class:`InvalidToken`."""
        obj = self._extract(token)
        header = obj.headers()
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("signature algorithm not allowed")
        if not isinstance(header.get("typ"), str) or header["typ"].lower() != typ:
            raise InvalidToken("not an access token of this operator (typ)")
        if header.get("crit"):
            raise InvalidToken("unsupported critical header")
        if "kid" in header and header["kid"] != self.kid:
            raise InvalidToken("unknown signing key")
        try:
            valid = jws.validate_compact(obj, self._key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidToken("bad signature")
        try:
            claims = json.loads(obj.payload)
        except (ValueError, UnicodeError):
            raise InvalidToken("payload is not JSON") from None
        if not isinstance(claims, dict):
            raise InvalidToken("payload is not a JSON object")
        c.check_issuer(claims, issuer)
        c.check_audience(claims, (audience,))
        c.check_times(claims, self._clock(), leeway)
        return claims

    def is_ours(self, token: str) -> bool:
        """True when the token's header names our key (routing only: nothing is verified)."""
        try:
            return self._extract(token).headers().get("kid") == self.kid
        except InvalidToken:
            return False

    @staticmethod
    def _extract(token: str) -> jws.CompactSignature:
        if not isinstance(token, str) or not token:
            raise InvalidToken("empty token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too large")
        if token.count(".") != 2:
            raise InvalidToken("not a compact JWS")
        try:
            return jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise InvalidToken("malformed JWS") from None
