"""Password logins, the second factor of staff without a card (R62), and login throttling.

Who logs in with a password
    Professionals use Pro Santé Connect (R14); the password path serves the staff of a
    structure who act on its ORG (or CAB) mailbox without a CPS/e-CPS card, and the owner
    logins of mailboxes. Passwords are argon2id (`services.passwords`) and must follow the
    configurable `AuthPolicy` (length, character classes).

Second factor (R62, RFC 6238)
    A user with an enrolled TOTP secret types the password immediately followed by the
    current 6-digit code in the one password field mail clients have (`Secret…123456`).
    Codes of the previous, current and next 30-second steps are accepted (±1 step for clock
    drift); a step once used is stored in `users.totp_last_counter` and never accepted again,
    so an overheard code cannot be replayed. With `staff_require_totp`, a staff user without
    an enrolled secret is refused altogether (R62 is unconfirmed, hence a setting).

Throttling (issue item 7)
    Failed attempts are counted in `auth_throttle` under `account:<login>` and
    `source:<address>` (an IPv6 source counts as its /64). Counts start over once
    `failure_window` has passed since the first failure of a series (and since the end of
    the last lock). From the 4th failure on, the reply is delayed by
    `base_delay × 2^(failures−3)`, at most `max_delay` (the SMTP backend sleeps before it
    answers). At `max_failures_per_account` (resp. `_per_source`) the key is locked for
    `lock_duration`; each further failure after a lock expires, within the window, locks it
    again for twice as long, up to `max_lock_duration` — so a lock is always temporary and
    the real user gets back in. A success clears the account's count, not the source's.

    A locked account or source is refused *before* the password is looked at, and without
    spending the argon2 time: locks are kept per login string, existing or not, so skipping
    the hash tells an attacker nothing the "locked" answer does not already say, and a flood
    against a locked key must not cost 64 MiB and tens of milliseconds of CPU per attempt.
    Such refusals do not count as new failures (nothing was guessed, and a clinic's shared
    NAT address must not be locked because one mail client retries a locked account); they
    are delayed by `max_delay` and traced like every other attempt.

    Attempts checked at the same moment can each pass the lock check before any of them is
    counted, so the number of guesses is bounded by the threshold plus the concurrency of the
    listener; the delay and the lock still apply from then on.

Traces (R63)
    Every attempt writes one `login` trace event, `ok` or `refused`, with the login, the
    source and `mechanism=… reason=…` — never the password or the code. A login that does
    not look like an address (a password typed in the login field, say) is traced and
    counted as `unknown:<sha-256 prefix>`, never as typed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import Connection, Row, delete, insert, or_, select, update

from mssante.domain.errors import AlreadyExists, NotFound, RuleViolation
from mssante.domain.mailboxes import MailboxStatus, MailboxType, normalise_address
from mssante.services import traces
from mssante.services.mailboxes import MailboxService, Principal
from mssante.services.passwords import hash_password, verify_password
from mssante.storage.database import Database, as_utc, utcnow
from mssante.storage.schema import auth_throttle, mailbox_members, mailboxes, users
from mssante.storage.upsert import dialect_insert

log = logging.getLogger("mssante.auth")

TOTP_DIGITS = 6
TOTP_STEP = 30  # seconds (RFC 6238 default, what every authenticator app uses)
TOTP_WINDOW = 1  # steps accepted before and after the current one

# Reason codes of refused logins (trace detail, LoginOutcome.reason).
OK = "ok"
BAD_CREDENTIALS = "bad-credentials"
INACTIVE_ACCOUNT = "inactive-account"
MISSING_SECOND_FACTOR = "missing-second-factor"
BAD_SECOND_FACTOR = "bad-second-factor"
TOTP_REPLAY = "totp-replay"
SECOND_FACTOR_REQUIRED = "second-factor-required"
LOCKED_ACCOUNT = "locked-account"
LOCKED_SOURCE = "locked-source"
LOCKED_REASONS = frozenset({LOCKED_ACCOUNT, LOCKED_SOURCE})

_LOGIN_SHAPE = re.compile(r"[^\s@]{1,64}@[^\s@]{1,253}")
_PURGE_EVERY = 100  # failures between two sweeps of stale throttle rows


@dataclass(frozen=True)
class AuthPolicy:
    """Password rules and throttling (`[auth]` in the configuration; durations in seconds)."""

    password_min_length: int = 12
    password_require_classes: int = 3  # of lower case, upper case, digit, other
    max_failures_per_account: int = 10
    max_failures_per_source: int = 20
    failure_window: float = 900
    lock_duration: float = 900
    max_lock_duration: float = 3600
    base_delay: float = 0.25
    max_delay: float = 4.0
    staff_require_totp: bool = False

    def delay_for(self, failures: int) -> float:
        """The growing delay after `failures` failures in a row: none up to 3."""
        if failures <= 3:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** min(failures - 3, 32)))

    def lock_for(self, failures: int, limit: int) -> float | None:
        """Seconds of lock at `failures` (None below `limit`), doubling past it."""
        if failures < limit:
            return None
        return float(
            min(self.max_lock_duration, self.lock_duration * 2 ** min(failures - limit, 32))
        )


@dataclass(frozen=True)
class LoginOutcome:
    """What a password login gave; `reason` is a code for traces, never shown to the peer."""

    principal: Principal | None
    delay: float
    locked_until: datetime | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.principal is not None

    @property
    def locked(self) -> bool:
        """Refused by a temporary lock without checking (SMTP `454 4.7.0`, not 535)."""
        return self.reason in LOCKED_REASONS


@dataclass(frozen=True)
class ThrottleState:
    key: str
    failures: int
    first_failure_at: datetime | None
    last_failure_at: datetime | None
    locked_until: datetime | None

    @classmethod
    def from_row(cls, row: Row[tuple[object, ...]]) -> ThrottleState:
        m = row._mapping
        return cls(
            key=str(m["key"]),
            failures=int(m["failures"] or 0),
            first_failure_at=as_utc(m["first_failure_at"]),
            last_failure_at=as_utc(m["last_failure_at"]),
            locked_until=as_utc(m["locked_until"]),
        )

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


@dataclass(frozen=True)
class UserInfo:
    login: str
    kind: str
    display_name: str
    status: str
    totp_enrolled: bool
    password_set: bool
    password_changed_at: datetime | None
    member_of: tuple[str, ...]
    locked_until: datetime | None


class PasswordPolicyViolation(RuleViolation):
    """A new password breaks the policy; `code` says which rule (the CLI prints it)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def login_label(login: str) -> str:
    """The login as counted and traced: lower case, or a hash when it is not address-like."""
    value = login.strip().lower()
    if len(value) <= 320 and _LOGIN_SHAPE.fullmatch(value):
        return value
    digest = hashlib.sha256(login.encode("utf-8", "surrogatepass")).hexdigest()
    return f"unknown:{digest[:16]}"


def source_label(source: str) -> str:
    """The source address as counted: an IPv6 address counts as its /64."""
    try:
        addr = ipaddress.ip_address(source.strip().strip("[]"))
    except ValueError:
        return source.strip()[:255] or "unknown"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def account_key(login: str) -> str:
    return f"account:{login_label(login)}"


def source_key(source: str) -> str:
    return f"source:{source_label(source)}"


def _character_classes(password: str) -> int:
    lower = any(c.islower() for c in password)
    upper = any(c.isupper() for c in password)
    digit = any(c.isdigit() for c in password)
    other = any(not c.isalnum() for c in password)
    return lower + upper + digit + other


def _totp_counter(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_STEP


class AuthService:
    """Password logins with throttling and TOTP; staff enrolment (`mssante user …`)."""

    def __init__(
        self,
        db: Database,
        mailboxes: MailboxService,
        policy: AuthPolicy | None = None,
        *,
        issuer: str = "MSSanté",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.mailboxes = mailboxes
        self.policy = policy or AuthPolicy()
        self.issuer = issuer
        self.clock = clock
        self._failures_since_purge = 0

    # -- password policy ----------------------------------------------------------------

    def check_password_policy(self, password: str, *, login: str | None = None) -> None:
        """Raise PasswordPolicyViolation (a RuleViolation) when `password` is not allowed."""
        policy = self.policy
        if len(password) < policy.password_min_length:
            raise PasswordPolicyViolation(
                f"le mot de passe doit contenir au moins {policy.password_min_length} caractères",
                "password-too-short",
            )
        if any(c in password for c in "\x00\r\n"):
            raise PasswordPolicyViolation(
                "le mot de passe ne doit pas contenir de caractère nul ni de fin de ligne",
                "password-control-character",
            )
        if _character_classes(password) < policy.password_require_classes:
            raise PasswordPolicyViolation(
                f"le mot de passe doit mêler au moins {policy.password_require_classes} "
                "types de caractères parmi minuscules, majuscules, chiffres et autres",
                "password-too-simple",
            )
        if login:
            local = login.strip().lower().partition("@")[0]
            if len(local) >= 4 and local in password.lower():
                raise PasswordPolicyViolation(
                    "le mot de passe ne doit pas contenir l'identifiant",
                    "password-contains-login",
                )

    # -- login --------------------------------------------------------------------------

    def login_password(
        self, login: str, password: str, *, source: str, mechanism: str
    ) -> LoginOutcome:
        """Check throttles, then the password (and TOTP code); count and trace the attempt.

        Blocking (argon2, database): run it in a thread from asyncio code.
        """
        now = self.clock()
        label = login_label(login)
        akey, skey = f"account:{label}", source_key(source)
        with self.db.read() as conn:
            src = self._state(conn, skey)
            acc = self._state(conn, akey)
            user = conn.execute(select(users).where(users.c.login == label)).first()
        for state, reason in ((src, LOCKED_SOURCE), (acc, LOCKED_ACCOUNT)):
            if state is not None and state.locked_at(now):
                return self._refuse_locked(label, source, mechanism, reason, state, now)

        stored_hash = user.password_hash if user is not None else None
        secret: str | None = user.totp_secret if user is not None else None
        candidate, code = password, None
        if secret and len(password) > TOTP_DIGITS:
            tail = password[-TOTP_DIGITS:]
            if tail.isascii() and tail.isdigit():
                candidate, code = password[:-TOTP_DIGITS], tail
        password_ok = verify_password(stored_hash, candidate)

        reason = OK
        counter: int | None = None
        if not password_ok or user is None:
            reason = BAD_CREDENTIALS
        elif user.status != "active":
            reason = INACTIVE_ACCOUNT
        elif secret:
            if code is None:
                reason = MISSING_SECOND_FACTOR
            else:
                counter = self._match_totp(secret, code, now)
                if counter is None:
                    reason = BAD_SECOND_FACTOR
        elif self.policy.staff_require_totp and user.kind == "staff":
            reason = SECOND_FACTOR_REQUIRED

        with self.db.write() as conn:
            if reason == OK and counter is not None:
                assert user is not None
                used = conn.execute(
                    update(users)
                    .where(
                        users.c.id == user.id,
                        or_(
                            users.c.totp_last_counter.is_(None),
                            users.c.totp_last_counter < counter,
                        ),
                    )
                    .values(totp_last_counter=counter)
                )
                if used.rowcount != 1:
                    reason = TOTP_REPLAY
            if reason == OK:
                assert user is not None
                conn.execute(delete(auth_throttle).where(auth_throttle.c.key == akey))
                traces.record(
                    conn,
                    "login",
                    "ok",
                    actor=label,
                    peer=source,
                    detail=f"mechanism={mechanism}",
                    at=now,
                )
                principal = Principal(
                    user_id=user.id, login=user.login, kind=user.kind, id_nat_ps=user.id_nat_ps
                )
                return LoginOutcome(principal, 0.0, None, OK)
            acc_after, acc_new = self._count_failure(
                conn, akey, self.policy.max_failures_per_account, now
            )
            src_after, src_new = self._count_failure(
                conn, skey, self.policy.max_failures_per_source, now
            )
            locked_until = max(
                (
                    s.locked_until
                    for s in (acc_after, src_after)
                    if s.locked_until and s.locked_at(now)
                ),
                default=None,
            )
            detail = f"mechanism={mechanism} reason={reason}"
            if locked_until is not None:
                detail += f" locked-until={locked_until.isoformat(timespec='seconds')}"
            traces.record(conn, "login", "refused", actor=label, peer=source, detail=detail, at=now)
        for state, newly_locked in ((acc_after, acc_new), (src_after, src_new)):
            if newly_locked and state.locked_until is not None:
                log.warning(
                    "login: %s locked until %s after %d failures",
                    state.key,
                    state.locked_until.isoformat(timespec="seconds"),
                    state.failures,
                )
        self._maybe_purge(now)
        delay = self.policy.delay_for(max(acc_after.failures, src_after.failures))
        return LoginOutcome(None, delay, locked_until, reason)

    def _refuse_locked(
        self,
        label: str,
        source: str,
        mechanism: str,
        reason: str,
        state: ThrottleState,
        now: datetime,
    ) -> LoginOutcome:
        assert state.locked_until is not None
        with self.db.write() as conn:
            traces.record(
                conn,
                "login",
                "refused",
                actor=label,
                peer=source,
                detail=(
                    f"mechanism={mechanism} reason={reason} "
                    f"locked-until={state.locked_until.isoformat(timespec='seconds')}"
                ),
                at=now,
            )
        return LoginOutcome(None, self.policy.max_delay, state.locked_until, reason)

    def _match_totp(self, secret: str, code: str, now: datetime) -> int | None:
        """The time step whose code is `code` (±TOTP_WINDOW steps), or None."""
        try:
            totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
            current = _totp_counter(now)
            found = None
            for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
                if hmac.compare_digest(totp.generate_otp(step), code):
                    found = step  # no early exit: the same work whatever matches
            return found
        except (ValueError, TypeError):  # a corrupt secret: refuse, never crash the login
            log.error("login: the TOTP secret of a user is not valid base32")
            return None

    # -- throttle rows ------------------------------------------------------------------

    @staticmethod
    def _state(conn: Connection, key: str, *, for_update: bool = False) -> ThrottleState | None:
        query = select(auth_throttle).where(auth_throttle.c.key == key)
        if for_update:
            query = query.with_for_update()
        row = conn.execute(query).first()
        return ThrottleState.from_row(row) if row is not None else None

    def _stale(self, state: ThrottleState, now: datetime) -> bool:
        """The series is over: the window has passed since its start and its last lock."""
        window = timedelta(seconds=self.policy.failure_window)
        if state.locked_until is not None and now < state.locked_until + window:
            return False
        return not (state.first_failure_at is not None and now < state.first_failure_at + window)

    def _count_failure(
        self, conn: Connection, key: str, limit: int, now: datetime
    ) -> tuple[ThrottleState, bool]:
        """Add one failure to `key` (row locked), locking it at `limit`.

        Returns the new state and whether this failure set a new lock.
        """
        ins = dialect_insert(conn, auth_throttle)
        conn.execute(ins.values(key=key, failures=0).on_conflict_do_nothing())
        state = self._state(conn, key, for_update=True)
        assert state is not None
        if state.locked_at(now):
            # Locked by an attempt that ran at the same time: nothing more to count.
            return state, False
        failures, first = 1, now
        locked_until: datetime | None = None
        if state.failures > 0 and not self._stale(state, now):
            failures = state.failures + 1
            first = state.first_failure_at or now
            locked_until = state.locked_until
        seconds = self.policy.lock_for(failures, limit)
        if seconds is not None:
            locked_until = now + timedelta(seconds=seconds)
        conn.execute(
            update(auth_throttle)
            .where(auth_throttle.c.key == key)
            .values(
                failures=failures,
                first_failure_at=first,
                last_failure_at=now,
                locked_until=locked_until,
            )
        )
        return ThrottleState(key, failures, first, now, locked_until), seconds is not None

    def _maybe_purge(self, now: datetime) -> None:
        self._failures_since_purge += 1
        if self._failures_since_purge >= _PURGE_EVERY:
            self._failures_since_purge = 0
            self.purge_stale(now)

    def purge_stale(self, now: datetime | None = None) -> int:
        """Delete throttle rows whose series is over; return how many."""
        now = now or self.clock()
        cutoff = now - timedelta(seconds=self.policy.failure_window)
        with self.db.write() as conn:
            result = conn.execute(
                delete(auth_throttle).where(
                    or_(
                        auth_throttle.c.locked_until.is_(None),
                        auth_throttle.c.locked_until < cutoff,
                    ),
                    or_(
                        auth_throttle.c.first_failure_at.is_(None),
                        auth_throttle.c.first_failure_at < cutoff,
                    ),
                )
            )
            return int(result.rowcount or 0)

    def throttle(self, key: str) -> ThrottleState | None:
        """The counter of `account:<login>` or `source:<address>` (tests, `user list`)."""
        with self.db.read() as conn:
            return self._state(conn, key)

    def unlock(
        self, *, login: str | None = None, source: str | None = None, actor: str = "cli"
    ) -> bool:
        """Forget the failures and lock of an account or a source; False if there were none."""
        if (login is None) == (source is None):
            raise RuleViolation("give a login or a source address, not both")
        key = account_key(login) if login is not None else source_key(source or "")
        with self.db.write() as conn:
            result = conn.execute(delete(auth_throttle).where(auth_throttle.c.key == key))
            traces.record(conn, "auth.unlock", actor=actor, detail=key)
        return bool(result.rowcount)

    # -- users --------------------------------------------------------------------------

    def create_staff(
        self,
        login: str,
        display_name: str,
        password: str,
        *,
        org_address: str,
        actor: str = "cli",
    ) -> Principal:
        """A staff user (no CPS card) who acts on the ORG (or CAB) mailbox `org_address`."""
        value = normalise_address(login).lower()
        name = display_name.strip()
        if not name:
            raise RuleViolation("a staff member needs a display name")
        self.check_password_policy(password, login=value)
        password_hash = hash_password(password)  # slow: before the write lock
        now = utcnow()
        with self.db.write() as conn:
            box = MailboxService.get_in(conn, org_address)
            if box.type not in (MailboxType.ORG, MailboxType.CAB):
                raise RuleViolation(
                    f"{box.address} is a {box.type.value} mailbox: staff join ORG or CAB mailboxes"
                )
            if box.status is MailboxStatus.CLOSED:
                raise RuleViolation(f"{box.address} is closed")
            if conn.execute(select(users.c.id).where(users.c.login == value)).first():
                raise AlreadyExists(f"login {value} already exists")
            user_id = conn.execute(
                insert(users).values(
                    login=value,
                    kind="staff",
                    id_nat_ps=None,
                    display_name=name,
                    password_hash=password_hash,
                    status="active",
                    created_at=now,
                    password_changed_at=now,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                insert(mailbox_members).values(mailbox_id=box.id, user_id=user_id, added_at=now)
            )
            traces.record(conn, "user.create", actor=actor, detail=f"staff {value}")
            traces.record(
                conn, "mailbox.member.add", mailbox=box.address, actor=actor, detail=value
            )
        return Principal(user_id=int(user_id), login=value, kind="staff", id_nat_ps=None)

    def set_password(self, login: str, password: str, *, actor: str = "cli") -> None:
        value = login.strip().lower()
        self.check_password_policy(password, login=value)
        password_hash = hash_password(password)
        with self.db.write() as conn:
            result = conn.execute(
                update(users)
                .where(users.c.login == value)
                .values(password_hash=password_hash, password_changed_at=utcnow())
            )
            if result.rowcount == 0:
                raise NotFound(f"no login {login}")
            traces.record(conn, "user.password", actor=actor, detail=value)

    def enroll_totp(
        self, login: str, *, actor: str = "cli", replace: bool = False
    ) -> tuple[str, str]:
        """A new TOTP secret for a staff user: (base32 secret, otpauth:// URI), shown once."""
        value = login.strip().lower()
        secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
        with self.db.write() as conn:
            row = conn.execute(select(users).where(users.c.login == value)).first()
            if row is None:
                raise NotFound(f"no login {login}")
            if row.kind != "staff":
                raise RuleViolation(
                    f"{value} is a {row.kind} login: the second factor by TOTP is for staff "
                    "without a CPS card (professionals use Pro Santé Connect)"
                )
            if row.totp_secret and not replace:
                raise AlreadyExists(f"{value} already has a TOTP secret (replace it explicitly)")
            conn.execute(
                update(users)
                .where(users.c.id == row.id)
                .values(totp_secret=secret, totp_last_counter=None)
            )
            traces.record(
                conn, "user.totp.enroll", actor=actor, detail=value + (" (replaced)" * replace)
            )
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
            name=value, issuer_name=self.issuer
        )
        return secret, uri

    def disable_totp(self, login: str, *, actor: str = "cli") -> None:
        value = login.strip().lower()
        with self.db.write() as conn:
            result = conn.execute(
                update(users)
                .where(users.c.login == value)
                .values(totp_secret=None, totp_last_counter=None)
            )
            if result.rowcount == 0:
                raise NotFound(f"no login {login}")
            traces.record(conn, "user.totp.disable", actor=actor, detail=value)

    def list_users(self, *, kinds: Sequence[str] | None = None) -> list[UserInfo]:
        now = self.clock()
        query = select(users).order_by(users.c.login)
        if kinds:
            query = query.where(users.c.kind.in_(list(kinds)))
        with self.db.read() as conn:
            rows = conn.execute(query).all()
            member_rows = conn.execute(
                select(mailbox_members.c.user_id, mailboxes.c.address)
                .join(mailboxes, mailboxes.c.id == mailbox_members.c.mailbox_id)
                .order_by(mailboxes.c.address)
            ).all()
            locks = {
                s.key: s
                for s in (
                    ThrottleState.from_row(r)
                    for r in conn.execute(
                        select(auth_throttle).where(auth_throttle.c.key.like("account:%"))
                    )
                )
            }
        member_of: dict[int, list[str]] = {}
        for user_id, address in member_rows:
            member_of.setdefault(int(user_id), []).append(str(address))
        out = []
        for row in rows:
            lock = locks.get(f"account:{row.login}")
            out.append(
                UserInfo(
                    login=row.login,
                    kind=row.kind,
                    display_name=row.display_name or "",
                    status=row.status,
                    totp_enrolled=bool(row.totp_secret),
                    password_set=bool(row.password_hash),
                    password_changed_at=as_utc(row.password_changed_at),
                    member_of=tuple(member_of.get(int(row.id), ())),
                    locked_until=lock.locked_until if lock and lock.locked_at(now) else None,
                )
            )
        return out
