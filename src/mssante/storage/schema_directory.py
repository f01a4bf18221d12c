"""Tables of the national directory copy (issue 5): snapshots, entries, search index.

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0006 creates
them.
"""

from __future__ import annotations

from mssante.storage.schema import UTC_DATETIME, metadata  # noqa: F401
