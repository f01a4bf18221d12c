"""Trace events (R63): one append-only row per step, in the transaction of the change.

A trace never holds a message body, a password, a token or health data: only who, when,
what, with whom, the Message-ID, the size and the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from mssante.storage.database import as_utc, utcnow
from mssante.storage.schema import trace_events


def _clip(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.replace("\r", " ").replace("\n", " ")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def event(
    action: str,
    outcome: str = "ok",
    *,
    mailbox: str | None = None,
    actor: str | None = None,
    peer: str | None = None,
    message_id: str | None = None,
    size: int | None = None,
    envelope_id: int | None = None,
    detail: str | None = None,
    at: datetime | None = None,
) -> dict[str, object]:
    """One trace row, ready for `write` (clipped, on one line)."""
    return {
        "at": at or utcnow(),
        "action": action,
        "outcome": outcome,
        "mailbox": _clip(mailbox, 320),
        "actor": _clip(actor, 320),
        "peer": _clip(peer, 255),
        "message_id": _clip(message_id, 998),
        "size": size,
        "envelope_id": envelope_id,
        "detail": _clip(detail, 500),
    }


_INSERT = insert(trace_events)


def write(conn: Connection, rows: list[dict[str, object]]) -> None:
    """Insert several events at once (one statement, executemany) in the caller's transaction."""
    if rows:
        conn.execute(_INSERT, rows)


def record(conn: Connection, action: str, outcome: str = "ok", **fields: Any) -> None:
    """Insert one event in the caller's transaction (see `event` for the fields)."""
    conn.execute(_INSERT, [event(action, outcome, **fields)])


@dataclass(frozen=True)
class TraceEvent:
    at: datetime
    action: str
    outcome: str
    mailbox: str | None
    actor: str | None
    peer: str | None
    message_id: str | None
    size: int | None
    envelope_id: int | None
    detail: str | None


def list_events(
    conn: Connection, *, mailbox: str | None = None, action: str | None = None, limit: int = 100
) -> list[TraceEvent]:
    query = select(trace_events).order_by(trace_events.c.id.desc()).limit(limit)
    if mailbox:
        query = query.where(trace_events.c.mailbox == mailbox)
    if action:
        query = query.where(trace_events.c.action == action)
    out = []
    for row in conn.execute(query):
        out.append(
            TraceEvent(
                at=as_utc(row.at) or utcnow(),
                action=row.action,
                outcome=row.outcome,
                mailbox=row.mailbox,
                actor=row.actor,
                peer=row.peer,
                message_id=row.message_id,
                size=row.size,
                envelope_id=row.envelope_id,
                detail=row.detail,
            )
        )
    return out
