"""Tables of the HTTP API for software (issue 7): idempotency keys, delivery status,
webhook subscriptions and their delivery log.

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0007 creates
them.
"""

from __future__ import annotations

from mssante.storage.schema import UTC_DATETIME, metadata  # noqa: F401
