"""Durability under SIGKILL: a message that got 250 is never lost and never duplicated.

`mssante serve` runs as a separate process. Several client threads submit messages over
STARTTLS + AUTH to local mailboxes (one to three recipients each, so delivery and the Sent
copy are filed together). Once enough messages have been acknowledged, the server is killed
with SIGKILL while clients are mid-transaction, restarted on the same data directory and
database, loaded again, then stopped with SIGTERM. The stores are then read with the
services API:

* every message that got 250 is in each of its recipients' INBOX, and in its sender's Sent
  folder, exactly once;
* a message whose DATA was in flight when the server died (its body was sent, no reply came
  back) is either absent everywhere or present exactly once everywhere (the server may have
  committed just before dying), never twice, never half-delivered;
* no other message is stored anywhere.

`MSSANTE_DURABILITY_SEED` replays a run (the seed is printed with the summary).
"""

from __future__ import annotations

import enum
import os
import queue
import random
import re
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import IO

import pytest

from mssante.config import load_config
from mssante.domain.identifiers import luhn_check_digit
from mssante.runtime import Services
from mssante.testing.clients import seed_professional_mailbox
from mssante.testing.trust_space import LocalTrustSpace, OperatorSpec

pytestmark = pytest.mark.slow

DOMAIN = "durable.mssante.fr"
SPEC = OperatorSpec(DOMAIN, "Operateur Durable", "1750000028", "Paris (75)")
PASSWORD = "correct horse battery staple"
MAILBOXES = [f"{name}@{DOMAIN}" for name in ("anne", "bruno", "chloe", "david", "elise")]
CLIENTS = 8
PHASE1_ACKED = 600  # acknowledged messages before the kill (plus a random extra)
PHASE2_ACKED = 400  # acknowledged messages after the restart
START_TIMEOUT = 60.0
SMTP_TIMEOUT = 30.0


class Outcome(enum.Enum):
    PENDING = "pending"  # created, not yet past the DATA command
    UNSENT = "unsent"  # the connection broke before the body went out: must be absent
    IN_FLIGHT = "in-flight"  # body sent (or being sent), no reply: absent or once
    ACKED = "acked"  # 250 after DATA: exactly once
    REFUSED = "refused"  # a definite non-2xx reply: must be absent


@dataclass
class Record:
    seq: int
    phase: int
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    outcome: Outcome = Outcome.PENDING
    reply: str = ""

    def places(self) -> set[tuple[str, str]]:
        """Where the message must be filed: each recipient's INBOX and the Sent copy."""
        return {(r, "INBOX") for r in self.recipients} | {(self.sender, "Sent")}


@dataclass
class Ledger:
    """What every client sent and what it was told, shared by the client threads."""

    seed: int
    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # unexpected errors (server alive)
    awaiting_reply: int = 0  # clients whose body is sent and who wait for the reply
    acked_by_phase: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self, phase: int, sender: str, recipients: tuple[str, ...]) -> Record:
        with self.lock:
            seq = len(self.records) + 1
            token = f"{self.seed:x}.{seq:06d}.{random.getrandbits(48):012x}"
            record = Record(seq, phase, f"<dur-{token}@{DOMAIN}>", sender, recipients)
            self.records.append(record)
            return record

    def acked(self, phase: int) -> int:
        with self.lock:
            return self.acked_by_phase[phase]

    def count(self, outcome: Outcome, phase: int | None = None) -> int:
        with self.lock:
            return sum(
                r.outcome is outcome and (phase is None or r.phase == phase) for r in self.records
            )


def build_message(record: Record, rng: random.Random) -> bytes:
    msg = EmailMessage()
    msg["From"] = record.sender
    msg["To"] = ", ".join(record.recipients)
    msg["Subject"] = f"Durabilite {record.seq}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = record.message_id
    msg["X-Test-Seq"] = str(record.seq)
    words = " ".join(rng.choice(("bilan", "patient", "compte", "rendu", "suivi")) for _ in range(8))
    lines = [f"Ligne {i}: {words}" for i in range(rng.randint(5, 150))]
    msg.set_content("Bonjour,\n\n" + "\n".join(lines) + "\n.\nFin.\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency, then the end-of-data terminator."""
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


# -- the server process -------------------------------------------------------------------


class ServerProcess:
    """`python -m mssante.cli --config FILE serve`, with the ports it prints on stdout."""

    def __init__(self, config_file: Path, log_file: Path) -> None:
        self.config_file = config_file
        self.log_file = log_file
        self.proc: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> None:
        log: IO[str] = self.log_file.open("a", encoding="utf-8")
        log.write(f"\n==== start {datetime.now(UTC).isoformat()} ====\n")
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mssante.cli", "--config", str(self.config_file), "serve"],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        log.close()  # the child holds its own descriptor
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:  # keeps draining stdout for the life of the process
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        self.ports = {}
        deadline = time.monotonic() + START_TIMEOUT
        while not {"submission", "inbound"} <= self.ports.keys():
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop_now()
                raise AssertionError(
                    f"server did not start; log:\n{self.log_file.read_text()[-4000:]}"
                )
            name, _, endpoint = line.strip().partition(" ")
            if name in ("submission", "inbound"):
                self.ports[name] = int(endpoint.rpartition(":")[2])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def stop_now(self) -> None:
        """Cleanup: kill our own child if it is still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


# -- the clients --------------------------------------------------------------------------


def connect(port: int, ca_file: Path, login: str) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=SMTP_TIMEOUT)
    try:
        client.starttls(context=ssl.create_default_context(cafile=str(ca_file)))
        client.login(login, PASSWORD)
    except BaseException:
        client.close()
        raise
    return client


def transact(client: smtplib.SMTP, record: Record, data: bytes, ledger: Ledger) -> None:
    """One SMTP transaction, recording the outcome as precisely as the wire allows."""

    def refused(code: int, text: bytes) -> None:
        record.outcome = Outcome.REFUSED
        record.reply = f"{code} {text.decode(errors='replace')}"
        client.rset()

    code, text = client.mail(record.sender)
    if code != 250:
        return refused(code, text)
    for rcpt in record.recipients:
        code, text = client.rcpt(rcpt)
        if code not in (250, 251):
            return refused(code, text)
    code, text = client.docmd("DATA")
    if code != 354:
        return refused(code, text)
    # From here on the server may commit the message at any moment.
    record.outcome = Outcome.IN_FLIGHT
    with ledger.lock:
        ledger.awaiting_reply += 1
    try:
        client.send(dot_stuff(data))
        code, text = client.getreply()
    finally:
        with ledger.lock:
            ledger.awaiting_reply -= 1
    record.reply = f"{code} {text.decode(errors='replace')}"
    if code != 250:
        record.outcome = Outcome.REFUSED
        return
    with ledger.lock:
        record.outcome = Outcome.ACKED
        ledger.acked_by_phase[record.phase] += 1


def run_client(
    index: int,
    phase: int,
    port: int,
    ca_file: Path,
    ledger: Ledger,
    done: Callable[[], bool],
    killed: threading.Event,
) -> None:
    """Send until `done()`; on an error reconnect, unless the server has been killed."""
    rng = random.Random(ledger.seed * 1000 + phase * 100 + index)
    sender = MAILBOXES[index % len(MAILBOXES)]
    others = [m for m in MAILBOXES if m != sender]
    client: smtplib.SMTP | None = None
    try:
        while not done():
            if client is None:
                try:
                    client = connect(port, ca_file, sender)
                except (OSError, smtplib.SMTPException) as exc:
                    if killed.is_set():
                        return
                    with ledger.lock:
                        ledger.errors.append(f"client {index} connect: {exc!r}")
                    time.sleep(0.05)
                    continue
            count = rng.choices((1, 2, 3), weights=(5, 3, 2))[0]
            record = ledger.new(phase, sender, tuple(rng.sample(others, count)))
            data = build_message(record, rng)
            try:
                transact(client, record, data, ledger)
            except (OSError, smtplib.SMTPException) as exc:
                if record.outcome is Outcome.PENDING:
                    record.outcome = Outcome.UNSENT
                record.reply = repr(exc)
                client.close()
                client = None
                if killed.is_set():
                    return
                with ledger.lock:
                    ledger.errors.append(f"client {index} seq {record.seq}: {exc!r}")
    finally:
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


def run_phase(
    phase: int,
    server: ServerProcess,
    ca_file: Path,
    ledger: Ledger,
    done: Callable[[], bool],
    killed: threading.Event,
) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=run_client,
            args=(i, phase, server.ports["submission"], ca_file, ledger, done, killed),
            name=f"durability-client-{phase}-{i}",
            daemon=True,
        )
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list[threading.Thread], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"clients still running: {alive}"


# -- the test -----------------------------------------------------------------------------


Found = dict[tuple[str, str], Counter[str]]


def read_stores(config_file: Path) -> tuple[Found, dict[str, set[str]]]:
    """Message-ID counts per (mailbox, folder), read once the server has stopped, and the
    `X-Test-Seq` values of the stored bodies per Message-ID (every body is read back: the
    blob written before the commit must be intact after the crash).
    """
    services = Services(load_config(config_file))
    found: Found = {}
    seqs: dict[str, set[str]] = {}
    try:
        for address in MAILBOXES:
            for folder in ("INBOX", "Sent"):
                counts: Counter[str] = Counter()
                for stored in services.store.list(address, folder):
                    message_id = stored.message_id or "<none>"
                    body = message_from_bytes(services.store.read(stored))
                    seqs.setdefault(message_id, set()).add(str(body["X-Test-Seq"]))
                    counts[message_id] += 1
                found[(address, folder)] = counts
    finally:
        services.close()
    return found, seqs


def check(
    ledger: Ledger, found: Found, seqs: dict[str, set[str]]
) -> tuple[list[str], Counter[str]]:
    """The failures, and how the in-flight messages ended (delivered or absent)."""
    failures: list[str] = []
    in_flight: Counter[str] = Counter()
    by_id = {r.message_id: r for r in ledger.records}
    assert len(by_id) == len(ledger.records), "Message-ID tokens must be unique"
    for record in ledger.records:
        copies = {place: found[place][record.message_id] for place in sorted(record.places())}
        values = set(copies.values())
        what = f"seq {record.seq} {record.outcome.value} ({record.reply!r}): {copies}"
        if record.outcome is Outcome.ACKED:
            if values != {1}:
                failures.append(f"acknowledged message not delivered exactly once: {what}")
        elif record.outcome is Outcome.IN_FLIGHT:
            if values == {0}:
                in_flight["absent"] += 1
            elif values == {1}:
                in_flight["delivered"] += 1
            else:
                failures.append(f"in-flight message duplicated or half-delivered: {what}")
        elif values != {0}:
            failures.append(f"message that never got 250 was stored: {what}")
        if values != {0} and seqs.get(record.message_id) != {str(record.seq)}:
            failures.append(f"stored body does not match: {what} {seqs.get(record.message_id)}")
    for place, counts in found.items():
        for message_id, n in counts.items():
            owner = by_id.get(message_id)
            if owner is None:
                failures.append(f"unknown message {message_id} in {place} ({n}x)")
            elif place not in owner.places():
                failures.append(f"seq {owner.seq} misfiled in {place} ({n}x)")
    return failures, in_flight


def test_acknowledged_messages_survive_sigkill_exactly_once(
    tmp_path: Path, database_url: Callable[[], str]
) -> None:
    started = time.monotonic()
    seed = int(os.environ.get("MSSANTE_DURABILITY_SEED") or random.randrange(1, 2**31))
    rng = random.Random(seed)
    ledger = Ledger(seed)
    space = LocalTrustSpace.create(tmp_path / "space", [SPEC], database_urls=[database_url()])
    config_file = space.operators[0].config_file

    services = Services(load_config(config_file))
    try:
        services.migrate()
        for i, address in enumerate(MAILBOXES):
            payload = f"1000000{i:03d}"
            seed_professional_mailbox(
                services.mailboxes,
                address,
                payload + luhn_check_digit(payload),
                PASSWORD,
                family_name=address.partition("@")[0].capitalize(),
            )
    finally:
        services.close()

    server = ServerProcess(config_file, tmp_path / "server.log")
    killed = threading.Event()
    try:
        # Phase 1: load, then SIGKILL at a random moment while clients wait for DATA replies.
        server.start()
        target = PHASE1_ACKED + rng.randrange(0, 100)
        threads = run_phase(1, server, space.ca_file, ledger, killed.is_set, killed)
        deadline = time.monotonic() + 120
        while ledger.acked(1) < target:
            assert time.monotonic() < deadline, "phase 1 too slow"
            assert all(t.is_alive() for t in threads), "a client stopped early"
            time.sleep(0.01)
        wanted = rng.randint(1, CLIENTS // 2)
        spin_until = time.monotonic() + 2 + rng.random()
        while ledger.awaiting_reply < wanted and time.monotonic() < spin_until:
            time.sleep(0.0005)
        awaiting_at_kill = ledger.awaiting_reply
        killed.set()
        server.kill()
        join_all(threads)
        assert not ledger.errors, f"errors before the kill: {ledger.errors[:10]}"
        assert ledger.count(Outcome.PENDING) == 0
        interrupted = ledger.count(Outcome.IN_FLIGHT) + ledger.count(Outcome.UNSENT)
        assert interrupted >= 1, "the kill should have interrupted the clients"
        killed.clear()

        # Phase 2: restart on the same data directory and database, load again, SIGTERM.
        server.start()
        threads = run_phase(
            2, server, space.ca_file, ledger, lambda: ledger.acked(2) >= PHASE2_ACKED, killed
        )
        join_all(threads, timeout=120)
        assert not ledger.errors, f"errors after the restart: {ledger.errors[:10]}"
        assert server.terminate() == 0, server.log_file.read_text()[-4000:]
    finally:
        killed.set()  # on an early failure, lets the client threads give up
        server.stop_now()

    found, seqs = read_stores(config_file)
    failures, in_flight = check(ledger, found, seqs)
    acked = ledger.count(Outcome.ACKED)
    stored = sum(sum(c.values()) for c in found.values())
    engine = load_config(config_file).database_url.partition(":")[0]
    print(
        f"\ndurability [{engine}, seed {seed}]: {len(ledger.records)} messages sent by"
        f" {CLIENTS} clients; acked {acked} (phase 1 {ledger.acked(1)}, phase 2"
        f" {ledger.acked(2)}); killed with {awaiting_at_kill} awaiting DATA reply;"
        f" in-flight {ledger.count(Outcome.IN_FLIGHT)} (delivered {in_flight['delivered']},"
        f" absent {in_flight['absent']}); unsent {ledger.count(Outcome.UNSENT)};"
        f" refused {ledger.count(Outcome.REFUSED)}; stored copies {stored}"
        f" (INBOX {sum(sum(c.values()) for (_, f), c in found.items() if f == 'INBOX')},"
        f" Sent {sum(sum(c.values()) for (_, f), c in found.items() if f == 'Sent')});"
        f" {time.monotonic() - started:.1f}s"
    )
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:30])
    assert len(ledger.records) >= 1000 and acked >= PHASE1_ACKED + PHASE2_ACKED
    refused = Counter(r.reply for r in ledger.records if r.outcome is Outcome.REFUSED)
    assert not refused, f"refused under load: {refused.most_common(5)}"
