"""Wiring: builds one operator (storage, services, listeners, relay) from its configuration.

Nothing else reads configuration. `Operator` runs every listener and the relay worker on
the current asyncio loop; `start()` returns once every socket is bound (port 0 allowed),
`stop()` closes listeners first, then lets the relay finish its attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mssante.config import Config
from mssante.domain.errors import TrustListRejected
from mssante.services import traces
from mssante.services.delivery import DeliveryService, DeliverySettings
from mssante.services.mailboxes import MailboxService, Principal
from mssante.services.ports import AcceptedRecipient, IncomingMessage, Role
from mssante.services.queue import QueueService, QueueSettings
from mssante.services.store import MessageStore
from mssante.services.trust import TrustListService
from mssante.smtp.relay import RelayWorker
from mssante.smtp.session import ConnectionLimiter, SmtpSession
from mssante.storage.blobs import BlobKeyring, FileBlobStore
from mssante.storage.database import Database
from mssante.tls import client_context, server_context

log = logging.getLogger("mssante")
_LOOPS_WITH_EXECUTOR: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


class Services:
    """The storage and use cases of one operator, without any listener (CLI, tests)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        domains = tuple(config.operator.domains)
        self.db = Database(config.database_url, pool_size=config.database.pool_size)
        keyring = BlobKeyring(
            {k.id: k.raw() for k in config.storage.keys}, config.storage.active_key
        )
        self.blobs = FileBlobStore(config.blob_root, keyring)
        self.trust = TrustListService(self.db, domains)
        self.mailboxes = MailboxService(self.db, domains)
        self.delivery = DeliveryService(
            self.db,
            self.blobs,
            self.trust,
            self.mailboxes,
            DeliverySettings(
                hostname=config.operator.hostname,
                primary_domain=domains[0],
                queue_lifetime=config.relay.queue_lifetime,
                file_sent=config.smtp.submission.file_sent,
            ),
        )
        self.store = MessageStore(self.db, self.blobs)
        self.queue = QueueService(
            self.db,
            self.delivery,
            QueueSettings(
                queue_lifetime=config.relay.queue_lifetime,
                delay_warning=config.relay.delay_warning,
                retry_initial=config.relay.retry_initial,
                retry_max=config.relay.retry_max,
            ),
        )

    def migrate(self) -> None:
        self.db.migrate()

    def load_configured_trust_list(self) -> None:
        """Load `trust_list.file` when set; a bad file keeps the list in force (R3)."""
        section = self.config.trust_list
        if section.file is None:
            return
        try:
            data = section.file.read_bytes()
            checksum = section.checksum_file.read_text() if section.checksum_file else None
        except OSError as exc:
            log.error(
                "ALERT white list %s unreadable (%s); keeping the list in force",
                section.file,
                exc.strerror,
            )
            return
        try:
            status = self.trust.load(data, checksum, source=str(section.file))
            log.info(
                "white list loaded: %d entries (generation %d)",
                status.domain_count,
                status.generation,
            )
        except TrustListRejected as exc:
            log.error(
                "ALERT white list %s rejected (%s); keeping the list in force",
                section.file,
                exc.message,
            )

    def close(self) -> None:
        self.db.dispose()


class Backend:
    """The SMTP adapter's view of the services (`mssante.smtp.backend.SmtpBackend`)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.hostname = services.config.operator.hostname
        self.relay: RelayWorker | None = None

    async def authenticate(self, login: str, password: str, peer: str) -> Principal | None:
        principal = await asyncio.to_thread(self.services.mailboxes.authenticate, login, password)
        await asyncio.to_thread(self._trace_login, login, peer, principal is not None)
        return principal

    def _trace_login(self, login: str, peer: str, ok: bool) -> None:
        with self.services.db.write() as conn:
            traces.record(
                conn,
                "login",
                "ok" if ok else "refused",
                actor=login[:320],
                peer=peer,
                detail="smtp submission PLAIN/LOGIN",
            )

    async def check_sender(
        self, role: Role, sender: str, principal: Principal | None, peer_dn: str | None, peer: str
    ) -> None:
        await asyncio.to_thread(
            self.services.delivery.check_sender, role, sender, principal, peer_dn
        )

    async def check_recipient(
        self, role: Role, recipient: str, sender: str, peer: str
    ) -> AcceptedRecipient:
        return await asyncio.to_thread(self.services.delivery.check_recipient, role, recipient)

    async def accept(self, message: IncomingMessage) -> str:
        queue_id = await asyncio.to_thread(self.services.delivery.accept, message)
        if self.relay is not None:
            self.relay.wake()
        return queue_id

    async def refused(
        self, role: Role, stage: str, reason: str, peer: str, address: str | None
    ) -> None:
        await asyncio.to_thread(self.services.delivery.refused, role, stage, reason, peer, address)


class Operator:
    """A running operator: SMTP submission, SMTP inbound and the relay worker."""

    def __init__(self, config: Config, *, run_relay: bool = True) -> None:
        self.config = config
        self.services = Services(config)
        self.backend = Backend(self.services)
        self.run_relay = run_relay
        self.submission: Endpoint | None = None
        self.inbound: Endpoint | None = None
        self.relay: RelayWorker | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._relay_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Each accepted message holds a worker thread through its fsyncs; the default pool
        # (cores + 4) would queue concurrent clients behind one another.
        if loop not in _LOOPS_WITH_EXECUTOR:
            _LOOPS_WITH_EXECUTOR.add(loop)
            loop.set_default_executor(ThreadPoolExecutor(64, thread_name_prefix="mssante"))
        await asyncio.to_thread(self.services.migrate)
        await asyncio.to_thread(self.services.load_configured_trust_list)
        tls = self.config.tls
        for role, section in (
            (Role.SUBMISSION, self.config.smtp.submission),
            (Role.INBOUND, self.config.smtp.inbound),
        ):
            if not section.enabled:
                continue
            ctx = server_context(
                tls.cert_file,
                tls.key_file,
                client_ca_file=tls.trust_anchors if role is Role.INBOUND else None,
                request_client_cert=role is Role.INBOUND,
                min_version=tls.min_version,
            )
            limiter = ConnectionLimiter(section.max_connections)
            plaintext = bool(getattr(section, "insecure_plaintext_for_benchmarks", False))
            if plaintext:
                log.warning("%s accepts plaintext without checks (benchmarks only)", role.value)

            def factory(
                role: Role = role,
                ctx: object = ctx,
                section: object = section,
                limiter: ConnectionLimiter = limiter,
                plaintext: bool = plaintext,
            ) -> SmtpSession:
                return SmtpSession(
                    self.backend,
                    role,
                    tls_context=ctx,  # type: ignore[arg-type]
                    max_message_size=section.max_message_size,  # type: ignore[attr-defined]
                    max_recipients=section.max_recipients,  # type: ignore[attr-defined]
                    timeout=section.timeout,  # type: ignore[attr-defined]
                    loop=loop,
                    limiter=limiter,
                    insecure_plaintext=plaintext,
                )

            server = await loop.create_server(factory, section.host, section.port)
            self._servers.append(server)
            sock = server.sockets[0].getsockname()
            endpoint = Endpoint(str(sock[0]), int(sock[1]))
            if role is Role.SUBMISSION:
                self.submission = endpoint
            else:
                self.inbound = endpoint
            log.info("%s listening on %s:%d", role.value, endpoint.host, endpoint.port)
        if self.run_relay:
            relay = self.config.relay
            self.relay = RelayWorker(
                self.services.queue,
                self.services.blobs,
                self.services.trust,
                hostname=self.config.operator.hostname,
                tls_context=client_context(
                    ca_file=tls.trust_anchors,
                    cert_file=tls.cert_file,
                    key_file=tls.key_file,
                    min_version=tls.min_version,
                ),
                routes=dict(relay.routes),
                use_mx=relay.use_mx,
                concurrency=relay.workers,
                poll_interval=relay.poll_interval,
                timeout=float(relay.connect_timeout),
            )
            self.backend.relay = self.relay
            self._relay_task = asyncio.create_task(self.relay.run())

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
        if self.relay is not None:
            await self.relay.stop()
        if self._relay_task is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._relay_task
        self.services.close()

    async def __aenter__(self) -> Operator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def data_path(config: Config, *parts: str) -> Path:
    return config.data_dir.joinpath(*parts)
