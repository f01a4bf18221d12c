"""Errors of the identity layer, and the token hash used instead of a token in logs (R17).

Messages never contain a token, an authorization code or a client secret: an exception may be
logged with its traceback by any adapter, so whatever it carries ends up in a log.
"""

from __future__ import annotations

import hashlib

TOKEN_HASH_LENGTH = 16


def token_hash(token: str) -> str:
    """First 16 hex characters of the SHA-256 of ``token``: the only trace a token may leave."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:TOKEN_HASH_LENGTH]


class InvalidToken(Exception):
    """A bearer token was refused.

    ``reason`` is a short English explanation for the logs; ``error`` is the OAuth error code
    (RFC 6750 §3.1 ``invalid_token``/``insufficient_scope``, RFC 9470
    ``insufficient_user_authentication`` when the ``acr`` is not the required one) that SASL
    (RFC 7628 §3.2.2) and HTTP answers carry. ``temporary`` is true when the token could not
    be checked at all (identity provider unreachable): adapters should answer with a temporary
    failure (SMTP 454 4.7.0, IMAP ``NO [UNAVAILABLE]``) rather than an authentication failure.
    """

    def __init__(self, reason: str, error: str = "invalid_token", *, temporary: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.temporary = temporary

    def sasl_failure(self, scope: str) -> dict[str, str]:
        """The JSON object of an RFC 7628 §3.2.2 server error challenge (before base64)."""
        return {"status": self.error, "schemes": "bearer", "scope": scope}


class ProviderUnavailable(InvalidToken):
    """The JWKS, introspection or userinfo endpoint could not be reached or answered badly."""

    def __init__(self, reason: str):
        super().__init__(reason, "temporarily_unavailable", temporary=True)


class LoginFailed(Exception):
    """The authorization-code login could not be completed (relying party side, R61)."""

    def __init__(self, reason: str, error: str = "login_failed"):
        super().__init__(reason)
        self.reason = reason
        self.error = error
