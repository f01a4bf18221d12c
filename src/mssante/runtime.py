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
from typing import Any

from cryptography import x509

from mssante.config import Config
from mssante.domain.errors import DomainError, TrustListRejected
from mssante.identity import InvalidToken, OidcSettings, TokenValidator, preset, token_hash
from mssante.services import traces
from mssante.services.auth import AuthPolicy, AuthService, LoginOutcome
from mssante.services.changes import ChangeBus
from mssante.services.delivery import DeliveryService, DeliverySettings
from mssante.services.directory import DirectoryService, DirectorySettings
from mssante.services.directory_publication import (
    PublicationService,
    PublicationSettings,
    PublicationWorker,
)
from mssante.services.directory_search import DirectorySearch
from mssante.services.machine_credentials import MachineCredentialService
from mssante.services.mailboxes import MailboxService, Principal
from mssante.services.mailstore import MailStore
from mssante.services.ports import AcceptedRecipient, IncomingMessage, Role
from mssante.services.queue import QueueService, QueueSettings
from mssante.services.store import MessageStore
from mssante.services.token_signer import TokenSigner
from mssante.services.trust import TrustListService
from mssante.services.web_sessions import WebSessionService
from mssante.services.webhooks import WebhookService, WebhookSettings
from mssante.smtp.backend import TokenLogin
from mssante.smtp.relay import RelayWorker
from mssante.smtp.session import ConnectionLimiter, SmtpSession
from mssante.storage.blobs import BlobKeyring, FileBlobStore
from mssante.storage.database import Database
from mssante.tls import certificate_fingerprint_sha256, client_context, server_context

log = logging.getLogger("mssante")
_LOOPS_WITH_EXECUTOR: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


def oidc_settings(config: Config) -> OidcSettings | None:
    """The provider of professionals' tokens, from `[identity]` (None: tokens not accepted)."""
    section = config.identity
    audience = tuple(section.audience) or None
    if section.provider == "none":
        return None
    if section.provider in ("psc-production", "psc-sandbox"):
        return preset(
            section.provider,
            section.client_id,
            section.client_secret,
            audience=audience,
            required_acr=section.required_acr,
        )
    return OidcSettings(
        issuer=section.issuer,
        authorization_endpoint=section.authorization_endpoint or section.issuer,
        token_endpoint=section.token_endpoint,
        userinfo_endpoint=section.userinfo_endpoint,
        jwks_uri=section.jwks_uri,
        introspection_endpoint=section.introspection_endpoint or None,
        client_id=section.client_id,
        client_secret=section.client_secret,
        audience=audience,
        required_acr=section.required_acr,
    )


def directory_settings(config: Config) -> DirectorySettings:
    """Import limits of the national directory (`[directory] import_*`, issue 5)."""
    section = config.directory
    return DirectorySettings(
        import_max_rejected=section.import_max_rejected,
        import_max_rejected_ratio=section.import_max_rejected_ratio,
        import_max_removed_ratio=section.import_max_removed_ratio,
    )


def publication_settings(config: Config) -> PublicationSettings:
    """Publication of our BALs (`[directory] publish_*`, SPEC §4.2)."""
    section = config.directory
    return PublicationSettings(
        publish_url=section.publish_url,
        api_key=section.publish_api_key,
        ca_file=section.publish_ca_file,
    )


def webhook_settings(config: Config) -> WebhookSettings:
    """Webhooks of the integration API (`[api] webhook_*`, issue 7)."""
    section = config.api
    return WebhookSettings(
        allow_http=section.allow_http_webhooks,
        retry_initial=section.webhook_retry_initial,
        retry_max=section.webhook_retry_max,
        give_up_after=float(section.webhook_give_up_after),
    )


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
        self.directory = DirectoryService(
            self.db, directory_settings(config), mailboxes=self.mailboxes
        )
        # R48: our BALs are published to the national directory when publish_url is set.
        self.publication = PublicationService(self.db, publication_settings(config))
        if self.publication.settings.enabled:
            self.mailboxes.directory_hook = self.publication.record
        self.auth = AuthService(
            self.db,
            self.mailboxes,
            AuthPolicy(**config.auth.model_dump()),
            issuer=f"MSSanté {config.operator.name}",
        )
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
        self.bus = ChangeBus()
        self.db.on_commit = self.bus.publish
        self.mailstore = MailStore(self.db, self.blobs, self.bus)
        # R18: certificates and OAuth2 clients of APP mailboxes; the key that signs their
        # access tokens lives in the data directory (created on first use, mode 0600).
        self.machine_credentials = MachineCredentialService(
            self.db,
            self.mailboxes,
            token_signer=TokenSigner.load_or_create(config.data_dir / "oauth-signing-key.pem"),
            issuer=f"https://{config.operator.hostname}",
        )
        settings = oidc_settings(config)
        self.token_validator = (
            TokenValidator(settings, use_introspection=config.identity.use_introspection)
            if settings is not None
            else None
        )
        # Web login (R61, SC.SSI/IE.58): the relying party needs the client secret, hence
        # the settings themselves; sessions lock after 2 hours of inactivity.
        self.oidc_settings = settings
        self.public_url = config.http.public_url or None
        # Set by Operator once the relay runs: API sends and MDNs wake it (thread-safe).
        self.wake_relay: Any = None
        self.web_sessions = WebSessionService(self.db)
        self.directory_search = DirectorySearch(self.db)  # issue 5: search, suggest
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
        # Issue 7: delivery status and webhooks; secrets sealed under the blob keyring.
        self.webhooks = WebhookService(self.db, keyring, webhook_settings(config))

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
        if self.token_validator is not None:
            self.token_validator.close()
        self.db.dispose()


class Backend:
    """The SMTP adapter's view of the services (`mssante.smtp.backend.SmtpBackend`)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.hostname = services.config.operator.hostname
        self.relay: RelayWorker | None = None

    async def authenticate(self, login: str, password: str, peer: str) -> Principal | None:
        outcome = await self.authenticate_password(login, password, peer)
        return outcome.principal

    async def authenticate_password(
        self, login: str, password: str, peer: str, mechanism: str = "PLAIN/LOGIN"
    ) -> LoginOutcome:
        """Throttled password (+TOTP) check, traced by AuthService; slow on failure.

        `outcome.locked` means a temporary lock refused the attempt unchecked: the SMTP
        reply should then be `454 4.7.0`, not `535 5.7.8`.
        """
        outcome = await asyncio.to_thread(
            self.services.auth.login_password,
            login,
            password,
            source=peer,
            mechanism=mechanism,
        )
        if outcome.principal is None and outcome.delay > 0:
            await asyncio.sleep(outcome.delay)
        return outcome

    @property
    def token_auth_available(self) -> bool:
        return self.services.token_validator is not None

    async def authenticate_token(self, token: str, peer: str, mechanism: str) -> TokenLogin:
        validator = self.services.token_validator
        scope = validator.settings.scope if validator is not None else "openid"
        if validator is None:
            return TokenLogin(None, {"status": "invalid_request", "schemes": "bearer"})
        digest = token_hash(token)  # R17: the only trace of a token
        try:
            identity = await validator.validate_async(token)
        except InvalidToken as exc:
            await asyncio.to_thread(
                self._trace,
                "login",
                "refused",
                None,
                peer,
                f"smtp {mechanism} token {digest}: {exc.reason}"[:300],
            )
            return TokenLogin(None, exc.sasl_failure(scope), temporary=exc.temporary)
        principal = await asyncio.to_thread(
            self.services.mailboxes.principal_for_id_nat_ps, identity.id_nat_ps
        )
        if principal is None:
            await asyncio.to_thread(
                self._trace,
                "login",
                "refused",
                identity.id_nat_ps,
                peer,
                f"smtp {mechanism} token {digest}: no mailbox for this idNat_PS",
            )
            return TokenLogin(
                None, {"status": "invalid_token", "schemes": "bearer", "scope": scope}
            )
        await asyncio.to_thread(
            self._trace, "login", "ok", principal.login, peer, f"smtp {mechanism} token {digest}"
        )
        return TokenLogin(principal, expires_in=identity.seconds_left())

    async def authenticate_certificate(self, cert_der: bytes, peer: str) -> Principal | None:
        credentials = getattr(self.services, "machine_credentials", None)
        if credentials is None:
            return None
        cert = x509.load_der_x509_certificate(cert_der)
        fingerprint = certificate_fingerprint_sha256(cert)
        try:
            principal: Principal = await asyncio.to_thread(
                credentials.principal_for_certificate, cert
            )
        except DomainError:
            await asyncio.to_thread(
                self._trace,
                "login",
                "refused",
                None,
                peer,
                f"smtp EXTERNAL certificate {fingerprint[:16]} bound to no APP mailbox",
            )
            return None
        await asyncio.to_thread(
            self._trace,
            "login",
            "ok",
            principal.login,
            peer,
            f"smtp EXTERNAL certificate {fingerprint[:16]}",
        )
        return principal

    def _trace(self, action: str, outcome: str, actor: str | None, peer: str, detail: str) -> None:
        with self.services.db.write() as conn:
            traces.record(conn, action, outcome, actor=actor, peer=peer, detail=detail)

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
        self.http: Endpoint | None = None
        self.http_url: str | None = None
        self.imap: Endpoint | None = None  # STARTTLS (143 role)
        self.imaps: Endpoint | None = None  # implicit TLS (993 role)
        self._imap_listeners: list[Any] = []
        self._listen_task: asyncio.Task[None] | None = None
        self._listen_stop = asyncio.Event()
        self._http_server: Any = None
        self.webhook_worker: Any = None  # mssante.http.webhook_worker.WebhookWorker
        self._webhook_task: asyncio.Task[None] | None = None
        self.publication_worker: PublicationWorker | None = None
        self._publication_task: asyncio.Task[None] | None = None

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
                # Inbound: the operator certificate (R5). Submission: optional, for the
                # SASL EXTERNAL login of APP mailboxes (R18).
                client_ca_file=tls.trust_anchors,
                request_client_cert=True,
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
                    patient_max_size=self.config.api.patient_max_bytes,
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
        if self.config.imap.enabled:
            await self._start_imap()
        if self.config.http.enabled:
            await self._start_http()
            self._start_webhooks()
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
            relay_worker = self.relay
            self.services.wake_relay = lambda: loop.call_soon_threadsafe(relay_worker.wake)
            self._relay_task = asyncio.create_task(self.relay.run())
        if self.services.publication.settings.enabled:
            self.publication_worker = PublicationWorker(self.services.publication)
            self._publication_task = asyncio.create_task(self.publication_worker.run())

    async def _start_imap(self) -> None:
        from mssante.imap.server import Connection, ImapLimits, ImapListener
        from mssante.imap.session import ImapContext, Session

        section, tls = self.config.imap, self.config.tls
        context = server_context(
            tls.cert_file,
            tls.key_file,
            client_ca_file=tls.trust_anchors,  # SASL EXTERNAL of APP mailboxes (R18)
            request_client_cert=True,
            min_version=tls.min_version,
        )
        limits = ImapLimits(max_literal=section.max_literal, idle_timeout=section.idle_timeout)
        ctx = ImapContext(
            store=self.services.mailstore,
            backend=self.backend,
            tls_context=context,
            limits=limits,
            hostname=self.config.operator.hostname,
            quota_bytes=section.quota_mb * 1024 * 1024,
            store_mailboxes=self.services.mailboxes,
        )
        for implicit in (False, True):

            def make(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls_on: bool = implicit
            ) -> Session:
                return Session(Connection(reader, writer, limits), ctx, tls_from_start=tls_on)

            listener = ImapListener(make, implicit_tls=context if implicit else None)
            port = await listener.start(
                section.host, section.tls_port if implicit else section.port
            )
            self._imap_listeners.append(listener)
            endpoint = Endpoint(section.host, port)
            if implicit:
                self.imaps = endpoint
            else:
                self.imap = endpoint
            log.info("imap%s listening on %s:%d", "s" if implicit else "", section.host, port)
        if not self.services.db.is_sqlite:  # IDLE across processes (LISTEN/NOTIFY)
            self._listen_task = asyncio.create_task(
                self.services.bus.listen_postgresql(self.services.db.url, self._listen_stop)
            )

    def _start_webhooks(self) -> None:
        from mssante.http.webhook_worker import WebhookWorker

        section = self.config.api
        self.webhook_worker = WebhookWorker(
            self.services.webhooks.queue,
            self.services.bus,
            concurrency=section.webhook_concurrency,
            timeout=section.webhook_timeout,
            poll_interval=section.webhook_poll_interval,
            ca_file=section.webhook_ca_file,
        )
        self._webhook_task = asyncio.create_task(self.webhook_worker.run())
        if not self.services.db.is_sqlite and self._listen_task is None:
            # Events committed by other processes wake this worker too (LISTEN/NOTIFY).
            self._listen_task = asyncio.create_task(
                self.services.bus.listen_postgresql(self.services.db.url, self._listen_stop)
            )

    async def _start_http(self) -> None:
        from mssante.http.app import create_app
        from mssante.http.server import start_http

        section, tls = self.config.http, self.config.tls
        app = create_app(self.services, token_validator=self.services.token_validator)
        self._http_server, port = await start_http(
            app,
            section.host,
            section.port,
            ssl_certfile=str(tls.cert_file) if section.tls else None,
            ssl_keyfile=str(tls.key_file) if section.tls else None,
            ssl_min_version=tls.min_version,
        )
        self.http = Endpoint(section.host, port)
        scheme = "https" if section.tls else "http"
        self.http_url = f"{scheme}://{section.host}:{port}"
        log.info("http listening on %s", self.http_url)

    async def stop(self) -> None:
        for listener in self._imap_listeners:
            with contextlib.suppress(Exception):
                await listener.stop()
        self._imap_listeners.clear()
        self._listen_stop.set()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
        if self._http_server is not None:
            from mssante.http.server import stop_http

            with contextlib.suppress(Exception):
                await stop_http(self._http_server)
            self._http_server = None
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
        if self.webhook_worker is not None:
            await self.webhook_worker.stop()
        if self._webhook_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._webhook_task, 5)
        if self.publication_worker is not None:
            await self.publication_worker.stop()
        if self._publication_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._publication_task, 10)
            self._publication_task = None
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
