"""Tables of webhooks and per-recipient delivery status of the integration API (issue 7).

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0010 creates
them.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
)

from mssante.storage.schema import UTC_DATETIME, envelopes, metadata

# The reported status of one recipient of a message sent from one of our BALs, beyond what
# the queue knows (`deliveries.status`): relay results, DSNs (RFC 3464) and MDNs (RFC 8098)
# that came back. `rank` orders the statuses so a report never moves one backwards
# (services/delivery_status.py).
recipient_status = Table(
    "recipient_status",
    metadata,
    Column("delivery_id", Integer, ForeignKey("deliveries.id"), primary_key=True),
    Column("envelope_id", Integer, ForeignKey("envelopes.id"), nullable=False, index=True),
    Column("status", String(24), nullable=False),
    Column("rank", SmallInteger, nullable=False),
    Column("reason", String(1000), nullable=True),
    Column("code", String(16), nullable=True),
    Column("updated_at", UTC_DATETIME, nullable=False),
)

# Reports (DSN, MDN) find the message they speak of by its Message-ID.
Index("ix_envelopes_message_id", envelopes.c.message_id)

# Webhook subscriptions of one BAL. `secret` is sealed (AES-256-GCM, a key derived from the
# blob keyring's active key): it is needed to sign, so it cannot be hashed.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("mailbox", String(320), nullable=False, index=True),
    Column("url", String(2000), nullable=False),
    Column("events", String(200), nullable=False),  # comma list of event types
    Column("secret", Text, nullable=False),  # "<key id>:<base64 nonce+ciphertext>"
    Column("created_at", UTC_DATETIME, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_by", String(320), nullable=True),
)

# Events, written in the transaction of the change they describe; one per change and BAL.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("mailbox", String(320), nullable=False, index=True),
    Column("type", String(32), nullable=False),
    Column("message_key", String(255), nullable=False),
    Column("payload", Text, nullable=False),  # the exact JSON body sent
    Column("created_at", UTC_DATETIME, nullable=False),
)

# One row per (subscription, event) and per replay: the delivery log and the work queue.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "subscription_id",
        String(36),
        ForeignKey("webhook_subscriptions.id"),
        nullable=False,
        index=True,
    ),
    Column("event_seq", Integer, ForeignKey("webhook_events.seq"), nullable=False, index=True),
    Column("message_key", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTC_DATETIME, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", UTC_DATETIME, nullable=False),
    Column("delivered_at", UTC_DATETIME, nullable=True),
    Column("locked_by", String(64), nullable=True),
    Column("locked_until", UTC_DATETIME, nullable=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_order", "subscription_id", "message_key", "status", "id"),
)
