"""Tables of the HTTP API for software (issue 7): idempotency keys.

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0007 creates
them.

``api_idempotency``: one row per ``Idempotency-Key`` a mailbox used on a send. The row is
inserted in the transaction that records the envelope (`DeliveryService.accept`), so a key is
known if and only if its message was accepted, also across a crash or restart. The answer
JSON is replayed as is to a retry with the same key and the same request digest.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text, UniqueConstraint

from mssante.storage.schema import UTC_DATETIME, metadata

api_idempotency = Table(
    "api_idempotency",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox", String(320), nullable=False),  # the sending BAL, normalised
    Column("key", String(255), nullable=False),  # the Idempotency-Key header value
    Column("request_digest", String(64), nullable=False),  # SHA-256 of the canonical request
    Column("queue_id", String(32), nullable=False, index=True),  # envelopes.queue_id
    Column("status_code", Integer, nullable=False),
    Column("answer", Text, nullable=False),  # the JSON body first answered
    Column("created_at", UTC_DATETIME, nullable=False),
    Column("expires_at", UTC_DATETIME, nullable=False),
    UniqueConstraint("mailbox", "key", name="uq_api_idempotency_mailbox_key"),
    Index("ix_api_idempotency_expires_at", "expires_at"),
)
