"""Two mssante operators (alpha, beta) of a local trust space, each in its own process.

The trust space (CA, operator certificates, white list) is built with
`mssante.testing.trust_space`; the configuration files are then rewritten with fixed ports
and relay routes so that each operator can run as a plain `python -m mssante.cli serve`
subprocess, away from the load generator's CPU. Mailboxes are seeded before the servers
start. Beta's inbound listener also accepts plaintext sessions
(`smtp.inbound.insecure_plaintext_for_benchmarks`) so that Postfix's `smtp-source`, which
cannot do STARTTLS, can drive it; sessions using STARTTLS are checked as in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mssante.config import Config, load_config
from mssante.domain.identifiers import luhn_check_digit
from mssante.runtime import Services
from mssante.testing.clients import seed_professional_mailbox
from mssante.testing.trust_space import (
    LocalTrustSpace,
    OperatorSpec,
    write_operator_config,
)

ALPHA = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
BETA = OperatorSpec("beta.mssante.fr", "Operateur Beta", "1130000037", "Bouches-du-Rhone (13)")
PASSWORD = "bench-password-not-a-secret"
PLAINTEXT_FLAG = "insecure_plaintext_for_benchmarks = true  # benchmarks only\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rpps(n: int) -> str:
    payload = f"1{n:09d}"
    return payload + luhn_check_digit(payload)


@dataclass
class Mailboxes:
    senders: list[str] = field(default_factory=list)  # PER at alpha, one per client
    alpha_inboxes: list[str] = field(default_factory=list)  # local recipients at alpha
    beta_inboxes: list[str] = field(default_factory=list)  # recipients at beta
    e2e_sender: str = "e2e.sender@alpha.mssante.fr"
    e2e_recipient: str = "e2e.inbox@beta.mssante.fr"
    sink: str = "sink@beta.mssante.fr"  # smtp-source's recipient


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    submission: int
    inbound: int
    log_file: Path


class BenchOperators:
    """Build with `create`, then `start()`; `stop()` ends the server processes."""

    def __init__(self, root: Path, space: LocalTrustSpace, mailboxes: Mailboxes) -> None:
        self.root = root
        self.space = space
        self.mailboxes = mailboxes
        self.running: dict[str, Running] = {}

    @classmethod
    def create(
        cls, root: Path, *, clients: int, database_urls: Sequence[str] | None = None
    ) -> BenchOperators:
        space = LocalTrustSpace.create(root / "space", [ALPHA, BETA], database_urls=database_urls)
        ports = {s.domain: (free_port(), free_port()) for s in (ALPHA, BETA)}
        for local in space.operators:
            cfg = local.config
            others = [o.spec.domain for o in space.operators if o is not local]
            write_operator_config(
                local.config_file,
                data_dir=cfg.data_dir,
                domain=local.spec.domain,
                hostname=local.spec.mx_host,
                cert_file=cfg.tls.cert_file,
                key_file=cfg.tls.key_file,
                trust_anchors=cfg.tls.trust_anchors,
                trust_list_file=cfg.trust_list.file,
                database_url=cfg.database.url,
                submission_port=ports[local.spec.domain][0],
                inbound_port=ports[local.spec.domain][1],
                routes={d: f"127.0.0.1:{ports[d][1]}" for d in others},
                name=local.spec.organization,
            )
            if local.spec is BETA:
                text = local.config_file.read_text(encoding="utf-8")
                text = text.replace("[smtp.inbound]\n", "[smtp.inbound]\n" + PLAINTEXT_FLAG, 1)
                local.config_file.write_text(text, encoding="utf-8")
            local.config = load_config(local.config_file)
        boxes = Mailboxes(
            senders=[f"sender{i}@alpha.mssante.fr" for i in range(clients)],
            alpha_inboxes=[f"inbox{i}@alpha.mssante.fr" for i in range(clients)],
            beta_inboxes=[f"inbox{i}@beta.mssante.fr" for i in range(clients)],
        )
        bench = cls(root, space, boxes)
        bench._seed()
        return bench

    def config(self, domain: str) -> Config:
        return self.space[domain].config

    def _seed(self) -> None:
        plan = {
            ALPHA.domain: [
                *self.mailboxes.senders,
                *self.mailboxes.alpha_inboxes,
                self.mailboxes.e2e_sender,
            ],
            BETA.domain: [
                *self.mailboxes.beta_inboxes,
                self.mailboxes.e2e_recipient,
                self.mailboxes.sink,
            ],
        }
        n = 0
        for domain, addresses in plan.items():
            services = Services(self.config(domain))
            try:
                services.migrate()
                services.load_configured_trust_list()
                for address in addresses:
                    n += 1
                    seed_professional_mailbox(
                        services.mailboxes, address, rpps(n), PASSWORD, family_name=f"Bench{n}"
                    )
            finally:
                services.close()

    def start(self, cpus: set[int] | None = None, timeout: float = 60.0) -> None:
        for local in self.space.operators:
            domain = local.spec.domain
            log_file = self.root / f"{domain}.log"
            with log_file.open("wb") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "mssante.cli",
                        "--config",
                        str(local.config_file),
                        "serve",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
                )
            endpoints = _read_endpoints(process, timeout)
            if endpoints is None:
                process.kill()
                process.wait()
                tail = log_file.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{domain} did not start:\n{tail}")
            self.running[domain] = Running(process, *endpoints, log_file)

    def stop(self) -> None:
        for running in self.running.values():
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGTERM)
        for running in self.running.values():
            try:
                running.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
            if running.process.stdout is not None:
                running.process.stdout.close()
        self.running.clear()

    def pids(self) -> list[int]:
        return [r.process.pid for r in self.running.values()]


def _read_endpoints(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, int] | None:
    """The submission and inbound ports `mssante serve` prints once it listens."""
    found: dict[str, int] = {}
    done = threading.Event()

    def reader() -> None:
        assert process.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for raw in process.stdout:  # drained until the end so the server never blocks
                parts = raw.decode("utf-8", "replace").split()
                if len(parts) == 2 and parts[0] in ("submission", "inbound"):
                    found[parts[0]] = int(parts[1].rpartition(":")[2])
                if len(found) == 2:
                    done.set()
        done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not done.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            done.wait(0.5)  # lines printed just before exiting
            break
    if len(found) != 2:
        return None
    return found["submission"], found["inbound"]
