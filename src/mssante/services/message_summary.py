"""The ``MessageSummary`` of the integration API (docs/api.md) for webhook events.

The ``message.received`` event carries the same object as ``GET …/messages`` lists: the
same opaque id (`mssante.services.api_messages.encode_id`, base64url of
``<folder id>.<uid>``) and the same header view (`mssante.formats.message_view`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, exists, select

from mssante.formats import message_view
from mssante.storage.database import as_utc
from mssante.storage.schema import documents, folders


def rfc3339(moment: datetime | None) -> str | None:
    """UTC, second precision, ``Z`` suffix (RFC 3339 §5.6)."""
    if moment is None:
        return None
    moment = as_utc(moment) or moment
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message_summary(
    conn: Connection, message_row: Any, raw: bytes, folder_name: str | None = None
) -> dict[str, Any]:
    """``MessageSummary`` of one ``messages`` row whose content is `raw`.

    ``seen`` reflects the stored flags (the per-user ``\\Seen`` of shared BALs belongs to
    each reader, not to an event of the BAL).
    """
    # Imported here: api_messages imports the delivery service, which imports this module.
    from mssante.services.api_messages import encode_id

    if folder_name is None:
        folder_name = conn.execute(
            select(folders.c.name).where(folders.c.id == message_row.folder_id)
        ).scalar_one()
    view = message_view.view(raw, with_bodies=False)
    flags = sorted(f for f in str(message_row.flags or "").split(" ") if f)
    indexed = conn.execute(
        select(exists().where(documents.c.message_id == message_row.id))
    ).scalar_one()
    return {
        "id": encode_id(int(message_row.folder_id), int(message_row.uid)),
        "folder": folder_name,
        "message_id": view.message_id or message_row.message_id,
        "from": view.sender,
        "to": list(view.to),
        "cc": list(view.cc),
        "subject": view.subject,
        "date": rfc3339(view.date),
        "received_at": rfc3339(message_row.internal_date),
        "size": int(message_row.size),
        "flags": flags,
        "seen": "\\Seen" in flags,
        "has_documents": bool(indexed) or view.has_xdm,
        "attachments_count": len(view.attachments),
    }
