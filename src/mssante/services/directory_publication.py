"""Publication of our own BALs to the national directory (SPEC §4.2, R48, R49).

Every create, change or close of a BAL writes one FHIR Patch (:mod:`mssante.formats.fhir_patch`)
to ``directory_outbox`` in the transaction of the change (the hook
:meth:`PublicationService.record`, installed on :class:`MailboxService` by ``runtime.py``
only when ``[directory] publish_url`` is set: an operator that does not publish records
nothing, and ``mssante annuaire publish --all`` queues the full state once it does).

:meth:`PublicationService.publish_pending` sends the rows in ``id`` order per address (a
later change never overtakes an earlier one): network errors, 408, 429 and 5xx are retried
with exponential backoff until ``lifetime``; 404 (no holder), 412 (several holders) and any
other 4xx are final (R48): the row is ``failed``, reported and traced. Several processes
may publish at once: a row is claimed by a conditional UPDATE on its ``attempts``.

Lifecycle mapping: create → insert; change of a published field → replace of the whole
ContactPoint; close → delete. Suspension publishes nothing: it is temporary (mail gets
4.2.1), the address stays the right one to find, and Ref#1 makes suspension rules
recommendations only (SPEC §3); a closed BAL is deleted for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy import Connection, func, insert, select, update

from mssante.domain.directory import DirectoryEntry
from mssante.domain.errors import RuleViolation
from mssante.domain.mailboxes import MailboxStatus
from mssante.formats.fhir_patch import FHIR_JSON, PatchTarget, build_patch, target_for
from mssante.services import traces
from mssante.services.mailboxes import Mailbox
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import mailboxes
from mssante.storage.schema_publication import directory_outbox

log = logging.getLogger("mssante.directory.publication")

FINAL_STATUSES = {404: "porteur inconnu (404)", 412: "plusieurs porteurs (412)"}
RETRY_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class PublicationSettings:
    publish_url: str = ""
    api_key: str = ""
    ca_file: Path | None = None
    retry_initial: float = 30.0  # seconds before the 2nd attempt, doubled each time
    retry_max: float = 3600.0
    lifetime: float = 3 * 86400.0  # a change not accepted within this is failed
    timeout: float = 30.0
    lease: float = 120.0  # a claimed row is retried after this if its sender died

    @property
    def enabled(self) -> bool:
        return bool(self.publish_url)


@dataclass(frozen=True)
class PatchResponse:
    status: int
    body: str = ""


class PublishNetworkError(Exception):
    """The request did not get an HTTP answer (retried)."""


class PatchClient(Protocol):
    def patch(self, url: str, params: dict[str, Any]) -> PatchResponse: ...


class HttpPatchClient:
    """``PATCH`` with ``application/fhir+json`` and the ``ESANTE-API-KEY`` header (SPEC §4.1)."""

    def __init__(self, settings: PublicationSettings) -> None:
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            ctx = ssl.create_default_context(cafile=str(settings.ca_file))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            verify = ctx
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        if settings.api_key:
            headers["ESANTE-API-KEY"] = settings.api_key
        self._client = httpx.Client(verify=verify, timeout=settings.timeout, headers=headers)

    def patch(self, url: str, params: dict[str, Any]) -> PatchResponse:
        try:
            response = self._client.patch(url, content=json.dumps(params).encode("utf-8"))
        except httpx.HTTPError as exc:  # transport errors, timeouts
            raise PublishNetworkError(type(exc).__name__) from exc
        return PatchResponse(response.status_code, response.text[:4000])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpPatchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class PublishResult:
    id: int
    address: str
    operation: str
    target: str  # "Practitioner?identifier=…"
    status: int | None  # HTTP status, None on a network error
    outcome: str  # sent | retry | failed
    error: str = ""


@dataclass
class PublishReport:
    results: list[PublishResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def retrying(self) -> int:
        return self.count("retry")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    address: str
    operation: str
    target: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime


def mailbox_entry(box: Mailbox) -> DirectoryEntry:
    """What a BAL of ours publishes: the ContactPoint fields and its holder's identifier."""
    return DirectoryEntry(
        bal_type=box.type.value,
        address=box.address,
        id_nat_ps=box.id_nat_ps or "",
        id_struct=box.id_nat_struct or "",
        list_rouge=box.list_rouge,
        description=box.description or "",
        service=box.service or "",
        responsible=box.responsible or "",
        rank=box.rank,
    )


def _target_text(target: PatchTarget) -> str:
    return f"{target.resource_type}?identifier={target.identifier}"


def _problem_text(body: str) -> str:
    """The ``OperationOutcome`` issue text of an error answer, else the start of the body."""
    with contextlib.suppress(ValueError, AttributeError, TypeError, IndexError):
        issue = json.loads(body)["issue"][0]
        text = (issue.get("details") or {}).get("text") or issue.get("diagnostics")
        if text:
            return str(text)[:300]
    return " ".join(body.split())[:300]


class PublicationService:
    def __init__(self, db: Database, settings: PublicationSettings) -> None:
        self.db = db
        self.settings = settings

    # -- recording (in the caller's transaction) -------------------------------------

    def record(self, conn: Connection, box: Mailbox, operation: str) -> None:
        """Queue the patch of one BAL change; nothing when publication is not configured."""
        if self.settings.enabled:
            self._enqueue(conn, box, operation)

    def _enqueue(self, conn: Connection, box: Mailbox, operation: str) -> None:
        entry = mailbox_entry(box)
        target = target_for(entry.bal_type, entry.id_nat_ps or None, entry.id_struct or None)
        patch = build_patch(operation, target.resource_type, entry)
        now = utcnow()
        conn.execute(
            insert(directory_outbox).values(
                address=box.address,
                operation=operation,
                resource_type=target.resource_type,
                identifier_system=target.system,
                identifier_value=target.value,
                patch=json.dumps(patch, ensure_ascii=False, separators=(",", ":")),
                state="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )

    def queue_all(self, *, actor: str = "cli") -> int:
        """``publish --all``: the full state (delete + insert) of every BAL not closed."""
        if not self.settings.enabled:
            raise RuleViolation("directory.publish_url is not set: publication is off")
        count = 0
        with self.db.write() as conn:
            rows = conn.execute(
                select(mailboxes)
                .where(mailboxes.c.status != MailboxStatus.CLOSED.value)
                .order_by(mailboxes.c.id)
            ).all()
            for row in rows:
                self._enqueue(conn, Mailbox.from_row(row), "full")
                count += 1
            traces.record(conn, "directory.publish.queue_all", actor=actor, detail=str(count))
        return count

    def requeue_failed(self, *, actor: str = "cli") -> int:
        """Send the failed rows again (after the holder was fixed, or the key renewed)."""
        with self.db.write() as conn:
            result = conn.execute(
                update(directory_outbox)
                .where(directory_outbox.c.state == "failed")
                .values(state="pending", next_attempt_at=utcnow(), created_at=utcnow())
            )
            traces.record(
                conn, "directory.publish.requeue", actor=actor, detail=str(result.rowcount)
            )
            return int(result.rowcount)

    def pending_count(self) -> int:
        with self.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(directory_outbox)
                    .where(directory_outbox.c.state == "pending")
                ).scalar_one()
            )

    def list_outbox(self, *, state: str | None = None, limit: int = 100) -> list[OutboxRow]:
        query = select(directory_outbox).order_by(directory_outbox.c.id.desc()).limit(limit)
        if state:
            query = query.where(directory_outbox.c.state == state)
        with self.db.read() as conn:
            return [
                OutboxRow(
                    id=r.id,
                    address=r.address,
                    operation=r.operation,
                    target=f"{r.resource_type}?identifier={r.identifier_system}|"
                    f"{r.identifier_value}",
                    state=r.state,
                    attempts=r.attempts,
                    last_status=r.last_status,
                    last_error=r.last_error,
                    created_at=as_utc(r.created_at) or utcnow(),
                )
                for r in conn.execute(query)
            ]

    # -- sending ---------------------------------------------------------------------

    def client(self) -> HttpPatchClient:
        return HttpPatchClient(self.settings)

    def publish_pending(
        self, client: PatchClient, *, now: datetime | None = None, limit: int = 500
    ) -> PublishReport:
        """Send the due rows once each, in order per address; see the module docstring."""
        report = PublishReport()
        now = now or utcnow()
        with self.db.read() as conn:
            rows = conn.execute(
                select(directory_outbox)
                .where(directory_outbox.c.state == "pending")
                .order_by(directory_outbox.c.id)
                .limit(limit)
            ).all()
        blocked: set[str] = set()
        for row in rows:
            if row.address in blocked:
                continue
            blocked.add(row.address)  # unblocked below only when this row is done
            due = as_utc(row.next_attempt_at)
            if (due is not None and due > now) or not self._claim(row.id, row.attempts, now):
                continue
            result = self._send(client, row, now)
            report.results.append(result)
            if result.outcome != "retry":
                blocked.discard(row.address)
        return report

    def _claim(self, row_id: int, attempts: int, now: datetime) -> bool:
        with self.db.write() as conn:
            claimed = conn.execute(
                update(directory_outbox)
                .where(
                    directory_outbox.c.id == row_id,
                    directory_outbox.c.state == "pending",
                    directory_outbox.c.attempts == attempts,
                )
                .values(
                    attempts=attempts + 1,
                    next_attempt_at=now + timedelta(seconds=self.settings.lease),
                )
            )
            return bool(claimed.rowcount == 1)

    def _send(self, client: PatchClient, row: Any, now: datetime) -> PublishResult:
        target = PatchTarget(row.resource_type, row.identifier_system, row.identifier_value)
        attempts = int(row.attempts) + 1
        status: int | None = None
        try:
            response = client.patch(target.url(self.settings.publish_url), json.loads(row.patch))
        except PublishNetworkError as exc:
            outcome, error = "retry", f"réseau : {exc}"
        else:
            status = response.status
            if 200 <= status < 300:
                outcome, error = "sent", ""
            elif status in RETRY_STATUSES or status >= 500:
                outcome, error = "retry", f"{status} {_problem_text(response.body)}".strip()
            else:
                reason = FINAL_STATUSES.get(status, f"refusé ({status})")
                outcome, error = "failed", f"{reason} : {_problem_text(response.body)}"
        created = as_utc(row.created_at) or now
        if outcome == "retry" and (now - created).total_seconds() > self.settings.lifetime:
            outcome, error = "failed", f"abandon après {attempts} tentatives : {error}"
        values: dict[str, Any] = {"last_status": status, "last_error": error[:500] or None}
        if outcome == "sent":
            values |= {"state": "sent", "sent_at": now}
        elif outcome == "failed":
            values |= {"state": "failed"}
        else:
            delay = min(self.settings.retry_initial * 2 ** (attempts - 1), self.settings.retry_max)
            values |= {"next_attempt_at": now + timedelta(seconds=delay)}
        with self.db.write() as conn:
            conn.execute(
                update(directory_outbox).where(directory_outbox.c.id == row.id).values(**values)
            )
            if outcome != "retry":  # R63: one trace per final outcome
                traces.record(
                    conn,
                    "directory.publish",
                    "ok" if outcome == "sent" else "failed",
                    mailbox=row.address,
                    actor="publication",
                    detail=f"{row.operation} {_target_text(target)} {status or ''} {error}",
                )
        if outcome == "failed":
            log.warning("publication of %s failed: %s", row.address, error)
        return PublishResult(
            row.id, row.address, row.operation, _target_text(target), status, outcome, error
        )


class PublicationWorker:
    """Sends the outbox in the background of ``mssante run`` (``Operator.start``)."""

    def __init__(self, service: PublicationService, *, poll_interval: float = 1.0) -> None:
        self.service = service
        self.poll_interval = poll_interval
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        client = await asyncio.to_thread(self.service.client)
        try:
            while not self._stop.is_set():
                try:
                    await asyncio.to_thread(self.service.publish_pending, client)
                except Exception:  # a database hiccup must not end the worker
                    log.exception("directory publication pass failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            await asyncio.to_thread(client.close)

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
