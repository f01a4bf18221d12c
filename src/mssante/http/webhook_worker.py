"""The sender of webhook calls (issue 7 item 5): an asyncio task of the operator.

It claims deliveries from :class:`~mssante.services.webhooks.WebhookService` (a lease, so
several processes can share the queue), POSTs each event's exact JSON body with the
signature headers of :mod:`mssante.webhook_signature`, and records the outcome: 2xx
delivers, anything else retries with backoff. It wakes at once when a transaction that
queued work commits (ChangeBus pseudo-folder ``WAKE``), else when the next retry is due,
else every ``poll_interval`` seconds. Redirects are not followed (a 3xx is a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
from pathlib import Path

import httpx

from mssante import __version__
from mssante.services.changes import ChangeBus
from mssante.services.webhook_queue import WAKE, Job, Outcome, WebhookQueue
from mssante.storage.database import utcnow
from mssante.webhook_signature import signature_headers

log = logging.getLogger("mssante.webhooks")


class WebhookWorker:
    def __init__(
        self,
        queue: WebhookQueue,
        bus: ChangeBus,
        *,
        concurrency: int = 8,
        timeout: float = 10.0,
        poll_interval: float = 5.0,
        ca_file: Path | None = None,
    ) -> None:
        self.queue = queue
        self.bus = bus
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.ca_file = ca_file
        self.name = f"webhooks-{os.getpid()}-{secrets.token_hex(3)}"
        self._stop = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    def _verify(self) -> ssl.SSLContext | bool:
        if self.ca_file is None:
            return True  # the system / certifi trust store
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def run(self) -> None:
        wake = self.bus.watch(WAKE)
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        try:
            async with httpx.AsyncClient(
                verify=self._verify(),
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                limits=limits,
                headers={"User-Agent": f"mssante-webhooks/{__version__}"},
                trust_env=False,
            ) as client:
                while not self._stop.is_set():
                    try:
                        await self._round(client, wake)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("webhook worker round failed; retrying in 1 s")
                        await asyncio.sleep(1)
        finally:
            self.bus.unwatch(WAKE, wake)
            for task in list(self._inflight):
                task.cancel()
            for task in list(self._inflight):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _round(self, client: httpx.AsyncClient, wake: asyncio.Queue[int]) -> None:
        room = self.concurrency - len(self._inflight)
        jobs = await asyncio.to_thread(self.queue.claim, self.name, room) if room > 0 else []
        for job in jobs:
            task = asyncio.create_task(self._deliver(client, job))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if jobs and len(self._inflight) < self.concurrency:
            return  # maybe more due work: claim again at once
        timeout = self.poll_interval
        if not self._inflight:
            due = await asyncio.to_thread(self.queue.next_due)
            if due is not None:
                timeout = max(0.0, min(timeout, (due - utcnow()).total_seconds()))
        await self._wait(wake, timeout)

    async def _wait(self, wake: asyncio.Queue[int], timeout: float) -> None:
        """Until new work is committed, a delivery ends, the timeout passes, or stop."""
        waiters: set[asyncio.Future[object]] = {
            asyncio.ensure_future(wake.get()),
            asyncio.ensure_future(self._stop.wait()),
        }
        waiters |= {asyncio.ensure_future(asyncio.shield(t)) for t in self._inflight}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        while not wake.empty():  # one round serves every wake-up received so far
            wake.get_nowait()

    async def _deliver(self, client: httpx.AsyncClient, job: Job) -> None:
        outcome = await self.post(client, job)
        status = await asyncio.to_thread(self.queue.complete, self.name, job.delivery_id, outcome)
        if status == "failed":
            log.warning(
                "webhook delivery %d of event %s to subscription %s failed for good: %s",
                job.delivery_id,
                job.event_id,
                job.subscription_id,
                outcome.error,
            )

    async def post(self, client: httpx.AsyncClient, job: Job) -> Outcome:
        headers = {
            "Content-Type": "application/json",
            **signature_headers(job.event_id, job.secret, job.payload),
        }
        try:
            async with client.stream("POST", job.url, content=job.payload, headers=headers) as r:
                code = r.status_code
                # Read (a little of) the answer so the connection can be reused.
                async for _ in r.aiter_raw(16384):
                    break
        except httpx.TimeoutException:
            return Outcome(False, None, "délai dépassé")
        except httpx.ConnectError as exc:
            text = str(exc).lower()
            if "certificate" in text or "ssl" in text or "tls" in text:
                return Outcome(False, None, "erreur TLS (certificat du serveur refusé)")
            return Outcome(False, None, "connexion impossible")
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"erreur HTTP ({type(exc).__name__})")
        if 200 <= code < 300:
            return Outcome(True, code)
        return Outcome(False, code, f"réponse HTTP {code}")

    async def stop(self) -> None:
        self._stop.set()
