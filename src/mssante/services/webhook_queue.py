"""The work queue of webhook calls: ``webhook_deliveries`` rows claimed with a lease.

A worker (`mssante.http.webhook_worker`) claims due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several processes share the queue), never a row while an earlier row of the
same subscription and message is pending: the events of one message arrive in order. A 2xx
answer delivers; anything else is retried with exponential backoff until ``give_up_after``
seconds after the row was created (the event, or its replay), then the row fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from mssante.services.changes import ChangeBus
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema_webhooks import (
    webhook_deliveries,
    webhook_events,
    webhook_subscriptions,
)

log = logging.getLogger("mssante.webhooks")

WAKE = 0  # ChangeBus pseudo-folder id (real folder ids start at 1): "webhook work queued"


@dataclass(frozen=True)
class QueueSettings:
    retry_initial: float = 10.0
    retry_max: float = 3600.0
    give_up_after: float = 86400.0
    lease: float = 120.0


@dataclass(frozen=True)
class Job:
    """One claimed delivery: what the worker sends."""

    delivery_id: int
    subscription_id: str
    url: str
    secret: str
    event_id: str
    payload: bytes
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def _first_in_line() -> ColumnElement[bool]:
    """No earlier pending delivery of the same subscription and message."""
    earlier = aliased(webhook_deliveries)
    return ~exists().where(
        earlier.c.subscription_id == webhook_deliveries.c.subscription_id,
        earlier.c.message_key == webhook_deliveries.c.message_key,
        earlier.c.status == "pending",
        earlier.c.id < webhook_deliveries.c.id,
    )


def _due(now: datetime) -> list[ColumnElement[bool]]:
    return [
        webhook_deliveries.c.status == "pending",
        or_(
            webhook_deliveries.c.locked_until.is_(None),
            webhook_deliveries.c.locked_until < now,
        ),
        _first_in_line(),
    ]


class WebhookQueue:
    def __init__(self, db: Database, box: Any, settings: Any) -> None:
        self.db = db
        self.box = box  # SecretBox: opens the subscription's secret to sign
        self.settings = settings

    def claim(self, worker: str, limit: int) -> list[Job]:
        """Lease due deliveries that are first in line for their (subscription, message)."""
        now = utcnow()
        with self.db.write() as conn:
            due = (
                select(webhook_deliveries.c.id)
                .where(webhook_deliveries.c.next_attempt_at <= now, *_due(now))
                .order_by(webhook_deliveries.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=webhook_deliveries)
            )
            ids = [r.id for r in conn.execute(due)]
            if not ids:
                return []
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id.in_(ids))
                .values(
                    locked_by=worker,
                    locked_until=now + timedelta(seconds=self.settings.lease),
                )
            )
            rows = conn.execute(
                select(
                    webhook_deliveries.c.id,
                    webhook_deliveries.c.attempts,
                    webhook_deliveries.c.created_at,
                    webhook_subscriptions.c.id.label("sub_id"),
                    webhook_subscriptions.c.url,
                    webhook_subscriptions.c.secret,
                    webhook_events.c.id.label("event_id"),
                    webhook_events.c.payload,
                )
                .join(
                    webhook_subscriptions,
                    webhook_subscriptions.c.id == webhook_deliveries.c.subscription_id,
                )
                .join(webhook_events, webhook_events.c.seq == webhook_deliveries.c.event_seq)
                .where(webhook_deliveries.c.id.in_(ids))
                .order_by(webhook_deliveries.c.id)
            ).all()
        jobs = []
        for row in rows:
            try:
                secret = self.box.open(row.secret, row.sub_id)
            except ValueError:
                log.error("webhook %s: secret unreadable (key removed?)", row.sub_id)
                self.complete(worker, row.id, Outcome(False, None, "secret illisible"), final=True)
                continue
            jobs.append(
                Job(
                    delivery_id=int(row.id),
                    subscription_id=row.sub_id,
                    url=row.url,
                    secret=secret,
                    event_id=row.event_id,
                    payload=row.payload.encode("utf-8"),
                    attempts=int(row.attempts),
                    created_at=as_utc(row.created_at) or now,
                )
            )
        return jobs

    def backoff(self, attempts: int) -> float:
        delay = self.settings.retry_initial * (2 ** max(0, attempts - 1))
        return float(min(self.settings.retry_max, delay))

    def complete(
        self, worker: str, delivery_id: int, outcome: Outcome, *, final: bool = False
    ) -> str:
        """Record one attempt; returns the delivery's new status."""
        now = utcnow()
        with self.db.write() as conn:
            row = conn.execute(
                select(webhook_deliveries.c.attempts, webhook_deliveries.c.created_at).where(
                    webhook_deliveries.c.id == delivery_id,
                    webhook_deliveries.c.status == "pending",
                    webhook_deliveries.c.locked_by == worker,
                )
            ).first()
            if row is None:  # lease lost (another worker took it over), or deleted
                return "lost"
            attempts = int(row.attempts) + 1
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_status_code": outcome.status_code,
                "last_error": (outcome.error or None) and str(outcome.error)[:500],
                "locked_by": None,
                "locked_until": None,
            }
            created = as_utc(row.created_at) or now
            deadline = created + timedelta(seconds=self.settings.give_up_after)
            if outcome.delivered:
                values.update(status="delivered", delivered_at=now, next_attempt_at=None)
            elif final or now >= deadline:
                values.update(status="failed", next_attempt_at=None)
            else:
                retry_at = now + timedelta(seconds=self.backoff(attempts))
                values.update(next_attempt_at=min(retry_at, max(deadline, now)))
            conn.execute(
                update(webhook_deliveries)
                .where(
                    and_(
                        webhook_deliveries.c.id == delivery_id,
                        webhook_deliveries.c.locked_by == worker,
                    )
                )
                .values(**values)
            )
            if values.get("status") in ("delivered", "failed"):
                ChangeBus.touched(conn, WAKE)  # the next event of the message may go
            return str(values.get("status", "pending"))

    def next_due(self) -> datetime | None:
        """When the earliest delivery first in line for its message is due (None: none)."""
        with self.db.read() as conn:
            value = conn.execute(
                select(func.min(webhook_deliveries.c.next_attempt_at)).where(*_due(utcnow()))
            ).scalar_one()
        return as_utc(value)
