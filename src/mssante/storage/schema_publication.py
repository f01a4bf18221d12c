"""Tables of the publication of our BALs to the national directory (issue 5 item 4).

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0009 creates
them.
"""

from __future__ import annotations

from mssante.storage.schema import UTC_DATETIME, metadata  # noqa: F401
