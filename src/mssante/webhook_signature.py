"""Signatures of the webhook calls of the integration API (docs/api.md, "Webhooks").

Dependency-free (standard library only) so that a subscriber can copy this file, and the
SDK (``mssante.client``) re-exports :func:`verify_signature`.

Each call carries three headers::

    MSSante-Webhook-Id: <event id>
    MSSante-Webhook-Timestamp: <unix seconds>
    MSSante-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The signed bytes are the ASCII timestamp, a full stop, then the exact body bytes (RFC 2104
HMAC with SHA-256). A subscriber recomputes the HMAC over the body it received, compares in
constant time, and refuses a timestamp too far from its clock (replay of an old call). The
signature header may hold several ``v1=`` values separated by commas or spaces (secret
rotation): any one that matches is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

ID_HEADER = "MSSante-Webhook-Id"
TIMESTAMP_HEADER = "MSSante-Webhook-Timestamp"
SIGNATURE_HEADER = "MSSante-Webhook-Signature"
SCHEME = "v1"

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signature_headers",
    "verify_signature",
]


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The value of the signature header: ``v1=<hex>``."""
    message = f"{int(timestamp)}.".encode("ascii") + bytes(body)
    return f"{SCHEME}=" + hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signature_headers(
    event_id: str, secret: str | bytes, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers of one webhook call."""
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, stamp, body),
    }


def verify_signature(
    secret: str | bytes,
    timestamp: int | str | None,
    body: bytes,
    header: str | None,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """Whether `header` (the signature header) signs `body` at `timestamp` with `secret`,
    and `timestamp` lies within `tolerance` seconds of `now` (0 disables that check)."""
    if not header or timestamp is None:
        return False
    try:
        stamp = int(str(timestamp).strip())
    except ValueError:
        return False
    if tolerance > 0:
        current = time.time() if now is None else now
        if abs(current - stamp) > tolerance:
            return False
    expected = sign(secret, stamp, body)
    candidates = header.replace(",", " ").split()
    found = False
    for candidate in candidates:
        if candidate.startswith(f"{SCHEME}="):
            # Compare every candidate: the time taken does not tell which one matched.
            found |= hmac.compare_digest(candidate.encode("ascii", "replace"), expected.encode())
    return found
