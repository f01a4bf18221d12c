"""The relay worker: moves queued mail to the other operators of the trust space.

Every connection uses STARTTLS with TLS ≥ 1.2, presents the operator certificate and checks
the peer against the trust anchors only (R6, R10); a peer that does not offer STARTTLS or
fails verification gets nothing, and the mail waits (never sent in clear). DSN parameters
are passed on when the next hop supports them (RFC 3461 §5.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable, Sequence

import aiosmtplib

from mssante.formats.dsn import xtext_encode
from mssante.services.ports import BlobStore
from mssante.services.queue import AttemptResult, QueueService, RelayJob
from mssante.services.trust import TrustListService

log = logging.getLogger("mssante.relay")

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")

Resolver = Callable[[str], Awaitable[list[tuple[str, int]]]]


class RouteError(Exception):
    def __init__(self, result: AttemptResult) -> None:
        super().__init__(result.text)
        self.result = result


def _result(code: int, message: str, host: str | None, *, dsn: bool = True) -> AttemptResult:
    text = " ".join(message.split())[:500]
    match = _ENHANCED.match(text)
    return AttemptResult(
        code=code,
        text=text,
        remote_mta=host,
        enhanced=match.group(1) if match else None,
        peer_supports_dsn=dsn,
    )


async def mx_resolver(domain: str, port: int = 25) -> list[tuple[str, int]]:
    """MX hosts by preference, or the domain itself (implicit MX, RFC 5321 §5.1)."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    try:
        answer = await dns.asyncresolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        raise RouteError(
            AttemptResult(0, f"domain {domain} does not exist", enhanced="5.1.2")
        ) from None
    except dns.resolver.NoAnswer:
        return [(domain, port)]
    except dns.exception.DNSException as exc:
        raise RouteError(
            AttemptResult(0, f"DNS lookup failed: {type(exc).__name__}", enhanced="4.4.3")
        ) from None
    records = sorted(answer, key=lambda r: r.preference)
    hosts = [str(r.exchange).rstrip(".") for r in records]
    if hosts == [""]:  # RFC 7505 null MX
        raise RouteError(AttemptResult(0, f"{domain} accepts no mail", enhanced="5.1.10"))
    return [(h, port) for h in hosts]


class RelayWorker:
    def __init__(
        self,
        queue: QueueService,
        blobs: BlobStore,
        trust: TrustListService,
        *,
        hostname: str,
        tls_context: ssl.SSLContext,
        routes: dict[str, str],
        use_mx: bool = True,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        timeout: float = 30.0,
        resolver: Resolver | None = None,
    ) -> None:
        self.queue = queue
        self.blobs = blobs
        self.trust = trust
        self.hostname = hostname
        self.tls_context = tls_context
        self.routes = routes
        self.use_mx = use_mx
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.resolver = resolver or mx_resolver
        self.worker_id = f"relay-{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(concurrency)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                jobs = await asyncio.to_thread(
                    self.queue.claim, self.worker_id, self.concurrency * 4
                )
            except Exception:
                log.exception("queue claim failed")
                jobs = []
            for index, job in enumerate(jobs):
                await self._sem.acquire()
                if self._stopping:
                    # Give back what was claimed but not started: no lease to wait out.
                    self._sem.release()
                    for unstarted in jobs[index:]:
                        await asyncio.to_thread(self.queue.release, unstarted)
                    break
                task = asyncio.create_task(self._run_job(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not jobs:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout)

    async def _run_job(self, job: RelayJob) -> None:
        try:
            results = await self.attempt(job)
            await asyncio.to_thread(self.queue.complete, job, results)
        except Exception:
            log.exception("relay of queue %s to %s failed", job.queue_id, job.domain)
        finally:
            self._sem.release()

    async def _routes_for(self, domain: str) -> list[tuple[str, int]]:
        target = self.routes.get(domain)
        if target:
            host, _, port = target.rpartition(":")
            return [(host.strip("[]"), int(port))]
        if not self.use_mx:
            raise RouteError(AttemptResult(0, f"no route to {domain}", enhanced="4.4.4"))
        return await self.resolver(domain)

    def _all(self, job: RelayJob, result: AttemptResult) -> dict[int, AttemptResult]:
        return {r.delivery_id: result for r in job.recipients}

    async def attempt(self, job: RelayJob) -> dict[int, AttemptResult]:
        if not self.trust.in_trust_space(job.domain):
            return self._all(
                job,
                AttemptResult(
                    0, f"{job.domain} is no longer in the MSSante white list", enhanced="5.7.1"
                ),
            )
        try:
            routes = await self._routes_for(job.domain)
        except RouteError as exc:
            return self._all(job, exc.result)
        data = await asyncio.to_thread(self.blobs.get, job.blob_digest)
        last = AttemptResult(0, "no route", enhanced="4.4.4")
        for host, port in routes:
            try:
                return await self._deliver(host, port, job, data)
            except RouteError as exc:
                last = exc.result
                log.info("relay %s via %s:%s: %s", job.queue_id, host, port, last.text)
        return self._all(job, last)

    async def _deliver(
        self, host: str, port: int, job: RelayJob, data: bytes
    ) -> dict[int, AttemptResult]:
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            local_hostname=self.hostname,
            timeout=self.timeout,
            start_tls=False,
        )
        try:
            try:
                await client.connect()
                await client.ehlo()
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                raise RouteError(
                    AttemptResult(0, f"connection to {host} failed: {exc}", host, "4.4.1")
                ) from None
            if not client.supports_extension("starttls"):
                raise RouteError(AttemptResult(0, f"{host} does not offer STARTTLS", host, "4.7.5"))
            try:
                await client.starttls(tls_context=self.tls_context, server_hostname=host)
                await client.ehlo()
            except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
                raise RouteError(
                    AttemptResult(0, f"TLS with {host} failed: {exc}", host, "4.7.5")
                ) from None
            return await self._transaction(client, host, job, data)
        finally:
            with contextlib.suppress(Exception):
                if client.is_connected:
                    await client.quit()
            with contextlib.suppress(Exception):
                client.close()

    async def _transaction(
        self, client: aiosmtplib.SMTP, host: str, job: RelayJob, data: bytes
    ) -> dict[int, AttemptResult]:
        dsn = client.supports_extension("dsn")
        options = _mail_options(client, job, len(data), dsn)
        try:
            await client.mail(job.mail_from, options=options, encoding="utf-8")
        except aiosmtplib.SMTPResponseException as exc:
            return self._all(job, _result(exc.code, exc.message, host, dsn=dsn))
        results: dict[int, AttemptResult] = {}
        accepted = []
        for rcpt in job.recipients:
            rcpt_options: list[str] = []
            if dsn and rcpt.notify:
                rcpt_options.append(f"NOTIFY={rcpt.notify}")
            if dsn and rcpt.orcpt:
                addr_type, _, value = rcpt.orcpt.partition(";")
                rcpt_options.append(f"ORCPT={addr_type};{xtext_encode(value)}")
            try:
                await client.rcpt(rcpt.address, options=rcpt_options, encoding="utf-8")
                accepted.append(rcpt)
            except aiosmtplib.SMTPResponseException as exc:
                results[rcpt.delivery_id] = _result(exc.code, exc.message, host, dsn=dsn)
        if not accepted:
            return results
        try:
            response = await client.data(data)
            outcome = _result(response.code, response.message, host, dsn=dsn)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = _result(exc.code, exc.message, host, dsn=dsn)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            outcome = AttemptResult(0, f"connection lost during DATA: {exc}", host, "4.4.2")
        for rcpt in accepted:
            results[rcpt.delivery_id] = outcome
        return results


def _mail_options(client: aiosmtplib.SMTP, job: RelayJob, size: int, dsn: bool) -> Sequence[str]:
    options = []
    if client.supports_extension("size"):
        options.append(f"SIZE={size}")
    if job.body_type == "8BITMIME" and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if job.smtputf8 and client.supports_extension("smtputf8"):
        options.append("SMTPUTF8")
    if dsn and job.ret:
        options.append(f"RET={job.ret}")
    if dsn and job.envid:
        options.append(f"ENVID={xtext_encode(job.envid)}")
    return options
