"""One IMAP session: states, the command gate, authentication and mailbox commands.

States and the commands each allows (RFC 9051 §3, RFC 3501 §3): one table, `GATE`. A
command in the wrong state gets `BAD`; a domain error gets `NO` with the response code of
`responses.no_for` (RFC 5530). Selected-state commands live in `selected.py`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mssante.domain.errors import DomainError
from mssante.formats.sasl import (
    SaslError,
    error_challenge,
    parse_oauthbearer,
    parse_plain,
    parse_xoauth2,
)
from mssante.imap import command_args as A
from mssante.imap import parser as P
from mssante.imap import responses as R
from mssante.imap.message_strings import imap_astring, imap_string
from mssante.imap.server import Connection, ImapLimits
from mssante.services.mailboxes import Principal
from mssante.services.mailstore import DELIMITER, SHARED_PREFIX, Folder, MailStore, MessageMeta


class State(Enum):
    NOT_AUTHENTICATED = 1
    AUTHENTICATED = 2
    SELECTED = 3


ANY = frozenset(State)
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


@dataclass
class ImapContext:
    """What every session of one listener shares."""

    store: MailStore
    backend: Any  # runtime.Backend: authenticate_password/token/certificate
    tls_context: ssl.SSLContext
    limits: ImapLimits
    hostname: str
    quota_bytes: int
    store_mailboxes: Any = None  # MailboxService, for the authzid check


@dataclass
class Selection:
    folder: Folder
    readonly: bool
    snapshot: list[MessageMeta] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)  # SEARCHRES (RFC 5182), UIDs
    keywords: set[str] = field(default_factory=set)  # announced in FLAGS


class Session:
    def __init__(self, conn: Connection, ctx: ImapContext, *, tls_from_start: bool) -> None:
        self.conn = conn
        self.ctx = ctx
        self.tls = tls_from_start
        self.state = State.NOT_AUTHENTICATED
        self.principal: Principal | None = None
        self.selection: Selection | None = None
        self.enabled: set[str] = set()
        self.logged_out = False
        self._token_timer: asyncio.TimerHandle | None = None
        from mssante.imap import selected  # the selected-state handlers

        self.selected = selected
        self.gate: dict[str, tuple[frozenset[State], Callable[[P.Command], Awaitable[None]]]] = {
            "CAPABILITY": (ANY, self.cmd_capability),
            "NOOP": (ANY, self.cmd_noop),
            "LOGOUT": (ANY, self.cmd_logout),
            "ID": (ANY, self.cmd_id),
            "STARTTLS": (NOT_AUTH, self.cmd_starttls),
            "LOGIN": (NOT_AUTH, self.cmd_login),
            "AUTHENTICATE": (NOT_AUTH, self.cmd_authenticate),
            "ENABLE": (AUTH, self.cmd_enable),
            "NAMESPACE": (AUTH, self.cmd_namespace),
            "LIST": (AUTH, self.cmd_list),
            "LSUB": (AUTH, self.cmd_list),
            "STATUS": (AUTH, self.cmd_status),
            "CREATE": (AUTH, self.cmd_create),
            "DELETE": (AUTH, self.cmd_delete),
            "RENAME": (AUTH, self.cmd_rename),
            "SUBSCRIBE": (AUTH, self.cmd_subscribe),
            "UNSUBSCRIBE": (AUTH, self.cmd_subscribe),
            "SELECT": (AUTH, self.cmd_select),
            "EXAMINE": (AUTH, self.cmd_select),
            "APPEND": (AUTH, self.cmd_append),
            "GETQUOTAROOT": (AUTH, self.cmd_quota),
            "GETQUOTA": (AUTH, self.cmd_quota),
            "SETQUOTA": (AUTH, self.cmd_setquota),
            "IDLE": (AUTH, selected.cmd_idle_for(self)),
            **{name: (SELECTED, handler) for name, handler in selected.handlers(self).items()},
        }

    # -- plumbing ----------------------------------------------------------------------

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    def capabilities(self) -> str:
        if not self.tls:
            return " ".join(R.CAPABILITIES_BEFORE_TLS)
        caps = [*list(R.CAPABILITIES_COMMON), f"APPENDLIMIT={self.ctx.limits.max_literal}"]
        if self.state is State.NOT_AUTHENTICATED:
            caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            if self.ctx.backend.token_auth_available:
                caps += ["AUTH=XOAUTH2", "AUTH=OAUTHBEARER"]
            if self._peer_certificate() is not None:
                caps.append("AUTH=EXTERNAL")
        return " ".join(caps)

    def _peer_certificate(self) -> bytes | None:
        obj = self.conn.ssl_object
        return obj.getpeercert(binary_form=True) if obj is not None else None

    async def greet(self) -> None:
        await self.conn.send(
            f"* OK [CAPABILITY {self.capabilities()}] {self.ctx.hostname} IMAP MSSante pret"
        )

    async def bad(self, error: P.ParseError) -> None:
        if error.code == "BADCHARSET" and error.tag:  # RFC 3501 §6.4.4: NO, not BAD
            await self.conn.send(f"{error.tag} NO [BADCHARSET (US-ASCII UTF-8)] {error.message}")
            return
        code = f"[{error.code}] " if error.code else ""
        await self.conn.send(f"{error.tag or '*'} BAD {code}{error.message}")
        await self._count_bad()

    async def _count_bad(self) -> None:
        self._bad = getattr(self, "_bad", 0) + 1
        if self._bad >= self.ctx.limits.max_bad_commands:
            await self.conn.send("* BYE Trop de commandes invalides / Too many bad commands")
            self.logged_out = True

    async def dispatch(self, command: P.Command) -> None:
        entry = self.gate.get(command.name)
        if entry is None:
            await self.conn.send(f"{command.tag} BAD Commande inconnue / Unknown command")
            await self._count_bad()
            return
        states, handler = entry
        if self.state not in states:
            await self.conn.send(
                f"{command.tag} BAD Commande interdite dans cet etat / Wrong state for "
                f"{command.name}"
            )
            await self._count_bad()
            return
        if self.state is State.SELECTED and self.selection is not None:
            try:  # a member removed from an ORG BAL loses access at once (issue 4 §4)
                fresh = await asyncio.to_thread(
                    self.ctx.store.check, self._principal(), self.selection.folder
                )
                self.selection.folder = fresh
            except DomainError:
                self.selection = None
                self.state = State.AUTHENTICATED
                await self.conn.send("* OK [CLOSED] Acces retire / Access withdrawn")
                await self.conn.send(f"{command.tag} NO [NOPERM] Acces retire / Access withdrawn")
                return
        try:
            await handler(command)
        except DomainError as exc:
            code, text = R.no_for(exc)
            await self.conn.send(f"{command.tag} NO [{code}] {text}")

    def _principal(self) -> Principal:
        assert self.principal is not None
        return self.principal

    async def ok(
        self, command: P.Command, text: str = "termine / completed", code: str = ""
    ) -> None:
        prefix = f"[{code}] " if code else ""
        await self.conn.send(f"{command.tag} OK {prefix}{command.name} {text}")

    async def close(self) -> None:
        if self._token_timer is not None:
            self._token_timer.cancel()

    # -- any state ---------------------------------------------------------------------

    async def cmd_capability(self, c: P.Command) -> None:
        await self.conn.send(f"* CAPABILITY {self.capabilities()}")
        await self.ok(c)

    async def cmd_noop(self, c: P.Command) -> None:
        if self.state is State.SELECTED:
            await self.selected.sync(self, expunges=True)
        await self.ok(c)

    async def cmd_logout(self, c: P.Command) -> None:
        await self.conn.send("* BYE Au revoir / Logging out")
        await self.ok(c)
        self.logged_out = True

    async def cmd_id(self, c: P.Command) -> None:
        await self.conn.send('* ID ("name" "mssante" "vendor" "mssante" "support-url" NIL)')
        await self.ok(c)

    # -- not authenticated -------------------------------------------------------------

    async def cmd_starttls(self, c: P.Command) -> None:
        if self.tls:
            await self.conn.send(f"{c.tag} BAD TLS deja actif / TLS already active")
            return
        await self.ok(c, "Negociation TLS / Begin TLS negotiation now")
        await self.conn.start_tls(self.ctx.tls_context)
        self.tls = True

    async def cmd_login(self, c: P.Command) -> None:
        if not self.tls:  # R12: LOGINDISABLED before TLS
            await self.conn.send(f"{c.tag} NO [PRIVACYREQUIRED] TLS requis / TLS required")
            return
        args: A.LoginArgs = c.args[0]
        await self._password(c, args.username, args.password, "LOGIN")

    async def _password(self, c: P.Command, login: str, password: str, mechanism: str) -> None:
        outcome = await self.ctx.backend.authenticate_password(
            login, password, self.conn.peer, mechanism=f"imap-{mechanism}"
        )
        if outcome.principal is None:
            if outcome.locked:
                await self.conn.send(
                    f"{c.tag} NO [UNAVAILABLE] Acces temporairement bloque / Temporarily locked"
                )
            else:
                await self.conn.send(
                    f"{c.tag} NO [AUTHENTICATIONFAILED] Identifiants invalides / "
                    "Authentication failed"
                )
            return
        await self._logged_in(c, outcome.principal)

    async def _logged_in(
        self, c: P.Command, principal: Principal, expires_in: float | None = None
    ) -> None:
        self.principal = principal
        self.state = State.AUTHENTICATED
        if expires_in is not None:  # R16: the session ends with its token
            loop = asyncio.get_running_loop()
            self._token_timer = loop.call_later(max(0.0, expires_in), self._token_expired)
        await self.conn.send(
            f"{c.tag} OK [CAPABILITY {self.capabilities()}] Authentifie / Logged in"
        )

    def _token_expired(self) -> None:
        self.conn.write(b"* BYE Jeton expire / Token expired\r\n")
        self.logged_out = True
        self.conn.writer.close()

    async def _continuation(self, challenge: bytes = b"") -> bytes | None:
        await self.conn.send(b"+ " + base64.b64encode(challenge))
        line = await self.conn.readline()
        if line is None:
            return None
        line = line.strip()
        if line == b"*":
            return None
        try:
            return base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            return None

    async def cmd_authenticate(self, c: P.Command) -> None:
        args: A.AuthenticateArgs = c.args[0]
        mech = args.mechanism
        offered = {"PLAIN", "LOGIN"} if self.tls else set()
        if self.tls and self.ctx.backend.token_auth_available:
            offered |= {"XOAUTH2", "OAUTHBEARER"}
        if self.tls and self._peer_certificate() is not None:
            offered.add("EXTERNAL")
        if mech not in offered:
            reason = "[PRIVACYREQUIRED] TLS requis" if not self.tls else "Mecanisme inconnu"
            await self.conn.send(f"{c.tag} NO {reason} / Unsupported mechanism")
            return
        blob = args.initial_response
        if mech == "LOGIN":  # draft-murchison-sasl-login: user name, then password
            user = blob if blob is not None else await self._continuation(b"Username:")
            secret = await self._continuation(b"Password:") if user is not None else None
            if user is None or secret is None:
                await self.conn.send(f"{c.tag} BAD Authentification abandonnee / Aborted")
                return
            await self._password(
                c, user.decode("utf-8", "replace"), secret.decode("utf-8", "replace"), "LOGIN"
            )
            return
        if blob is None:
            blob = await self._continuation()
            if blob is None:
                await self.conn.send(f"{c.tag} BAD Authentification abandonnee / Aborted")
                return
        failed = f"{c.tag} NO [AUTHENTICATIONFAILED] Identifiants invalides / Authentication failed"
        try:
            if mech == "PLAIN":
                authzid, login, password = parse_plain(blob)
                if authzid and authzid != login:
                    await self.conn.send(failed)
                    return
                await self._password(c, login, password, "PLAIN")
                return
            if mech == "EXTERNAL":
                cert = self._peer_certificate()
                principal = (
                    await self.ctx.backend.authenticate_certificate(cert, self.conn.peer)
                    if cert else None
                )  # fmt: skip
                wanted = blob.decode("utf-8", "replace")
                if principal is None or (wanted and wanted.lower() != principal.login):
                    await self.conn.send(failed)
                    return
                await self._logged_in(c, principal)
                return
            message = parse_xoauth2(blob) if mech == "XOAUTH2" else parse_oauthbearer(blob)
        except SaslError:
            await self.conn.send(failed)
            return
        outcome = await self.ctx.backend.authenticate_token(
            message.token, self.conn.peer, f"imap-{mech}"
        )
        if outcome.principal is not None and message.authzid:
            if not await self._may_act_as(outcome.principal, message.authzid):
                await self.conn.send(failed)
                return
        if outcome.principal is not None:
            await self._logged_in(c, outcome.principal, outcome.expires_in)
            return
        if outcome.temporary:
            await self.conn.send(f"{c.tag} NO [UNAVAILABLE] Service indisponible / Try later")
            return
        # RFC 7628 §3.2.2: error challenge, the client answers ^A, then NO.
        await self.conn.send(b"+ " + base64.b64encode(error_challenge(outcome.error or {})))
        await self.conn.readline()
        await self.conn.send(failed)

    async def _may_act_as(self, principal: Principal, authzid: str) -> bool:
        """A token's `user=`/`a=` must name a mailbox its holder may use (R15)."""
        if authzid.strip().lower() == principal.login:
            return True
        try:
            await asyncio.to_thread(
                self.ctx.store_mailboxes.check_can_send_as, principal, authzid.strip()
            )
        except DomainError:
            return False
        return True

    # -- authenticated -----------------------------------------------------------------

    async def cmd_enable(self, c: P.Command) -> None:
        args: A.EnableArgs = c.args[0]
        newly = [
            cap for cap in args.capabilities
            if cap in ("CONDSTORE", "QRESYNC", "IMAP4REV2") and cap not in self.enabled
        ]  # fmt: skip
        self.enabled.update(newly)
        self.conn.utf8 = "IMAP4REV2" in self.enabled
        if "QRESYNC" in newly:
            self.enabled.add("CONDSTORE")
        await self.conn.send("* ENABLED" + "".join(f" {cap}" for cap in newly))
        await self.ok(c)

    async def cmd_namespace(self, c: P.Command) -> None:
        shared = imap_string(SHARED_PREFIX + DELIMITER).decode()
        await self.conn.send(f'* NAMESPACE (("" "{DELIMITER}")) NIL (({shared} "{DELIMITER}"))')
        await self.ok(c)

    async def _folders(self) -> list[Folder]:
        return await asyncio.to_thread(self.ctx.store.folders_for, self._principal())

    async def cmd_list(self, c: P.Command) -> None:
        from mssante.imap.listing import list_responses

        for line in await list_responses(self, c):
            await self.conn.send(line)
        await self.ok(c)

    async def cmd_status(self, c: P.Command) -> None:
        args: A.StatusArgs = c.args[0]
        folder = await asyncio.to_thread(self.ctx.store.resolve, self._principal(), args.mailbox)
        await self.conn.send(await self.status_line(folder, args.items))
        await self.ok(c)

    async def status_line(self, folder: Folder, items: tuple[str, ...]) -> bytes:
        st = await asyncio.to_thread(self.ctx.store.status, self._principal(), folder)
        values = {
            "MESSAGES": st.messages, "UIDNEXT": st.uidnext, "UIDVALIDITY": st.uidvalidity,
            "UNSEEN": st.unseen, "RECENT": 0, "SIZE": st.size, "DELETED": st.deleted,
            "HIGHESTMODSEQ": st.highestmodseq, "APPENDLIMIT": self.ctx.limits.max_literal,
        }  # fmt: skip
        body = " ".join(f"{item} {values[item]}" for item in items if item in values)
        from mssante.imap.listing import wire_name

        return b"* STATUS " + wire_name(self, folder.imap_name) + f" ({body})".encode()

    async def cmd_create(self, c: P.Command) -> None:
        args: A.CreateArgs = c.args[0]
        if args.mailbox.upper() == "INBOX":
            await self.conn.send(f"{c.tag} NO [ALREADYEXISTS] INBOX existe / INBOX exists")
            return
        special = args.special_use[0] if args.special_use else None
        await asyncio.to_thread(
            self.ctx.store.create_folder, self._principal(), args.mailbox, special
        )
        await self.ok(c)

    async def cmd_delete(self, c: P.Command) -> None:
        args: A.MailboxArgs = c.args[0]
        await asyncio.to_thread(self.ctx.store.delete_folder, self._principal(), args.mailbox)
        await self.ok(c)

    async def cmd_rename(self, c: P.Command) -> None:
        args: A.RenameArgs = c.args[0]
        await asyncio.to_thread(
            self.ctx.store.rename_folder, self._principal(), args.source, args.destination
        )
        await self.ok(c)

    async def cmd_subscribe(self, c: P.Command) -> None:
        args: A.MailboxArgs = c.args[0]
        await asyncio.to_thread(
            self.ctx.store.subscribe, self._principal(), args.mailbox, c.name == "SUBSCRIBE"
        )
        await self.ok(c)

    async def cmd_select(self, c: P.Command) -> None:
        await self.selected.select(self, c)

    async def cmd_append(self, c: P.Command) -> None:
        args: A.AppendArgs = c.args[0]
        try:
            folder = await asyncio.to_thread(
                self.ctx.store.resolve, self._principal(), args.mailbox
            )
        except DomainError:
            await self.conn.send(f"{c.tag} NO [TRYCREATE] Dossier inexistant / No such mailbox")
            return
        used = await asyncio.to_thread(self.ctx.store.mailbox_usage, folder.mailbox_id)
        if used + len(args.message) > self.ctx.quota_bytes:
            await self.conn.send(f"{c.tag} NO [OVERQUOTA] Quota depasse / Over quota")
            return
        uid = await asyncio.to_thread(
            self.ctx.store.append, self._principal(), folder, args.message, args.flags,
            args.internal_date,
        )  # fmt: skip
        if self.selection is not None and self.selection.folder.id == folder.id:
            await self.selected.sync(self, expunges=False)
        await self.ok(c, code=f"APPENDUID {folder.uidvalidity} {uid}")

    async def cmd_quota(self, c: P.Command) -> None:
        limit_kb = self.ctx.quota_bytes // 1024
        if c.name == "GETQUOTAROOT":
            args: A.MailboxArgs = c.args[0]
            folder = await asyncio.to_thread(
                self.ctx.store.resolve, self._principal(), args.mailbox
            )
            root = folder.mailbox_address
            await self.conn.send(
                b"* QUOTAROOT " + imap_astring(args.mailbox) + b" " + imap_string(root)
            )
        else:
            root = c.args[0].root
            boxes = {f.mailbox_address: f for f in await self._folders()}
            if root not in boxes:
                await self.conn.send(f"{c.tag} NO [NONEXISTENT] Racine inconnue / No such root")
                return
            folder = boxes[root]
        used = await asyncio.to_thread(self.ctx.store.mailbox_usage, folder.mailbox_id)
        await self.conn.send(
            b"* QUOTA " + imap_string(root) + f" (STORAGE {used // 1024} {limit_kb})".encode()
        )
        await self.ok(c)

    async def cmd_setquota(self, c: P.Command) -> None:
        await self.conn.send(
            f"{c.tag} NO [NOPERM] Quota fixe par l'operateur / Set by the operator"
        )
