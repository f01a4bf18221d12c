"""Server-side web sessions, the 2-hour inactivity rule, and the state of OIDC logins.

Sessions (SPEC §1.6: "verrouillage automatique après 2h d'inactivité", SC.SSI/IE.58)
    :meth:`WebSessionService.create` gives a random token (32 bytes, URL-safe) that the web
    layer puts in an HttpOnly cookie; only its SHA-256 is stored (``web_sessions``), so a
    copy of the database opens no session. :meth:`~WebSessionService.touch` answers who the
    token speaks for, and refuses it (:class:`SessionExpired`, an ``AuthenticationFailed``)
    once ``idle_timeout`` (2 hours) has passed since the last activity, or
    ``absolute_timeout`` (12 hours) since the login, whatever the activity. An expired session
    is deleted at once: the user logs in again with Pro Santé Connect.

    ``last_seen_at`` is written at most once per ``touch_interval`` (a minute for the 2-hour
    rule, less for shorter timeouts) so that a page's requests do not each take a write
    lock; a session therefore locks up to that much *earlier* than 2 hours, never later.

Login states (R61)
    Between the redirect to the provider and its callback, the ``LoginState`` of
    :class:`~mssante.identity.RelyingParty` (``state``, ``nonce``, PKCE ``code_verifier``)
    is kept here under a random key that the web layer puts in a short-lived cookie; the
    key binds the callback to the browser that started the login (no login CSRF). A state
    is used once (:meth:`~WebSessionService.pop_login_state`) and expires after 10 minutes.

Traces (R63)
    ``web.login`` ``ok`` (with the mechanism) or ``refused`` (with the reason),
    ``web.logout``, ``web.session.expired`` (``reason=idle`` or ``reason=lifetime``). A trace
    or a log line never holds a token, a cookie or a code: only the first 16 hex digits of
    the token's SHA-256 (``session=…``), to follow one session from login to logout.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, delete, insert, or_, select, update

from mssante.domain.errors import AuthenticationFailed
from mssante.identity import LoginState, token_hash
from mssante.services import traces
from mssante.services.mailboxes import Principal
from mssante.storage.database import Database, as_utc
from mssante.storage.schema import login_states, users, web_sessions

__all__ = [
    "ABSOLUTE_TIMEOUT",
    "IDLE_TIMEOUT",
    "LOGIN_STATE_LIFETIME",
    "SessionExpired",
    "WebSessionService",
]

log = logging.getLogger("mssante.web_sessions")

IDLE_TIMEOUT = 2 * 3600  # SC.SSI/IE.58
ABSOLUTE_TIMEOUT = 12 * 3600
LOGIN_STATE_LIFETIME = 600
MAX_TOUCH_INTERVAL = 60.0
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,128}")

ExpiryReason = Literal["idle", "lifetime", "account-inactive"]


class SessionExpired(AuthenticationFailed):
    """The session existed but is over: ``reason`` is ``idle``, ``lifetime`` or
    ``account-inactive`` (the user was disabled meanwhile)."""

    code = "session-expired"

    def __init__(self, message: str, reason: ExpiryReason) -> None:
        super().__init__(message)
        self.reason: ExpiryReason = reason


def _digest(value: str) -> str:
    """The full SHA-256 (hex) under which a token or a key is stored."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _purge_reason(expires_at: datetime | None, now: datetime) -> ExpiryReason:
    return "lifetime" if (as_utc(expires_at) or now) <= now else "idle"


class WebSessionService:
    """Web sessions and OIDC login states, in the database (every node sees them).

    Durations are in seconds; ``clock`` returns epoch seconds (tests pass a fake one).
    """

    def __init__(
        self,
        db: Database,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        absolute_timeout: float = ABSOLUTE_TIMEOUT,
        login_state_lifetime: float = LOGIN_STATE_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if idle_timeout <= 0 or absolute_timeout <= 0 or login_state_lifetime <= 0:
            raise ValueError("session durations must be positive")
        self.db = db
        self.idle_timeout = float(idle_timeout)
        self.absolute_timeout = float(absolute_timeout)
        self.login_state_lifetime = float(login_state_lifetime)
        self.touch_interval = min(MAX_TOUCH_INTERVAL, self.idle_timeout / 20)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- sessions -----------------------------------------------------------------------

    def create(self, principal: Principal, *, source: str | None, mechanism: str) -> str:
        """Open a session for ``principal`` (traced ``web.login ok``); returns its token."""
        token = secrets.token_urlsafe(32)
        now = self._now()
        with self.db.write() as conn:
            self._purge(conn, now)
            conn.execute(
                insert(web_sessions).values(
                    token_hash=_digest(token),
                    user_id=principal.user_id,
                    id_nat_ps=principal.id_nat_ps,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(seconds=self.absolute_timeout),
                    source=(source or "")[:255] or None,
                )
            )
            traces.record(
                conn,
                "web.login",
                "ok",
                actor=principal.login,
                peer=source,
                detail=f"mechanism={mechanism} session={token_hash(token)}",
                at=now,
            )
        log.info(
            "web login of %s by %s (session %s)", principal.login, mechanism, token_hash(token)
        )
        return token

    def touch(self, token: str) -> Principal:
        """Who the session speaks for; records the activity. Raises ``AuthenticationFailed``
        (:class:`SessionExpired` when it existed but is over)."""
        if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
            raise AuthenticationFailed("unknown session")
        digest = _digest(token)
        query = (
            select(
                web_sessions.c.last_seen_at,
                web_sessions.c.expires_at,
                users.c.id,
                users.c.login,
                users.c.kind,
                users.c.id_nat_ps,
                users.c.status,
            )
            .join(users, users.c.id == web_sessions.c.user_id)
            .where(web_sessions.c.token_hash == digest)
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise AuthenticationFailed("unknown session")
        now = self._now()
        last_seen = as_utc(row.last_seen_at) or now
        expires_at = as_utc(row.expires_at) or now
        reason: ExpiryReason | None = None
        if now >= expires_at:
            reason = "lifetime"
        elif (now - last_seen).total_seconds() >= self.idle_timeout:
            reason = "idle"
        elif row.status != "active":
            reason = "account-inactive"
        if reason is not None:
            idle = int((now - last_seen).total_seconds())
            self._end(digest, token, "web.session.expired", f"reason={reason} idle={idle}s")
            raise SessionExpired(f"session over ({reason})", reason)
        if (now - last_seen).total_seconds() >= self.touch_interval:
            with self.db.write() as conn:
                conn.execute(
                    update(web_sessions)
                    .where(web_sessions.c.token_hash == digest, web_sessions.c.last_seen_at < now)
                    .values(last_seen_at=now)
                )
        return Principal(user_id=row.id, login=row.login, kind=row.kind, id_nat_ps=row.id_nat_ps)

    def revoke(self, token: str, *, source: str | None = None, reason: str = "logout") -> bool:
        """End the session (traced ``web.logout``); False when there was none."""
        if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
            return False
        return self._end(_digest(token), token, "web.logout", f"reason={reason}", source)

    def login_refused(
        self, *, source: str | None, reason: str, mechanism: str, actor: str | None = None
    ) -> None:
        """Trace a login that did not open a session (``web.login refused``)."""
        with self.db.write() as conn:
            traces.record(
                conn,
                "web.login",
                "refused",
                actor=actor,
                peer=source,
                detail=f"mechanism={mechanism} reason={reason}"[:300],
                at=self._now(),
            )
        log.info("web login refused (%s): %s", mechanism, reason[:120])

    def purge(self) -> int:
        """Delete expired sessions and login states (each expired session is traced)."""
        with self.db.write() as conn:
            return self._purge(conn, self._now())

    def _end(
        self, digest: str, token: str, action: str, detail: str, source: str | None = None
    ) -> bool:
        now = self._now()
        with self.db.write() as conn:
            row = conn.execute(
                select(users.c.login)
                .join(web_sessions, web_sessions.c.user_id == users.c.id)
                .where(web_sessions.c.token_hash == digest)
            ).first()
            if row is None:
                return False
            conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == digest))
            traces.record(
                conn,
                action,
                "ok",
                actor=row.login,
                peer=source,
                detail=f"{detail} session={token_hash(token)}",
                at=now,
            )
        log.info("%s of %s (session %s): %s", action, row.login, token_hash(token), detail)
        return True

    def _purge(self, conn: Connection, now: datetime) -> int:
        idle_limit = now - timedelta(seconds=self.idle_timeout)
        over = or_(web_sessions.c.expires_at <= now, web_sessions.c.last_seen_at <= idle_limit)
        rows = conn.execute(
            select(web_sessions.c.token_hash, web_sessions.c.expires_at, users.c.login)
            .join(users, users.c.id == web_sessions.c.user_id)
            .where(over)
        ).all()
        if rows:
            conn.execute(delete(web_sessions).where(over))
            traces.write(
                conn,
                [
                    traces.event(
                        "web.session.expired",
                        "ok",
                        actor=r.login,
                        detail=f"reason={_purge_reason(r.expires_at, now)} "
                        f"session={r.token_hash[:16]} (purged)",
                        at=now,
                    )
                    for r in rows
                ],
            )
        stale = now - timedelta(seconds=self.login_state_lifetime)
        conn.execute(delete(login_states).where(login_states.c.created_at <= stale))
        return len(rows)

    # -- login states (OIDC authorization code flow) ------------------------------------

    def save_login_state(self, state: LoginState) -> str:
        """Keep ``state`` until the callback; returns the key (for a cookie) that finds it."""
        key = secrets.token_urlsafe(32)
        now = self._now()
        created = datetime.fromtimestamp(state.created_at, UTC) if state.created_at else now
        with self.db.write() as conn:
            stale = now - timedelta(seconds=self.login_state_lifetime)
            conn.execute(delete(login_states).where(login_states.c.created_at <= stale))
            conn.execute(
                insert(login_states).values(
                    key=_digest(key),
                    state=state.state,
                    nonce=state.nonce,
                    code_verifier=state.code_verifier,
                    created_at=created,
                )
            )
        return key

    def pop_login_state(self, key: str) -> LoginState | None:
        """The state saved under ``key``, once; None when unknown, used or expired."""
        if not isinstance(key, str) or not _TOKEN_SHAPE.fullmatch(key):
            return None
        digest = _digest(key)
        with self.db.write() as conn:
            row = conn.execute(select(login_states).where(login_states.c.key == digest)).first()
            if row is None:
                return None
            conn.execute(delete(login_states).where(login_states.c.key == digest))
        created = as_utc(row.created_at)
        if created is None or (self._now() - created).total_seconds() > self.login_state_lifetime:
            return None
        return LoginState(
            state=row.state,
            nonce=row.nonce,
            code_verifier=row.code_verifier,
            created_at=created.timestamp(),
        )
