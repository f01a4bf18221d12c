"""Must show (issue item 7): a brute force over real SMTP submission is slowed, then locked;
the real user, from another address, gets back in once the temporary lock ends; every
attempt is a trace event; no password appears in any trace row or log line.

The operator runs with a short `[auth]` policy (appended to its configuration) so the
whole story fits in a few seconds. The attacker connects from 127.0.0.1, the real user
binds its socket to 127.0.0.2 (Linux routes all of 127/8 to the loopback).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import smtplib
import ssl
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher
from sqlalchemy import String, Text, select

from mssante.runtime import Operator
from mssante.services import passwords, traces
from mssante.storage.schema import trace_events
from mssante.testing.clients import make_message, seed_structure_mailbox, wait_for
from mssante.testing.trust_space import LocalTrustSpace, OperatorSpec

ALPHA = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
ORG = "secretariat@alpha.mssante.fr"
STAFF = "marie.durand@ehpad-tilleuls.fr"
STAFF_PASSWORD = "Tilleuls-Accueil-2025"
ORG_PASSWORD = "Secretariat-Alpha-77"
ATTEMPTS = 50
ATTACKER = "127.0.0.1"
HOME = "127.0.0.2"

MAX_ACCOUNT, MAX_SOURCE = 5, 8
LOCK, MAX_LOCK = 2, 3  # seconds
BASE_DELAY, MAX_DELAY = 0.1, 0.4
AUTH = f"""
[auth]
max_failures_per_account = {MAX_ACCOUNT}
max_failures_per_source = {MAX_SOURCE}
failure_window = "60s"
lock_duration = "{LOCK}s"
max_lock_duration = "{MAX_LOCK}s"
base_delay = {BASE_DELAY}
max_delay = {MAX_DELAY}
"""


def _attempt(
    port: int, ca_file: Path, login: str, password: str, source: str | None = None
) -> tuple[int, float]:
    """One connection, STARTTLS, one AUTH PLAIN: (reply code, seconds the AUTH took)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    client = smtplib.SMTP(
        "127.0.0.1", port, timeout=30, source_address=(source, 0) if source else None
    )
    try:
        client.starttls(context=context)
        client.ehlo()
        client.user, client.password = login, password
        started = time.monotonic()
        try:
            code, _ = client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            code = exc.smtp_code
        return code, time.monotonic() - started
    finally:
        client.close()


def _trace_text(operator: Operator) -> str:
    columns = [c for c in trace_events.columns if isinstance(c.type, String | Text)]
    with operator.services.db.read() as conn:
        rows = conn.execute(select(*columns)).all()
    return "\n".join(str(v) for row in rows for v in row if v is not None)


def _reason(event: traces.TraceEvent) -> str:
    detail = event.detail or ""
    for part in detail.split():
        if part.startswith("reason="):
            return part.removeprefix("reason=")
    return "ok" if event.outcome == "ok" else "?"


async def test_brute_force_is_slowed_locked_traced_and_leaves_no_secret(
    tmp_path: Path,
    database_url: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Cheap argon2 parameters, so that the measured times show the throttle's delays and
    # not the hash (whose cost varies with the load of the machine running the suite).
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_HASHER", cheap)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", cheap.hash(secrets.token_urlsafe(16)))
    space = LocalTrustSpace.create(
        tmp_path / "space", [ALPHA], database_urls=[database_url()], extra_config=AUTH
    )
    await space.start()
    try:
        op = space["alpha.mssante.fr"].operator
        assert op is not None and op.submission is not None
        port, ca = op.submission.port, space.ca_file
        services = op.services
        assert services.auth.policy.lock_duration == LOCK  # the [auth] table is in force

        # The real user: staff of the ORG mailbox, with a TOTP second factor (R62).
        await asyncio.to_thread(
            seed_structure_mailbox,
            services.mailboxes,
            ORG,
            "1750000010",
            "EHPAD Les Tilleuls",
            ORG_PASSWORD,
        )
        await asyncio.to_thread(
            services.auth.create_staff,
            STAFF,
            "Marie Durand",
            STAFF_PASSWORD,
            org_address=ORG,
        )
        secret, _ = await asyncio.to_thread(services.auth.enroll_totp, STAFF)

        # -- the attack: 50 wrong passwords from one address ----------------------------
        wrong = [f"Devine-{i:02d}-{secrets.token_hex(4)}" for i in range(ATTEMPTS)]
        results = []
        for password in wrong:
            results.append(await asyncio.to_thread(_attempt, port, ca, STAFF, password))
        assert all(code in (535, 454) for code, _ in results), results
        times = [t for _, t in results]

        # Every attempt is one trace event, refused, with the source and a reason code.
        with services.db.read() as conn:
            events = list(reversed(traces.list_events(conn, action="login", limit=1000)))
        attack = [e for e in events if e.peer == ATTACKER]
        assert len(attack) == ATTEMPTS
        assert all(e.outcome == "refused" and e.actor == STAFF for e in attack)
        assert all("mechanism=smtp-PLAIN" in (e.detail or "") for e in attack)
        reasons = [_reason(e) for e in attack]

        # Slowed: no delay for the first three, then a growing one, up to max_delay (the
        # lower bounds are exact: the server sleeps; the upper one is loose, for slow hosts).
        assert reasons[:MAX_ACCOUNT] == ["bad-credentials"] * MAX_ACCOUNT
        policy = services.auth.policy
        for i, took in enumerate(times[:MAX_ACCOUNT]):
            assert took >= 0.95 * policy.delay_for(i + 1), times[:6]
        assert policy.delay_for(4) == 2 * BASE_DELAY and policy.delay_for(5) == MAX_DELAY
        assert statistics.median(times[:3]) < 0.9 * 2 * BASE_DELAY, times[:6]
        assert min(times[MAX_ACCOUNT:]) >= 0.95 * MAX_DELAY, times
        assert statistics.median(times[:3]) < times[3] < statistics.median(times[4:]), times

        # Then locked: the account right after MAX_ACCOUNT failures, later the source; a
        # lock refuses without checking, so only a handful of the 50 guesses were tried.
        assert reasons[MAX_ACCOUNT] == "locked-account", reasons
        locked = [r for r in reasons if r in ("locked-account", "locked-source")]
        checked = [r for r in reasons if r == "bad-credentials"]
        assert "locked-source" in reasons, reasons
        assert len(locked) >= 30 and len(checked) <= 15, reasons
        assert set(reasons) <= {"bad-credentials", "locked-account", "locked-source"}
        source_state = services.auth.throttle(f"source:{ATTACKER}")
        assert source_state is not None and source_state.failures >= MAX_SOURCE

        # -- the real user, from another address ------------------------------------------
        started = time.monotonic()
        deadline = started + MAX_LOCK + 5
        home_codes = []
        while True:
            code = pyotp.TOTP(secret).now()
            reply, _ = await asyncio.to_thread(
                _attempt, port, ca, STAFF, STAFF_PASSWORD + code, HOME
            )
            home_codes.append(reply)
            if reply == 235:
                break
            assert time.monotonic() < deadline, f"still locked out: {home_codes}"
            await asyncio.sleep(0.25)
        # At worst the account lock (≤ max_lock_duration) was still running.
        assert time.monotonic() - started <= MAX_LOCK + 3
        with services.db.read() as conn:
            events = list(reversed(traces.list_events(conn, action="login", limit=1000)))
        home = [e for e in events if e.peer == HOME]
        assert len(home) == len(home_codes)  # every attempt traced, the refused ones too
        assert home[-1].outcome == "ok" and home[-1].actor == STAFF
        assert all(_reason(e) == "locked-account" for e in home[:-1])
        # The attacker's address is still counted (a success clears only the account).
        assert services.auth.throttle(f"source:{ATTACKER}") is not None
        assert services.auth.throttle(f"account:{STAFF}") is None

        # And the real user can work: a message from the ORG mailbox, as its member.
        def send() -> dict[str, tuple[int, bytes]]:
            context = ssl.create_default_context(cafile=str(ca))
            with smtplib.SMTP("127.0.0.1", port, source_address=(HOME, 0)) as client:
                client.starttls(context=context)
                client.login(STAFF, STAFF_PASSWORD + _next_code(secret))
                return client.sendmail(ORG, [ORG], make_message(ORG, [ORG]))

        assert await asyncio.to_thread(send) == {}
        await wait_for(lambda: services.store.list(ORG))

        # -- no secret anywhere ------------------------------------------------------------
        secrets_used = [*wrong, STAFF_PASSWORD, ORG_PASSWORD, secret]
        for password in [*wrong, STAFF_PASSWORD]:
            blob = base64.b64encode(f"\0{STAFF}\0{password}".encode()).decode()
            secrets_used.append(blob)  # the AUTH PLAIN argument as sent
        text = _trace_text(op)
        logs = caplog.text + "\n".join(str(r.args) for r in caplog.records)
        assert logs  # the run did log (DEBUG), and the grep below means something
        for value in secrets_used:
            assert value not in text
            assert value not in logs
    finally:
        await space.stop()


def _next_code(secret: str) -> str:
    """The code of the next 30-second step: accepted (±1 step) and not used yet."""
    return pyotp.TOTP(secret).at(time.time() + 30)
