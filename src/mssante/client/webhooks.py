"""Checking the webhook calls an operator makes to a subscriber (docs/api.md, "Webhooks").

Every call is signed with the subscription's secret: ``MSSante-Webhook-Signature:
v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`` with ``MSSante-Webhook-Timestamp``.
Verify the exact body bytes received, before parsing them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mssante.client.errors import ClientError
from mssante.client.models import WebhookEvent
from mssante.webhook_signature import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "InvalidSignature",
    "parse_webhook",
    "verify_signature",
    "verify_webhook",
]


class InvalidSignature(ClientError):
    """A webhook call whose signature does not verify (or whose timestamp is too old)."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter is not None else None
    if value is not None:
        return str(value)
    wanted = name.lower()
    for key, found in headers.items():
        if key.lower() == wanted:
            return str(found)
    return None


def verify_webhook(
    secret: str | bytes, headers: Mapping[str, str], body: bytes, *, tolerance: int = 300
) -> bool:
    """Whether ``body`` with these request ``headers`` was signed with ``secret`` within the
    last ``tolerance`` seconds (0: no clock check). ``headers`` may be any mapping (a plain
    dict is looked up without regard to case)."""
    return verify_signature(
        secret,
        _header(headers, TIMESTAMP_HEADER),
        body,
        _header(headers, SIGNATURE_HEADER),
        tolerance=tolerance,
    )


def parse_webhook(
    secret: str | bytes, headers: Mapping[str, str], body: bytes, *, tolerance: int = 300
) -> WebhookEvent:
    """The event of a verified webhook call; :class:`InvalidSignature` otherwise."""
    if not verify_webhook(secret, headers, body, tolerance=tolerance):
        raise InvalidSignature("signature du webhook invalide ou horodatage trop ancien")
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidSignature("corps du webhook illisible (JSON attendu)") from None
    if not isinstance(data, dict):
        raise InvalidSignature("corps du webhook illisible (objet JSON attendu)")
    return WebhookEvent.from_json(data)
