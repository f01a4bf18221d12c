"""Tables of the publication of our BALs to the national directory (issue 5 item 4).

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0009 creates
them. ``directory_outbox`` holds one FHIR Patch per BAL change (SPEC §4.2, R48), written in
the transaction of the change and sent later, in ``id`` order per address.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from mssante.storage.schema import UTC_DATETIME, metadata

directory_outbox = Table(
    "directory_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(320), nullable=False),
    Column("operation", String(16), nullable=False),  # insert | replace | delete | full
    Column("resource_type", String(32), nullable=False),  # Practitioner | Organization
    Column("identifier_system", String(100), nullable=False),
    Column("identifier_value", String(64), nullable=False),
    Column("patch", Text, nullable=False),  # the Parameters resource, JSON
    Column("state", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTC_DATETIME, nullable=False),
    Column("last_status", Integer, nullable=True),  # HTTP status of the last attempt
    Column("last_error", String(500), nullable=True),
    Column("created_at", UTC_DATETIME, nullable=False),
    Column("sent_at", UTC_DATETIME, nullable=True),
    Index("ix_directory_outbox_state_next_attempt_at", "state", "next_attempt_at"),
    Index("ix_directory_outbox_address", "address"),
)
