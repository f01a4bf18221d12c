"""JWS verification against the provider's JWKS, with a cache that an attacker cannot drain.

The JWKS is fetched from ``jwks_uri`` and kept for ``ttl`` seconds. A token signed with an
unknown ``kid`` (the provider rotated its key) triggers one more fetch, but never more than one
per ``min_refresh_interval`` seconds: a stream of forged ``kid`` values costs one request per
interval, not one per token. When a refresh fails, the keys already held are kept.

Only RS256, PS256 and ES256 are accepted: ``none``, the HMAC algorithms (where a public key
could be misused as a shared secret) and everything else are refused before any key is used.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, RSAKey

from mssante.identity.errors import InvalidToken, ProviderUnavailable

log = logging.getLogger("mssante.identity.jwks")

ALLOWED_ALGORITHMS: tuple[str, ...] = ("RS256", "PS256", "ES256")
MAX_TOKEN_LENGTH = 16 * 1024
MIN_RSA_BITS = 2048
_KEY_TYPES: dict[str, type[RSAKey] | type[ECKey]] = {
    "RS256": RSAKey,
    "PS256": RSAKey,
    "ES256": ECKey,
}


def _import_keys(document: Any) -> list[Key]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: list[Key] = []
    for data in document["keys"]:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        if data.get("kty") not in ("RSA", "EC"):
            continue
        try:
            key = JWKRegistry.import_key(data)
        except (JoseError, ValueError, TypeError):
            log.warning("JWKS: skipping a key that cannot be imported (kid=%r)", data.get("kid"))
            continue
        if isinstance(key, RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
            log.warning("JWKS: skipping a short RSA key (kid=%r)", data.get("kid"))
            continue
        keys.append(key)
    return keys


def _usable(key: Key, alg: str) -> bool:
    if not isinstance(key, _KEY_TYPES[alg]):
        return False
    if isinstance(key, ECKey) and key.curve_name != "P-256":
        return False
    return key.alg in (None, alg)


class JwksCache:
    """The provider's signing keys, fetched on demand. Thread-safe; fetching blocks.

    ``clock`` returns seconds (monotonic or not); tests pass a fake one.
    """

    def __init__(
        self,
        jwks_uri: str,
        *,
        http: httpx.Client | None = None,
        ttl: float = 3600.0,
        min_refresh_interval: float = 10.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_uri = jwks_uri
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._http = http or httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: list[Key] | None = None
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self.fetch_count = 0

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def refresh(self) -> bool:
        """Fetch the JWKS now (e.g. at startup), whatever the rate limit. True on success."""
        with self._lock:
            return self._fetch(self._clock())

    def _may_fetch(self, now: float) -> bool:
        last = self._last_attempt
        return last is None or now - last >= self.min_refresh_interval

    def _fetch(self, now: float) -> bool:
        self._last_attempt = now
        self.fetch_count += 1
        try:
            response = self._http.get(self.jwks_uri, headers={"Accept": "application/json"})
            response.raise_for_status()
            keys = _import_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("JWKS fetch from %s failed: %s", self.jwks_uri, type(exc).__name__)
            return False
        self._keys = keys
        self._fetched_at = now
        log.info("JWKS fetched from %s: %d signing key(s)", self.jwks_uri, len(keys))
        return True

    def keys_for(self, kid: str | None, alg: str) -> list[Key]:
        """Keys that may have signed a token with this header; fetches when needed."""
        with self._lock:
            now = self._clock()
            stale = self._keys is None or now - self._fetched_at >= self.ttl
            if stale and self._may_fetch(now):
                self._fetch(now)
            if self._keys is None:
                raise ProviderUnavailable("the identity provider's JWKS could not be fetched")
            found = self._match(kid, alg)
            if not found and self._may_fetch(now):
                log.info("JWKS: no key for kid=%r, fetching the key set again", (kid or "")[:64])
                self._fetch(now)
                found = self._match(kid, alg)
            return found

    def _match(self, kid: str | None, alg: str) -> list[Key]:
        keys = self._keys or []
        return [k for k in keys if (kid is None or k.kid == kid) and _usable(k, alg)]


def _segments(token: str) -> jws.CompactSignature:
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


def verify_jws(
    token: str, cache: JwksCache, algorithms: Sequence[str] = ALLOWED_ALGORITHMS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the signature of a compact JWS; return its (header, claims). Claims not checked."""
    obj = _segments(token)
    header = obj.headers()
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in _KEY_TYPES:
        raise InvalidToken("signature algorithm not allowed")
    if header.get("crit"):
        raise InvalidToken("unsupported critical header")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("malformed kid")
    candidates = cache.keys_for(kid, alg)
    if not candidates:
        raise InvalidToken("unknown signing key")
    for key in candidates[:4]:
        try:
            if jws.validate_compact(obj, key, algorithms=[alg]):
                break
        except (JoseError, ValueError, TypeError):
            continue
    else:
        raise InvalidToken("bad signature")
    try:
        claims = json.loads(obj.payload)
    except (ValueError, UnicodeError):
        raise InvalidToken("payload is not JSON") from None
    if not isinstance(claims, dict):
        raise InvalidToken("payload is not a JSON object")
    return dict(header), claims
