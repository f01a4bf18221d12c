"""One SMTP connection: an aiosmtpd `SMTP` protocol with our own command loop.

aiosmtpd supplies the connection plumbing, timeouts and STARTTLS (RFC 3207). We replace
the command loop and the transaction commands because the MSSanté roles need what it does
not do: enhanced status codes on every reply (RFC 2034/3463), DSN parameters (RFC 3461),
DATA read in large chunks with strict CRLF (RFC 5321 §2.3.8), asynchronous password checks,
the operator certificate check (R5) and a generic 451 with an error id instead of the
exception text (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import ssl
from typing import Any

from aiosmtpd.smtp import SMTP, TLSSetupException

from mssante.domain.errors import DomainError, InvalidAddress
from mssante.domain.legal_recipients import PATIENT_DOMAIN
from mssante.formats.sasl import (
    SaslError,
    error_challenge,
    parse_oauthbearer,
    parse_plain,
    parse_xoauth2,
)
from mssante.services.mailboxes import Principal
from mssante.smtp import replies as R
from mssante.smtp.backend import AcceptedRecipient, IncomingMessage, Role, SmtpBackend
from mssante.smtp.data import DataCollector, DataOutcome
from mssante.smtp.params import MailArgs, ParamError, parse_mail, parse_rcpt
from mssante.tls import peer_subject_rfc4514

# R29 (ENS v1.3): messages to citizens' addresses are limited to 25 Mo (unit unconfirmed:
# 25 × 1024 × 1024 octets, as SPEC §10 reads it).
PATIENT_MAX_SIZE = 25 * 1024 * 1024


def _is_patient(address: str) -> bool:
    return address.rpartition("@")[2].lower() == PATIENT_DOMAIN


log = logging.getLogger("mssante.smtp")

MAX_COMMAND_LINE = 16 * 1024  # RFC 5321 §4.5.3.1.4 allows 512; AUTH tokens need more
MAX_ERRORS = 10
DATA_DEADLINE_FACTOR = 10  # a whole DATA section may last 10 idle timeouts at most
BEFORE_TLS = frozenset({"EHLO", "HELO", "NOOP", "QUIT", "STARTTLS", "RSET"})


class ConnectionLimiter:
    """Counts the open connections of one listener."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.active = 0


class SmtpSession(SMTP):
    # A StreamReader limit this large lets the transport fill 64 KiB reads in DATA.
    line_length_limit = 256 * 1024

    def __init__(
        self,
        backend: SmtpBackend,
        role: Role,
        *,
        tls_context: ssl.SSLContext,
        max_message_size: int,
        max_recipients: int,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
        limiter: ConnectionLimiter | None = None,
        insecure_plaintext: bool = False,
        patient_max_size: int = PATIENT_MAX_SIZE,
    ) -> None:
        super().__init__(
            None,
            data_size_limit=max_message_size,
            enable_SMTPUTF8=True,
            hostname=backend.hostname,
            tls_context=tls_context,
            require_starttls=True,
            timeout=timeout,
            auth_require_tls=True,
            loop=loop,
        )
        self.backend = backend
        self.role = role
        # smtp.inbound.insecure_plaintext_for_benchmarks: never in production.
        self.insecure_plaintext = insecure_plaintext
        self.limiter = limiter or ConnectionLimiter(1_000_000)
        self._counted = False
        self.max_message_size = max_message_size
        self.patient_max_size = patient_max_size
        self.max_recipients = max_recipients
        self._buf = bytearray()
        self._helo: str | None = None
        self._principal: Principal | None = None
        self._token_timer: asyncio.TimerHandle | None = None
        self._mail: MailArgs | None = None
        self._rcpts: list[AcceptedRecipient] = []
        self._errors = 0
        self._commands = {
            "EHLO": self.smtp_EHLO,
            "HELO": self.smtp_HELO,
            "MAIL": self.smtp_MAIL,
            "RCPT": self.smtp_RCPT,
            "DATA": self.smtp_DATA,
            "RSET": self.smtp_RSET,
            "NOOP": self.smtp_NOOP,
            "QUIT": self.smtp_QUIT,
            "VRFY": self.smtp_VRFY,
            "HELP": self.smtp_HELP,
            "STARTTLS": self.smtp_STARTTLS,
            "AUTH": self.smtp_AUTH,
        }

    # -- plumbing ---------------------------------------------------------------------

    @property
    def peer(self) -> str:
        peer = self.session.peer if self.session else None
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)

    def _sess(self) -> Any:
        assert self.session is not None
        return self.session

    @property
    def tls_active(self) -> bool:
        return self._tls_protocol is not None and self.transport is not None

    def _ssl_object(self) -> ssl.SSLObject | None:
        if not self.tls_active or self.transport is None:
            return None
        obj = self.transport.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject | ssl.SSLSocket) else None  # type: ignore[return-value]

    def _tls_description(self) -> str | None:
        obj = self._ssl_object()
        if obj is None:
            return None
        cipher = obj.cipher()
        return f"version={obj.version()} cipher={cipher[0] if cipher else '?'}"

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            # aiosmtpd's own STARTTLS replies, given their enhanced codes here.
            status = {
                "220 Ready to start TLS": R.READY_TLS,
                "454 TLS not available": (R.TLS_NOT_AVAILABLE),
            }.get(status, status)
        if self.transport is None or self.transport.is_closing():
            return
        await super().push(status)  # type: ignore[type-var]

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(R.TIMEOUT.encode("ascii") + b"\r\n")
            self.transport.close()

    async def _readline(self) -> bytes | None:
        """A line with its ending, or None when longer than MAX_COMMAND_LINE."""
        too_long = False
        while True:
            idx = self._buf.find(b"\n")
            if idx >= 0:
                line = bytes(self._buf[: idx + 1])
                del self._buf[: idx + 1]
                return None if too_long or len(line) > MAX_COMMAND_LINE else line
            if len(self._buf) > MAX_COMMAND_LINE:
                too_long = True
                self._buf.clear()
            chunk = await self._reader.read(65536)
            if not chunk:
                raise ConnectionResetError("peer closed the connection")
            self._buf += chunk

    def _reset_transaction(self) -> None:
        self._mail = None
        self._rcpts = []

    async def _error(self, reply: str) -> None:
        self._errors += 1
        await self.push(reply)

    # -- the command loop -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted:
            self._counted = True
            self.limiter.active += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._token_timer is not None:
            self._token_timer.cancel()
        super().connection_lost(error)
        if self._counted:
            self._counted = False
            self.limiter.active -= 1

    async def _handle_client(self) -> None:
        if self.limiter.active > self.limiter.maximum:
            await self.push(R.TOO_MANY_CONNECTIONS)
            if self.transport is not None:
                self.transport.close()
            return
        await self.push(f"220 {self.hostname} ESMTP MSSante")
        while self.transport is not None:
            try:
                await self._one_command()
                if self._errors >= MAX_ERRORS:
                    await self.push(R.TOO_MANY_ERRORS)
                    self.transport.close()
                    return
            except asyncio.CancelledError:
                raise
            except TLSSetupException as exc:
                # R63: a refused handshake (unknown CA, expired, old TLS) is traced too.
                reason = str(exc.__cause__ or exc)[:200] or "TLS handshake failed"
                log.info("%s TLS handshake failed: %s", self.peer, reason)
                await self.backend.refused(self.role, "starttls", reason, self.peer, None)
                if self.transport is not None:
                    self.transport.close()
                return
            except ConnectionError as exc:
                log.info("%s connection ended: %s", self.peer, type(exc).__name__)
                if self.transport is not None:
                    self.transport.close()
                return
            except Exception:
                error_id = secrets.token_hex(6)
                log.exception("error id %s on connection from %s", error_id, self.peer)
                self._reset_transaction()
                await self.push(R.TEMP_ERROR.format(error_id, error_id))

    async def _one_command(self) -> None:
        raw = await self._readline()
        if raw is None:
            await self._error(R.LINE_TOO_LONG)
            return
        if not raw.endswith(b"\r\n") or b"\r" in raw[:-2]:
            await self._error(R.BAD_LINE_ENDING)
            return
        name_bytes, _, arg_bytes = raw[:-2].partition(b" ")
        try:
            name = name_bytes.decode("ascii").upper()
            arg = arg_bytes.decode("utf-8").strip()
        except UnicodeDecodeError:
            await self._error(R.NON_ASCII_COMMAND)
            return
        handler = self._commands.get(name)
        if handler is None:
            await self._error(R.UNKNOWN_COMMAND)
            return
        if not self.tls_active and name not in BEFORE_TLS and not self.insecure_plaintext:
            await self._error(R.TLS_REQUIRED)  # RFC 3207 §4, R7, R13
            return
        self._reset_timeout()
        await handler(arg)

    # -- commands ---------------------------------------------------------------------

    async def smtp_EHLO(self, arg: str) -> None:
        if not arg:
            await self._error("501 5.5.4 Syntaxe : EHLO nom / Syntax: EHLO hostname")
            return
        self._helo = arg
        self._sess().host_name = arg
        self._sess().extended_smtp = True
        self._reset_transaction()
        lines = [
            self.hostname,
            "PIPELINING",
            f"SIZE {self.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "DSN",
            "ENHANCEDSTATUSCODES",
        ]
        if not self.tls_active:
            lines.append("STARTTLS")
        elif self.role is Role.SUBMISSION and self._principal is None:
            lines.append("AUTH " + " ".join(self._mechanisms()))
        lines.append("HELP")
        for line in lines[:-1]:
            await self.push(f"250-{line}")
        await self.push(f"250 {lines[-1]}")

    async def smtp_HELO(self, arg: str) -> None:
        if not arg:
            await self._error("501 5.5.4 Syntaxe : HELO nom / Syntax: HELO hostname")
            return
        self._helo = arg
        self._sess().host_name = arg
        self._sess().extended_smtp = False
        self._reset_transaction()
        await self.push(f"250 {self.hostname}")

    async def smtp_NOOP(self, arg: str) -> None:
        await self.push(R.OK)

    async def smtp_RSET(self, arg: str) -> None:
        self._reset_transaction()
        await self.push(R.OK)

    async def smtp_VRFY(self, arg: str) -> None:
        await self.push(R.VRFY)

    async def smtp_HELP(self, arg: str) -> None:
        await self.push(R.HELP)

    async def smtp_QUIT(self, arg: str) -> None:
        await self.push(R.BYE)
        if self.transport is not None:
            self.transport.close()

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.tls_active:
            await self._error(R.ALREADY_TLS)
            return
        if arg:
            await self._error("501 5.5.4 Syntaxe : STARTTLS / Syntax: STARTTLS")
            return
        # RFC 3207 §4.2: forget everything said in clear, including pipelined bytes.
        self._buf.clear()
        self._helo = None
        self._principal = None
        self._reset_transaction()
        await super().smtp_STARTTLS("")
        if self._tls_protocol is not None:
            log.info("%s TLS %s", self.peer, self._tls_description())

    async def _challenge(self, text: bytes) -> bytes | None:
        await self.push(b"334 " + base64.b64encode(text))
        line = await self._readline()
        if line is None:
            await self._error(R.LINE_TOO_LONG)
            return None
        blob = line.strip()
        if blob == b"*":
            await self._error(R.AUTH_ABORTED)
            return None
        return await self._b64(blob)

    async def _b64(self, blob: bytes) -> bytes | None:
        if blob == b"=":  # RFC 4954 §4: an empty initial response
            return b""
        try:
            return base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            await self._error(R.AUTH_BAD_BASE64)
            return None

    async def smtp_AUTH(self, arg: str) -> None:
        if self.role is not Role.SUBMISSION:
            await self._error(R.AUTH_NOT_HERE)
            return
        if not self._helo:
            await self._error(R.SEND_HELO_FIRST)
            return
        if self._principal is not None:
            await self._error(R.ALREADY_AUTH)
            return
        if self._mail is not None:  # RFC 4954 §4: not during a mail transaction
            await self._error(R.NESTED_MAIL)
            return
        parts = arg.split()
        mechanism = parts[0].upper() if parts else ""
        handler = {
            "PLAIN": self._auth_plain,
            "LOGIN": self._auth_login,
            "XOAUTH2": self._auth_bearer,
            "OAUTHBEARER": self._auth_bearer,
            "EXTERNAL": self._auth_external,
        }.get(mechanism)
        if handler is None or len(parts) > 2 or mechanism not in self._mechanisms():
            await self._error(R.AUTH_MECHANISM)
            return
        initial = parts[1].encode("ascii", "replace") if len(parts) == 2 else None
        # RFC 4954 §4: no initial response means a challenge first (LOGIN asks the user).
        first = b"Username:" if mechanism == "LOGIN" else b""
        blob = await (self._b64(initial) if initial is not None else self._challenge(first))
        if blob is None:
            return
        principal = await handler(mechanism, blob)
        if principal is None:
            return
        self._principal = principal
        await self.push(R.AUTH_OK)

    def _mechanisms(self) -> list[str]:
        names = ["PLAIN", "LOGIN"]
        if self.backend.token_auth_available:
            names += ["XOAUTH2", "OAUTHBEARER"]
        if self._peer_certificate() is not None:
            names.append("EXTERNAL")  # RFC 4422 appendix A: only with a client certificate
        return names

    def _peer_certificate(self) -> bytes | None:
        obj = self._ssl_object()
        return obj.getpeercert(binary_form=True) if obj is not None else None

    async def _password_login(self, login: str, password: str, mechanism: str) -> Principal | None:
        outcome = await self.backend.authenticate_password(
            login, password, self.peer, mechanism=f"smtp-{mechanism}"
        )
        if outcome.principal is None:
            # A temporary lock (growing delays, then a lock: issue 3 §7) is 454, not 535.
            await self._error(R.AUTH_TEMPORARY if outcome.locked else R.AUTH_FAILED)
        return outcome.principal

    async def _auth_plain(self, mechanism: str, blob: bytes) -> Principal | None:
        try:
            authzid, login, password = parse_plain(blob)
        except SaslError:
            await self._error(R.AUTH_FAILED)
            return None
        if authzid and authzid != login:  # no proxy authorisation
            await self._error(R.AUTH_FAILED)
            return None
        return await self._password_login(login, password, "PLAIN")

    async def _auth_login(self, mechanism: str, blob: bytes) -> Principal | None:
        password = await self._challenge(b"Password:")
        if password is None:
            return None
        return await self._password_login(
            blob.decode("utf-8", "replace"), password.decode("utf-8", "replace"), "LOGIN"
        )

    async def _auth_bearer(self, mechanism: str, blob: bytes) -> Principal | None:
        """XOAUTH2 and OAUTHBEARER (RFC 7628) with a professional's token (R14–R16)."""
        try:
            message = parse_xoauth2(blob) if mechanism == "XOAUTH2" else parse_oauthbearer(blob)
        except SaslError:
            await self._error(R.AUTH_FAILED)
            return None
        outcome = await self.backend.authenticate_token(message.token, self.peer, mechanism)
        if outcome.principal is not None:
            if outcome.expires_in is not None:
                # R16: the session ends when the token that opened it expires.
                self._token_timer = self.loop.call_later(
                    max(0.0, outcome.expires_in), self._token_expired
                )
            return outcome.principal
        if outcome.temporary:
            await self._error(R.AUTH_TEMPORARY)
            return None
        # RFC 7628 §3.2.2: an error challenge, the client answers ^A, then the failure.
        await self.push(b"334 " + base64.b64encode(error_challenge(outcome.error or {})))
        await self._readline()
        await self._error(R.AUTH_FAILED)
        return None

    async def _auth_external(self, mechanism: str, blob: bytes) -> Principal | None:
        """SASL EXTERNAL with the APP mailbox's TLS client certificate (R18)."""
        cert = self._peer_certificate()
        principal = await self.backend.authenticate_certificate(cert, self.peer) if cert else None
        authzid = blob.decode("utf-8", "replace")
        if principal is None or (authzid and authzid.lower() != principal.login):
            await self._error(R.AUTH_FAILED)
            return None
        return principal

    def _token_expired(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(R.TOKEN_EXPIRED.encode("ascii") + b"\r\n")
            self.transport.close()

    async def smtp_MAIL(self, arg: str) -> None:
        if not self._helo:
            await self._error(R.SEND_HELO_FIRST)
            return
        if self.role is Role.SUBMISSION and self._principal is None:
            await self._error(R.AUTH_REQUIRED)
            return
        if self._mail is not None:
            await self._error(R.NESTED_MAIL)
            return
        try:
            args = parse_mail(arg, smtputf8_allowed=bool(self._sess().extended_smtp))
        except ParamError as exc:
            reply = R.UNKNOWN_PARAMETER if exc.unknown else R.BAD_PARAMETER
            await self._error(R.SYNTAX_MAIL if str(exc) == "syntax" else reply.format(exc))
            return
        except InvalidAddress:
            await self._error(R.BAD_SENDER_ADDRESS)
            return
        if args.size is not None and args.size > self.max_message_size:
            await self.backend.refused(
                self.role, "mail", f"SIZE={args.size} over the limit", self.peer, args.sender
            )
            await self.push(R.MESSAGE_TOO_BIG.format(self.max_message_size))
            return
        if self.insecure_plaintext and not self.tls_active:
            # Benchmark-only plaintext session: no certificate, so no sender check (R5).
            self._mail = args
            await self.push(R.SENDER_OK)
            return
        peer_dn = None
        if self.role is Role.INBOUND:
            obj = self._ssl_object()
            peer_dn = peer_subject_rfc4514(obj) if obj is not None else None
            if peer_dn is None:
                await self.backend.refused(
                    self.role, "mail", "no client certificate", self.peer, args.sender
                )
                await self._error(R.CLIENT_CERT_REQUIRED)
                return
        try:
            await self.backend.check_sender(
                self.role, args.sender, self._principal, peer_dn, self.peer
            )
        except DomainError as exc:
            await self.backend.refused(self.role, "mail", exc.message, self.peer, args.sender)
            await self._error(R.reply_for(exc))
            return
        self._mail = args
        await self.push(R.SENDER_OK)

    async def smtp_RCPT(self, arg: str) -> None:
        if self._mail is None:
            await self._error(R.NEED_MAIL)
            return
        if len(self._rcpts) >= self.max_recipients:
            await self.push(R.TOO_MANY_RECIPIENTS)
            return
        try:
            args = parse_rcpt(arg)
        except ParamError as exc:
            reply = R.UNKNOWN_PARAMETER if exc.unknown else R.BAD_PARAMETER
            await self._error(R.SYNTAX_RCPT if str(exc) == "syntax" else reply.format(exc))
            return
        except InvalidAddress:
            await self._error(R.BAD_RECIPIENT_ADDRESS)
            return
        if (
            self.role is Role.SUBMISSION
            and self._mail.size is not None
            and self._mail.size > self.patient_max_size
            and _is_patient(args.recipient)
        ):
            # R29 (ENS v1.3): refused at submission, never relayed then bounced.
            await self.backend.refused(
                self.role,
                "rcpt",
                f"SIZE={self._mail.size} over the patient limit",
                self.peer,
                args.recipient,
            )
            await self.push(R.PATIENT_MESSAGE_TOO_BIG.format(self.patient_max_size))
            return
        try:
            accepted = await self.backend.check_recipient(
                self.role, args.recipient, self._mail.sender, self.peer
            )
        except DomainError as exc:
            await self.backend.refused(self.role, "rcpt", exc.message, self.peer, args.recipient)
            await self.push(R.reply_for(exc))
            return
        if all(r.address != accepted.address for r in self._rcpts):
            self._rcpts.append(
                AcceptedRecipient(
                    accepted.address, accepted.local, notify=args.notify, orcpt=args.orcpt
                )
            )
        await self.push(R.RECIPIENT_OK)

    async def smtp_DATA(self, arg: str) -> None:
        if arg:
            await self._error("501 5.5.4 Syntaxe : DATA / Syntax: DATA")
            return
        if self._mail is None:
            await self._error(R.NEED_MAIL)
            return
        if not self._rcpts:
            await self._error(R.NEED_RCPT)
            return
        await self.push(R.START_DATA)
        collector = DataCollector(max_size=self.max_message_size)
        if self._buf:
            collector.feed(bytes(self._buf))
            self._buf.clear()
        # The idle timer restarts on every chunk; this overall deadline stops a client
        # that trickles one byte at a time from holding the connection forever.
        deadline = self.loop.time() + DATA_DEADLINE_FACTOR * self._timeout_duration
        while not collector.done:
            chunk = await self._reader.read(65536)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            if self.loop.time() > deadline:
                self._timeout_cb()
                raise ConnectionResetError("DATA took too long")
            self._reset_timeout()
            collector.feed(chunk)
        self._buf[:0] = collector.leftover  # commands pipelined after the terminator
        mail, rcpts = self._mail, self._rcpts
        self._reset_transaction()
        if collector.outcome is not DataOutcome.OK:
            reply = {
                DataOutcome.TOO_BIG: R.MESSAGE_TOO_BIG.format(self.max_message_size),
                DataOutcome.HEADER_TOO_BIG: R.HEADER_TOO_BIG,
                DataOutcome.BARE_NEWLINE: R.BARE_LF,
            }[collector.outcome]
            await self.backend.refused(
                self.role, "data", collector.outcome.value, self.peer, mail.sender
            )
            await self.push(reply)
            return
        if (
            self.role is Role.SUBMISSION
            and len(collector.body) > self.patient_max_size
            and any(_is_patient(r.address) for r in rcpts)
        ):
            # R29: a message towards a patient over 25 Mo is refused whole, with the reason.
            await self.backend.refused(
                self.role, "data", "over the patient limit", self.peer, mail.sender
            )
            await self.push(R.PATIENT_MESSAGE_TOO_BIG.format(self.patient_max_size))
            return
        message = IncomingMessage(
            role=self.role,
            mail_from=mail.sender,
            recipients=rcpts,
            data=bytes(collector.body),
            peer=self.peer,
            helo=self._helo or "",
            envid=mail.envid,
            ret=mail.ret,
            body_type=mail.body,
            smtputf8=mail.smtputf8,
            principal=self._principal,
            tls=self._tls_description(),
        )
        queue_id = await self.backend.accept(message)
        await self.push(R.QUEUED.format(queue_id, queue_id))
