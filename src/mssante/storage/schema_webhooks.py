"""Tables of webhooks and per-recipient delivery status of the integration API (issue 7).

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0010 creates
them.
"""

from __future__ import annotations

from mssante.storage.schema import UTC_DATETIME, metadata  # noqa: F401
