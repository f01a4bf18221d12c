"""The outbound queue: claim due deliveries, record each attempt, report (RFC 3461/3464).

The queue is the `deliveries` table. A worker claims due rows with a lease (`locked_until`)
so that several processes, on several machines sharing one PostgreSQL, never relay the same
row at once (`FOR UPDATE SKIP LOCKED`); a worker that dies loses its lease and the rows come
back. Retries back off exponentially up to the queue lifetime; a delayed DSN goes out once
after `delay_warning`, and a failure DSN on permanent failure or expiry (R23, R24).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, or_, select, update

from mssante.formats.dsn import RecipientStatus
from mssante.services import delivery_status, traces
from mssante.services.delivery import DeliveryService, wants
from mssante.services.delivery_status import StatusChange
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import deliveries, envelopes


@dataclass(frozen=True)
class QueueSettings:
    queue_lifetime: int = 5 * 86400
    delay_warning: int = 4 * 3600
    retry_initial: int = 60
    retry_max: int = 3600
    lease: int = 600


@dataclass(frozen=True)
class QueuedRecipient:
    delivery_id: int
    address: str
    notify: str | None
    orcpt: str | None
    attempts: int


@dataclass(frozen=True)
class RelayJob:
    """The recipients of one envelope at one domain: one SMTP transaction."""

    envelope_id: int
    queue_id: str
    domain: str
    mail_from: str
    envid: str | None
    ret: str | None
    body_type: str | None
    smtputf8: bool
    blob_digest: str
    message_id: str | None
    received_at: datetime
    recipients: tuple[QueuedRecipient, ...]


@dataclass(frozen=True)
class AttemptResult:
    """The outcome for one recipient: an SMTP reply code, or 0 for no reply at all."""

    code: int
    text: str
    remote_mta: str | None = None
    enhanced: str | None = None
    peer_supports_dsn: bool = True

    @property
    def success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        """A 5xx reply, or no reply but a permanent status (a domain that left the white
        list, NXDOMAIN, null MX: RFC 3463 class 5)."""
        if self.code == 0:
            return (self.enhanced or "").startswith("5.")
        return 500 <= self.code < 600

    def status(self) -> str:
        if self.enhanced:
            return self.enhanced
        return {2: "2.0.0", 5: "5.0.0"}.get(self.code // 100, "4.0.0")


@dataclass
class _Reports:
    failed: list[RecipientStatus] = field(default_factory=list)
    delayed: list[RecipientStatus] = field(default_factory=list)
    relayed: list[RecipientStatus] = field(default_factory=list)


class QueueService:
    def __init__(self, db: Database, delivery: DeliveryService, settings: QueueSettings) -> None:
        self.db = db
        self.delivery = delivery
        self.settings = settings

    def backoff(self, attempts: int) -> int:
        base = self.settings.retry_initial * (2 ** max(0, attempts - 1))
        delay = min(self.settings.retry_max, base)
        return max(1, int(delay * random.uniform(0.9, 1.1)))

    def claim(self, worker: str, limit: int = 50) -> list[RelayJob]:
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.lease)
        with self.db.write() as conn:
            due = (
                select(deliveries.c.id)
                .where(
                    deliveries.c.status == "queued",
                    deliveries.c.next_attempt_at <= now,
                    or_(deliveries.c.locked_until.is_(None), deliveries.c.locked_until < now),
                )
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = [r.id for r in conn.execute(due)]
            if not ids:
                return []
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids))
                .values(locked_by=worker, locked_until=lease_until)
            )
            rows = conn.execute(
                select(deliveries, envelopes)
                .join(envelopes, envelopes.c.id == deliveries.c.envelope_id)
                .where(deliveries.c.id.in_(ids))
                .order_by(deliveries.c.envelope_id, deliveries.c.domain, deliveries.c.id)
            ).all()
        jobs: dict[tuple[int, str], list[object]] = {}
        for row in rows:
            jobs.setdefault((row.envelope_id, row.domain), []).append(row)
        out = []
        for (envelope_id, domain), group in jobs.items():
            first = group[0]
            out.append(
                RelayJob(
                    envelope_id=envelope_id,
                    queue_id=first.queue_id,  # type: ignore[attr-defined]
                    domain=domain,
                    mail_from=first.mail_from,  # type: ignore[attr-defined]
                    envid=first.envid,  # type: ignore[attr-defined]
                    ret=first.ret,  # type: ignore[attr-defined]
                    body_type=first.body_type,  # type: ignore[attr-defined]
                    smtputf8=bool(first.smtputf8),  # type: ignore[attr-defined]
                    blob_digest=first.blob_digest,  # type: ignore[attr-defined]
                    message_id=first.message_id,  # type: ignore[attr-defined]
                    received_at=as_utc(first.received_at) or now,  # type: ignore[attr-defined]
                    recipients=tuple(
                        QueuedRecipient(
                            delivery_id=r.id,  # type: ignore[attr-defined]
                            address=r.recipient,  # type: ignore[attr-defined]
                            notify=r.notify,  # type: ignore[attr-defined]
                            orcpt=r.orcpt,  # type: ignore[attr-defined]
                            attempts=r.attempts,  # type: ignore[attr-defined]
                        )
                        for r in group
                    ),
                )
            )
        return out

    def complete(self, job: RelayJob, results: dict[int, AttemptResult]) -> None:
        """Record the outcome of one attempt for every recipient of the job."""
        now = utcnow()
        reports = _Reports()
        changes: list[StatusChange] = []  # issue 7: per-recipient status of the sender's API
        with self.db.write() as conn:
            for rcpt in job.recipients:
                result = results.get(rcpt.delivery_id) or AttemptResult(0, "no result")
                row = conn.execute(
                    select(deliveries).where(deliveries.c.id == rcpt.delivery_id)
                ).one()
                expires_at = as_utc(row.expires_at) or now
                base = {"locked_by": None, "locked_until": None, "updated_at": now}
                diagnostic = f"smtp; {result.code} {result.text}" if result.code else result.text
                status = RecipientStatus(
                    final_recipient=rcpt.address,
                    action="failed",
                    status=result.status(),
                    original_recipient=rcpt.orcpt,
                    remote_mta=f"dns; {result.remote_mta}" if result.remote_mta else None,
                    diagnostic_code=diagnostic[:900],
                    last_attempt=now,
                )
                if result.success:
                    self._set(conn, rcpt.delivery_id, status="relayed", remote=result, **base)
                    changes.append(StatusChange(rcpt.delivery_id, "relayed"))
                    traces.record(
                        conn,
                        "delivery.relayed",
                        mailbox=rcpt.address,
                        peer=result.remote_mta,
                        message_id=job.message_id,
                        envelope_id=job.envelope_id,
                        detail=f"{result.code} {result.text}"[:200],
                    )
                    # RFC 3461 §5.2.2: the next hop cannot report success itself.
                    if not result.peer_supports_dsn and wants(rcpt.notify, "SUCCESS"):
                        reports.relayed.append(_replace(status, action="relayed", status="2.0.0"))
                    continue
                expired = now >= expires_at
                if result.permanent or expired:
                    if expired and not result.permanent:
                        status = _replace(status, status="4.4.7")
                    self._set(
                        conn,
                        rcpt.delivery_id,
                        status="failed",
                        remote=result,
                        last_error=diagnostic[:2000],
                        **base,
                    )
                    changes.append(
                        StatusChange(rcpt.delivery_id, "failed", diagnostic, status.status)
                    )
                    traces.record(
                        conn,
                        "delivery.bounced",
                        "failed",
                        mailbox=rcpt.address,
                        peer=result.remote_mta,
                        message_id=job.message_id,
                        envelope_id=job.envelope_id,
                        detail=("expired: " if expired else "") + diagnostic[:300],
                    )
                    if wants(rcpt.notify, "FAILURE"):
                        reports.failed.append(status)
                    continue
                attempts = row.attempts + 1
                next_at = min(expires_at, now + timedelta(seconds=self.backoff(attempts)))
                values: dict[str, object] = {
                    "attempts": attempts,
                    "next_attempt_at": next_at,
                    "last_error": diagnostic[:2000],
                    **base,
                }
                waited = (now - job.received_at).total_seconds()
                if (
                    not row.delay_notified
                    and waited >= self.settings.delay_warning
                    and wants(rcpt.notify, "DELAY")
                ):
                    values["delay_notified"] = True
                    reports.delayed.append(
                        _replace(status, action="delayed", will_retry_until=expires_at)
                    )
                self._set(conn, rcpt.delivery_id, remote=result, **values)
                traces.record(
                    conn,
                    "delivery.deferred",
                    "failed",
                    mailbox=rcpt.address,
                    peer=result.remote_mta,
                    message_id=job.message_id,
                    envelope_id=job.envelope_id,
                    detail=diagnostic[:300],
                )
            if job.mail_from:  # never report on a report (RFC 3461 §6.2)
                original = None
                for statuses in (reports.failed, reports.delayed, reports.relayed):
                    if statuses:
                        original = original or self.delivery.blobs.get(job.blob_digest)
                        self.delivery.send_dsn(
                            conn,
                            job.envelope_id,
                            job.mail_from,
                            statuses,
                            original,
                            job.ret,
                            job.envid,
                        )
                # After the DSNs: rows are locked in the order acceptance uses (folders first).
                delivery_status.apply(conn, job.envelope_id, changes)

    @staticmethod
    def _set(
        conn: Connection, delivery_id: int, *, remote: AttemptResult, **values: object
    ) -> None:
        if remote.remote_mta:
            values["remote_mta"] = remote.remote_mta[:255]
        conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))

    def release(self, job: RelayJob) -> None:
        """Give back a claimed job untouched (shutdown)."""
        with self.db.write() as conn:
            conn.execute(
                update(deliveries)
                .where(
                    and_(
                        deliveries.c.id.in_([r.delivery_id for r in job.recipients]),
                        deliveries.c.status == "queued",
                    )
                )
                .values(locked_by=None, locked_until=None)
            )

    def pending(self) -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(deliveries.c.status == "queued")
                ).scalar_one()
            )


def _replace(original: RecipientStatus, **changes: object) -> RecipientStatus:
    return replace(original, **changes)  # type: ignore[arg-type]
