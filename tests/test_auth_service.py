"""Password logins of staff without a card (R62), TOTP, throttling and locks (issue 5, 7).

`AuthService` runs on a fresh database of the engine under test with a fake clock, so
windows, locks and TOTP steps are exercised without waiting; the `mssante user` commands
run in-process with CliRunner against a configuration made by `mssante init`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import String, Text, select

from mssante.cli import main
from mssante.config import ConfigError, load_config
from mssante.domain.errors import (
    AlreadyExists,
    InvalidAddress,
    NotAMember,
    NotFound,
    RuleViolation,
)
from mssante.domain.mailboxes import MailboxSpec, MailboxType
from mssante.runtime import Services
from mssante.services import auth as auth_module
from mssante.services import traces
from mssante.services.auth import (
    AuthPolicy,
    AuthService,
    LoginOutcome,
    PasswordPolicyViolation,
    login_label,
    source_label,
)
from mssante.services.mailboxes import MailboxService
from mssante.storage.database import Database
from mssante.storage.schema import trace_events, users
from mssante.testing.clients import seed_professional_mailbox, seed_structure_mailbox

DOMAIN = "alpha.mssante.fr"
ORG = f"secretariat@{DOMAIN}"
PER = f"camille.martin@{DOMAIN}"
STRUCT = "1750000010"
STAFF = "marie.durand@ehpad-tilleuls.fr"
STAFF_PASSWORD = "Tilleuls-Accueil-2025"
ORG_PASSWORD = "Secretariat-Alpha-77"
PER_PASSWORD = "Camille-Martin-1234"
WRONG = "Pas-le-bon-mot-de-passe-9"
ATTACKER = "203.0.113.7"
HOME = "198.51.100.20"

POLICY = AuthPolicy(
    max_failures_per_account=3,
    max_failures_per_source=5,
    failure_window=600,
    lock_duration=60,
    max_lock_duration=200,
    base_delay=0.25,
    max_delay=4.0,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 3, 8, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Env:
    db: Database
    mailboxes: MailboxService
    clock: Clock
    auth: AuthService

    def with_policy(self, policy: AuthPolicy) -> AuthService:
        return AuthService(self.db, self.mailboxes, policy, clock=self.clock)

    def login(
        self, login: str, password: str, source: str = HOME, service: AuthService | None = None
    ) -> LoginOutcome:
        return (service or self.auth).login_password(
            login, password, source=source, mechanism="smtp-PLAIN"
        )

    def logins(self) -> list[traces.TraceEvent]:
        with self.db.read() as conn:
            return list(reversed(traces.list_events(conn, action="login", limit=1000)))


@pytest.fixture
def env(tmp_path: Path, database_url: Callable[[], str]) -> Iterator[Env]:
    db = Database(database_url() or f"sqlite:///{tmp_path / 'auth.db'}")
    db.migrate()
    mailboxes = MailboxService(db, (DOMAIN,))
    seed_structure_mailbox(mailboxes, ORG, STRUCT, "EHPAD Les Tilleuls", ORG_PASSWORD)
    seed_professional_mailbox(mailboxes, PER, "10000000017", PER_PASSWORD)
    clock = Clock()
    service = AuthService(db, mailboxes, POLICY, issuer="MSSanté Opérateur Alpha", clock=clock)
    yield Env(db, mailboxes, clock, service)
    db.dispose()


def _all_trace_text(db: Database) -> str:
    columns = [c for c in trace_events.columns if isinstance(c.type, String | Text)]
    with db.read() as conn:
        rows = conn.execute(select(*columns)).all()
    return "\n".join(str(v) for row in rows for v in row if v is not None)


# -- password policy ---------------------------------------------------------------------


def test_password_policy(env: Env) -> None:
    check = env.auth.check_password_policy
    cases = {
        "Court-1a": "password-too-short",
        "tout-en-minuscules": "password-too-simple",  # lower + other: 2 classes
        "TOUTENMAJUSCULES123": "password-too-simple",
        "Ligne\nNouvelle-123": "password-control-character",
    }
    for password, code in cases.items():
        with pytest.raises(PasswordPolicyViolation) as err:
            check(password)
        assert err.value.code == code
        assert isinstance(err.value, RuleViolation)
        assert "mot de passe" in err.value.message  # French for the person at the CLI
    with pytest.raises(PasswordPolicyViolation) as err:
        check("Marie.Durand-2025", login=STAFF)
    assert err.value.code == "password-contains-login"
    check("Tilleuls-Accueil-2025", login=STAFF)
    check("correct horse battery staple 9")  # lower, digit, other: 3 classes
    # The policy is configurable.
    lax = env.with_policy(AuthPolicy(password_min_length=8, password_require_classes=1))
    lax.check_password_policy("abcdefgh")


def test_delay_and_lock_schedule() -> None:
    p = AuthPolicy()
    assert [p.delay_for(n) for n in range(1, 9)] == [0, 0, 0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert p.delay_for(10_000) == 4.0
    assert p.lock_for(9, 10) is None
    assert [p.lock_for(n, 10) for n in (10, 11, 12, 13)] == [900, 1800, 3600, 3600]
    assert p.lock_for(10_000, 10) == 3600


def test_labels() -> None:
    assert login_label("  Marie.Durand@EHPAD.fr ") == "marie.durand@ehpad.fr"
    # A password typed in the login field is never kept as typed.
    label = login_label("Tilleuls-Accueil-2025")
    assert label.startswith("unknown:") and "Tilleuls" not in label
    assert source_label("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert source_label("::ffff:192.0.2.1") == "192.0.2.1"
    assert source_label("127.0.0.2") == "127.0.0.2"


# -- staff enrolment ---------------------------------------------------------------------


def test_create_staff_and_membership(env: Env) -> None:
    principal = env.auth.create_staff(
        "Marie.Durand@ehpad-tilleuls.fr", "Marie Durand", STAFF_PASSWORD, org_address=ORG
    )
    assert principal.login == STAFF and principal.kind == "staff"
    assert principal.id_nat_ps is None
    assert env.mailboxes.members(ORG) == [STAFF]
    # The staff member may send as the ORG mailbox, not as a PER one.
    assert env.mailboxes.check_can_send_as(principal, ORG).address == ORG
    with pytest.raises(NotAMember):
        env.mailboxes.check_can_send_as(principal, PER)
    with env.db.read() as conn:
        actions = [e.action for e in traces.list_events(conn, limit=10)]
    assert "user.create" in actions and "mailbox.member.add" in actions

    with pytest.raises(AlreadyExists):
        env.auth.create_staff(STAFF, "Marie Durand", STAFF_PASSWORD, org_address=ORG)
    with pytest.raises(RuleViolation):  # staff join ORG/CAB mailboxes only
        env.auth.create_staff("paul@ehpad.fr", "Paul", STAFF_PASSWORD, org_address=PER)
    with pytest.raises(NotFound):
        env.auth.create_staff(
            "paul@ehpad.fr", "Paul", STAFF_PASSWORD, org_address=f"absent@{DOMAIN}"
        )
    with pytest.raises(InvalidAddress):
        env.auth.create_staff("paul durand", "Paul", STAFF_PASSWORD, org_address=ORG)
    with pytest.raises(PasswordPolicyViolation):
        env.auth.create_staff("paul@ehpad.fr", "Paul", "faible", org_address=ORG)
    with pytest.raises(RuleViolation):
        env.auth.create_staff("paul@ehpad.fr", "  ", STAFF_PASSWORD, org_address=ORG)
    assert env.mailboxes.members(ORG) == [STAFF]  # nothing half-created

    outcome = env.login(STAFF, STAFF_PASSWORD)
    assert outcome.ok and outcome.principal == principal and outcome.reason == "ok"
    env.auth.set_password(STAFF, "Nouveau-Mot-De-Passe-7")
    assert not env.login(STAFF, STAFF_PASSWORD).ok
    assert env.login(STAFF, "Nouveau-Mot-De-Passe-7").ok
    with pytest.raises(PasswordPolicyViolation):
        env.auth.set_password(STAFF, "court")
    with pytest.raises(NotFound):
        env.auth.set_password("nobody@ehpad.fr", "Nouveau-Mot-De-Passe-7")

    users = {u.login: u for u in env.auth.list_users()}
    assert users[STAFF].member_of == (ORG,)
    assert users[STAFF].password_changed_at is not None
    assert [u.login for u in env.auth.list_users(kinds=["staff"])] == sorted([STAFF, ORG])


# -- TOTP ----------------------------------------------------------------------------------


def _code(secret: str, at: datetime, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(at + timedelta(seconds=30 * steps))


def test_totp_enrolment_codes_and_replay(env: Env) -> None:
    env.auth.create_staff(STAFF, "Marie Durand", STAFF_PASSWORD, org_address=ORG)
    secret, uri = env.auth.enroll_totp(STAFF)
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert uri.startswith("otpauth://totp/")
    assert f"secret={secret}" in uri
    assert "issuer=MSSant%C3%A9%20Op%C3%A9rateur%20Alpha" in uri
    with pytest.raises(AlreadyExists):
        env.auth.enroll_totp(STAFF)
    with pytest.raises(RuleViolation):  # professionals use Pro Santé Connect
        env.auth.enroll_totp(PER)
    with pytest.raises(NotFound):
        env.auth.enroll_totp("nobody@ehpad.fr")

    env.auth = env.with_policy(AuthPolicy())  # ten failures before a lock
    now = env.clock()
    # The password alone is not enough any more, on any path.
    assert env.mailboxes.authenticate(STAFF, STAFF_PASSWORD) is None
    assert env.login(STAFF, STAFF_PASSWORD).reason == "missing-second-factor"
    assert env.login(STAFF, STAFF_PASSWORD + "000000").reason in {
        "bad-second-factor",
        "ok",  # one chance in a million
    }
    # The right code after the password: in.
    code = _code(secret, now)
    assert env.login(STAFF, STAFF_PASSWORD + code).ok
    # The same code again (an overheard one): refused.
    assert env.login(STAFF, STAFF_PASSWORD + code).reason == "totp-replay"
    # A wrong password with the right next code: bad credentials, and the code stays unused.
    assert env.login(STAFF, WRONG + _code(secret, now, 1)).reason == "bad-credentials"
    # One step of drift is accepted (the next step, not used yet)...
    assert env.login(STAFF, STAFF_PASSWORD + _code(secret, now, 1)).ok
    # ...but a step before the last used one is a replay, and two steps away is wrong.
    assert env.login(STAFF, STAFF_PASSWORD + _code(secret, now, -1)).reason in {
        "totp-replay",
        "bad-second-factor",
    }
    env.clock.advance(120)
    assert env.login(STAFF, STAFF_PASSWORD + _code(secret, env.clock(), 2)).reason == (
        "bad-second-factor"
    )
    assert env.login(STAFF, STAFF_PASSWORD + _code(secret, env.clock())).ok

    # Replacing the secret invalidates the old one; disabling returns to password only.
    new_secret, _ = env.auth.enroll_totp(STAFF, replace=True)
    assert new_secret != secret
    env.clock.advance(60)
    assert env.login(STAFF, STAFF_PASSWORD + _code(new_secret, env.clock())).ok
    env.auth.disable_totp(STAFF)
    assert env.login(STAFF, STAFF_PASSWORD).ok
    assert not any(u.totp_enrolled for u in env.auth.list_users())

    text = _all_trace_text(env.db)
    assert STAFF_PASSWORD not in text and WRONG not in text and secret not in text
    assert code not in text


def test_staff_require_totp(env: Env) -> None:
    strict = env.with_policy(replace(POLICY, staff_require_totp=True))
    env.auth.create_staff(STAFF, "Marie Durand", STAFF_PASSWORD, org_address=ORG)
    assert env.login(STAFF, STAFF_PASSWORD, service=strict).reason == "second-factor-required"
    secret, _ = env.auth.enroll_totp(STAFF)
    ok = env.login(STAFF, STAFF_PASSWORD + _code(secret, env.clock()), service=strict)
    assert ok.ok
    # Professionals are not staff: their password path is unchanged by this setting.
    assert env.login(PER, PER_PASSWORD, service=strict).ok


# -- throttling ----------------------------------------------------------------------------


def test_failures_counted_traced_and_delayed(env: Env) -> None:
    env.auth = env.with_policy(AuthPolicy())
    delays = []
    for _ in range(4):
        outcome = env.login(f"nobody@{DOMAIN}", WRONG, source=ATTACKER)
        assert outcome.reason == "bad-credentials"
        delays.append(outcome.delay)
        env.clock.advance(1)
    # Unknown logins are counted like real ones (a lock does not tell that a login exists).
    assert delays == [0, 0, 0, 0.5]
    state = env.auth.throttle(f"account:nobody@{DOMAIN}")
    assert state is not None and state.failures == 4
    source = env.auth.throttle(f"source:{ATTACKER}")
    assert source is not None and source.failures == 4
    events = env.logins()
    assert len(events) == 4
    assert all(e.outcome == "refused" and e.peer == ATTACKER for e in events)
    assert all(e.detail and "mechanism=smtp-PLAIN" in e.detail for e in events)
    assert "reason=bad-credentials" in (events[0].detail or "")
    assert WRONG not in _all_trace_text(env.db)


def test_lock_refuses_without_checking_and_expires(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        outcome = env.login(PER, WRONG, source=ATTACKER)
        assert outcome.reason == "bad-credentials"
    # The 3rd failure locks the account for lock_duration.
    assert outcome.locked_until == env.clock() + timedelta(seconds=60)
    assert not outcome.locked  # this attempt was checked: 535, the next ones 454

    calls: list[str] = []
    real_verify = auth_module.verify_password

    def counting(stored: str | None, password: str) -> bool:
        calls.append("verify")
        return real_verify(stored, password)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    # Locked: refused even with the right password, from any source, without argon2.
    for source in (ATTACKER, HOME):
        outcome = env.login(PER, PER_PASSWORD, source=source)
        assert outcome.locked and outcome.reason == "locked-account"
        assert outcome.delay == POLICY.max_delay
    assert calls == []
    # Refusals by a lock are traced but not counted.
    assert env.auth.throttle(f"account:{PER}").failures == 3  # type: ignore[union-attr]
    assert env.auth.throttle(f"source:{HOME}") is None
    assert [e.detail.split()[1] for e in env.logins()[-2:]] == [  # type: ignore[union-attr]
        "reason=locked-account",
        "reason=locked-account",
    ]
    # Another login from the attacker's source is not locked (the source has 3 failures).
    assert env.login(ORG, ORG_PASSWORD, source=ATTACKER).ok

    # The lock is temporary: the real user gets in from home once it expires.
    env.clock.advance(61)
    outcome = env.login(PER, PER_PASSWORD, source=HOME)
    assert outcome.ok and calls == ["verify", "verify"]
    # Success clears the account's count, not the source's.
    assert env.auth.throttle(f"account:{PER}") is None
    assert env.auth.throttle(f"source:{ATTACKER}").failures == 3  # type: ignore[union-attr]


def test_repeated_locks_double_up_to_the_maximum(env: Env) -> None:
    for _ in range(3):
        env.login(PER, WRONG, source=ATTACKER)
    lengths = [60.0]
    for _ in range(3):
        # Wait for the lock to end, then fail once more: locked again, twice as long.
        state = env.auth.throttle(f"account:{PER}")
        assert state is not None and state.locked_until is not None
        env.clock.now = state.locked_until + timedelta(seconds=1)
        outcome = env.login(PER, WRONG, source=f"192.0.2.{len(lengths)}")
        assert outcome.reason == "bad-credentials" and outcome.locked_until is not None
        lengths.append((outcome.locked_until - env.clock()).total_seconds())
    assert lengths == [60, 120, 200, 200]  # capped by max_lock_duration
    # Once the window has passed since the last lock, the series starts over.
    env.clock.advance(200 + 601)
    outcome = env.login(PER, WRONG, source=HOME)
    assert outcome.locked_until is None
    assert env.auth.throttle(f"account:{PER}").failures == 1  # type: ignore[union-attr]


def test_concurrent_failures_are_all_counted(env: Env) -> None:
    service = env.with_policy(AuthPolicy())
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda i: env.login(PER, WRONG, source=f"192.0.2.{i}", service=service),
                range(8),
            )
        )
    assert all(o.reason == "bad-credentials" for o in outcomes)
    assert service.throttle(f"account:{PER}").failures == 8  # type: ignore[union-attr]
    assert len(env.logins()) == 8


def test_window_forgets_old_failures(env: Env) -> None:
    env.login(PER, WRONG)
    env.login(PER, WRONG)
    env.clock.advance(601)
    outcome = env.login(PER, WRONG)
    assert outcome.locked_until is None
    assert env.auth.throttle(f"account:{PER}").failures == 1  # type: ignore[union-attr]


def test_source_lock_does_not_lock_the_account_elsewhere(env: Env) -> None:
    # A spray: one wrong password on each of many logins from one source.
    for i in range(5):
        outcome = env.login(f"user{i}@{DOMAIN}", WRONG, source=ATTACKER)
    assert outcome.locked_until is not None  # 5 failures: the source is locked
    blocked = env.login(PER, PER_PASSWORD, source=ATTACKER)
    assert blocked.reason == "locked-source" and blocked.locked
    # The same account from elsewhere is fine: a source lock is not an account lock.
    assert env.login(PER, PER_PASSWORD, source=HOME).ok
    # IPv6 neighbours in the same /64 share the count.
    for i in range(5):
        env.login(f"user{i}@{DOMAIN}", WRONG, source=f"2001:db8::{i + 1}")
    assert env.login(PER, PER_PASSWORD, source="2001:db8::ff").reason == "locked-source"
    assert env.login(PER, PER_PASSWORD, source="2001:db8:0:1::1").ok


def test_inactive_and_garbage_logins(env: Env) -> None:
    with env.db.write() as conn:
        conn.execute(users.update().where(users.c.login == PER).values(status="disabled"))
    assert env.login(PER, PER_PASSWORD).reason == "inactive-account"
    garbage = "Tilleuls-Accueil-2025"  # a password typed in the login field
    outcome = env.login(garbage, "x")
    assert outcome.reason == "bad-credentials"
    assert garbage not in _all_trace_text(env.db)
    assert env.logins()[-1].actor == login_label(garbage)


def test_unlock_and_purge(env: Env) -> None:
    for _ in range(3):
        env.login(PER, WRONG, source=ATTACKER)
    assert env.login(PER, PER_PASSWORD).locked
    with pytest.raises(RuleViolation):
        env.auth.unlock()
    assert env.auth.unlock(login=PER.upper(), actor="cli:resp")
    assert env.login(PER, PER_PASSWORD).ok
    assert env.auth.unlock(source=ATTACKER)
    assert not env.auth.unlock(source=ATTACKER)
    with env.db.read() as conn:
        unlocks = traces.list_events(conn, action="auth.unlock")
    assert {e.detail for e in unlocks} == {f"account:{PER}", f"source:{ATTACKER}"}
    # Series that are over are swept away.
    env.login(f"x@{DOMAIN}", WRONG, source=ATTACKER)
    assert env.auth.purge_stale() == 0
    env.clock.advance(601)
    assert env.auth.purge_stale() == 2  # account:x@… and source:ATTACKER


def test_policy_from_configuration(tmp_path: Path) -> None:
    base = tmp_path / "op"
    result = CliRunner().invoke(main, ["init", str(base), "--domain", "ch-test.mssante.fr"])
    assert result.exit_code == 0, result.output
    path = base / "mssante.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text + '\n[auth]\nlock_duration = "2m"\nmax_lock_duration = "1h"\nbase_delay = 0.1\n',
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.auth.lock_duration == 120 and cfg.auth.failure_window == 900
    services = Services(cfg)
    try:
        assert services.auth.policy.lock_duration == 120
        assert services.auth.policy.base_delay == 0.1
        assert services.auth.issuer == f"MSSanté {cfg.operator.name}"
    finally:
        services.close()
    path.write_text(text + '\n[auth]\nlock_duration = "2h"\nmax_lock_duration = "1h"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any("max_lock_duration" in p for p in err.value.problems)


# -- the `mssante user` commands -------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path, database_url: Callable[[], str]) -> Path:
    base = tmp_path / "op"
    result = CliRunner().invoke(main, ["init", str(base), "--domain", "ch-test.mssante.fr"])
    assert result.exit_code == 0, result.output
    path = base / "mssante.toml"
    url = database_url()
    if url:
        text = path.read_text(encoding="utf-8")
        text, count = re.subn(r'(?m)^url = "".*$', f"url = {json.dumps(url)}", text)
        assert count == 1
        path.write_text(text, encoding="utf-8")
    services = Services(load_config(path))
    services.migrate()
    services.mailboxes.create_structure(STRUCT, "EHPAD Les Tilleuls")
    services.mailboxes.create_mailbox(
        MailboxSpec(
            address="secretariat@ch-test.mssante.fr",
            type=MailboxType.ORG,
            id_nat_struct=STRUCT,
            responsible="Directrice",
        )
    )
    services.close()
    return path


def _cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        main,
        ["--config", str(config), *args],
        input=input,
        env={"MSSANTE_CONFIG": None, "COLUMNS": "250"},
        catch_exceptions=False,
    )


def test_cli_user_commands(config_file: Path) -> None:
    org = "secretariat@ch-test.mssante.fr"
    r = _cli(config_file, "user", "create-staff", STAFF, "--org", org, "--display-name", "M D")
    assert r.exit_code == 1
    r = _cli(
        config_file,
        "user",
        "create-staff",
        STAFF,
        "--org",
        org,
        "--display-name",
        "Marie Durand",
        input="faible\nfaible\n",
    )
    assert r.exit_code == 1
    assert "[password-too-short]" in r.output and "au moins 12 caractères" in r.output
    r = _cli(
        config_file,
        "user",
        "create-staff",
        STAFF,
        "--org",
        org,
        "--display-name",
        "Marie Durand",
        input=f"{STAFF_PASSWORD}\n{STAFF_PASSWORD}\n",
    )
    assert r.exit_code == 0, r.output
    assert f"staff login {STAFF} created" in r.output
    r = _cli(
        config_file,
        "user",
        "create-staff",
        "paul@ehpad.fr",
        "--org",
        org,
        "--display-name",
        "Paul",
        "--password",
        "Secretariat-Nuit-42",
    )
    assert r.exit_code == 0, r.output

    r = _cli(config_file, "user", "enroll-totp", STAFF)
    assert r.exit_code == 0, r.output
    secret = re.search(r"^secret: ([A-Z2-7]{32})$", r.output, re.M)
    uri = re.search(r"^uri: (otpauth://totp/\S+)$", r.output, re.M)
    assert secret and uri and f"secret={secret.group(1)}" in uri.group(1)
    assert _cli(config_file, "user", "enroll-totp", STAFF).exit_code == 1
    assert _cli(config_file, "user", "enroll-totp", STAFF, "--replace").exit_code == 0

    r = _cli(config_file, "user", "set-password", "paul@ehpad.fr", "--password", "court")
    assert r.exit_code == 1 and "[password-too-short]" in r.output
    r = _cli(config_file, "user", "set-password", "paul@ehpad.fr", input="Nuit-Nouvelle-2025\n" * 2)
    assert r.exit_code == 0, r.output

    # Lock paul's login, see it in the list, unlock it.
    services = Services(load_config(config_file))
    try:
        for _ in range(10):
            services.auth.login_password("paul@ehpad.fr", WRONG, source=ATTACKER, mechanism="test")
        assert services.auth.login_password(
            "paul@ehpad.fr", "Nuit-Nouvelle-2025", source=HOME, mechanism="test"
        ).locked
    finally:
        services.close()
    r = _cli(config_file, "user", "list", "--json")
    assert r.exit_code == 0, r.output
    listed = {u["login"]: u for u in json.loads(r.output)}
    assert listed[STAFF]["totp"] is True and listed[STAFF]["member_of"] == [org]
    assert listed["paul@ehpad.fr"]["locked_until"] is not None
    assert listed["paul@ehpad.fr"]["kind"] == "staff"
    r = _cli(config_file, "user", "list", "--staff")
    assert r.exit_code == 0 and STAFF in r.output and "paul@ehpad.fr" in r.output

    assert _cli(config_file, "user", "unlock").exit_code == 2
    r = _cli(config_file, "user", "unlock", "paul@ehpad.fr")
    assert r.exit_code == 0 and "unlocked" in r.output
    r = _cli(config_file, "user", "unlock", "--source", ATTACKER)
    assert r.exit_code == 0 and "unlocked" in r.output
    r = _cli(config_file, "user", "disable-totp", STAFF)
    assert r.exit_code == 0
    assert _cli(config_file, "user", "disable-totp", "nobody@ehpad.fr").exit_code == 1

    services = Services(load_config(config_file))
    try:
        assert services.auth.login_password(
            "paul@ehpad.fr", "Nuit-Nouvelle-2025", source=HOME, mechanism="test"
        ).ok
        assert services.auth.login_password(STAFF, STAFF_PASSWORD, source=HOME, mechanism="test").ok
        with services.db.read() as conn:
            actors = {e.actor for e in traces.list_events(conn, limit=500)}
        text = _all_trace_text(services.db)
    finally:
        services.close()
    assert any(a and a.startswith("cli") for a in actors)
    for secret_text in (STAFF_PASSWORD, "Nuit-Nouvelle-2025", "Secretariat-Nuit-42", WRONG):
        assert secret_text not in text
    assert secret.group(1) not in text
