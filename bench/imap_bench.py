"""`make bench`, IMAP part: mssante's IMAP server side by side with Dovecot.

Both servers run in their own processes on this machine (mssante: `python -m mssante.cli
--config … serve`; Dovecot: Debian's `dovecot -F` from a throwaway configuration, when
installed) and get the same mailboxes, loaded with APPEND over IMAP. The clients run in
this process and speak IMAP over implicit TLS (the 993 role). Measured:

* FETCH of full bodies: `FETCH 1:* BODY.PEEK[]` on a 1,000-message folder (messages/s,
  MB/s of message octets; median of 3 runs after a warm-up), and the server CPU it took;
* `UID SEARCH HEADER Subject <word>` over a 10,000-message folder (ms, median of 5 runs;
  the first run, before any cache is warm, is also reported);
* memory per logged-in IDLE connection: N connections (5,000; `--quick` 500), each
  LOGIN + SELECT INBOX + IDLE; the server's memory with all of them idle minus its memory
  before, divided by N. For mssante (one process): RSS and PSS. For Dovecot (a master,
  `imap-login` processes and one `imap` process per connection): the sums of RSS and of
  PSS over its process tree; PSS counts shared pages once, so the ratios use PSS.

Ratios are mssante/Dovecot. Goals (issue 4): FETCH throughput at least half of Dovecot's,
under 30 KB per idle connection. Figures, not pass/fail thresholds.

Fairness notes, also written in the JSON: Dovecot runs in its "high-performance" login
mode (`service_count = 0`, a few `imap-login` processes proxy every TLS connection) with
its process limits raised for N connections, maildir storage and its default fsync
policy; IDLE hibernation (`imap_hibernate_timeout`) is off, as by default. mssante
encrypts every message at rest (AES-256-GCM) and Dovecot stores plain files. The bench
users' mssante password hashes are cheap argon2id ones written straight into the database,
so that N logins do not take minutes of argon2 (login cost is not what is measured);
Dovecot checks plain passwords from a passwd-file.

Writes bench/results/imap.json. Run alone (`python bench/imap_bench.py [--quick] [--engine
postgresql] [--no-dovecot]`) or from `bench/run.py` (`--part imap`, or `all`, the default).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import grp
import json
import os
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operators import ALPHA, _read_endpoints, free_port, rpps

RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
PASSWORD = "bench-password-not-a-secret"
BENCH_USER = "bench.imap@alpha.mssante.fr"
SEARCH_FOLDER = "Recherche"
SEARCH_WORD = "liaison"
IDLE_USERS = 100
IDLE_INBOX_MESSAGES = 5
LOAD_CONNECTIONS = 4
SOURCE_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 42)]  # spreads the ephemeral ports
SUBJECTS = [
    "Compte rendu de consultation",
    "Lettre de liaison",
    "Resultats de biologie",
    "Ordonnance",
    "Compte rendu operatoire",
    "Demande d'avis",
    "Courrier de sortie",
    "Imagerie: compte rendu",
    "Convocation",
    "Synthese medicale",
    "Certificat",
    "Resultats anatomopathologie",
]


def _idle_login(i: int) -> str:
    return f"idle{i}@alpha.mssante.fr"


# -- the messages ------------------------------------------------------------------------


def _b64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def make_corpus(
    count: int, seed: int, *, attachment_mix: Sequence[tuple[float, int, int]]
) -> Iterator[bytes]:
    """`count` realistic messages: a text part, sometimes a base64 attachment.

    `attachment_mix`: (probability, min KB, max KB) of an attachment; the rest are text
    only (1–6 KB). Deterministic for a given seed, so both servers get the same octets.
    """
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    words = (
        "patient consultation examen traitement suivi bilan antecedents allergie tension "
        "cardiaque pulmonaire radiographie echographie prescription posologie controle "
        "hospitalisation sortie diagnostic evolution favorable rendez-vous medecin"
    ).split()
    for n in range(count):
        subject = f"{rng.choice(SUBJECTS)} - patient {rng.randrange(10**6):06d}"
        sender = f"dr.{rng.choice(['martin', 'bernard', 'petit', 'durand'])}@beta.mssante.fr"
        date = start + timedelta(minutes=7 * n)
        text_size = rng.randint(1024, 6 * 1024)
        text = []
        size = 0
        while size < text_size:
            line = " ".join(rng.choice(words) for _ in range(12))
            text.append(line)
            size += len(line) + 2
        body_text = ("\r\n".join(text) + "\r\n").encode()
        attachment = b""
        roll, acc = rng.random(), 0.0
        for probability, low, high in attachment_mix:
            acc += probability
            if roll < acc:
                attachment = rng.randbytes(rng.randint(low * 1024, high * 1024))
                break
        head = (
            f"From: <{sender}>\r\nTo: <{BENCH_USER}>\r\nSubject: {subject}\r\n"
            f"Date: {date:%a, %d %b %Y %H:%M:%S +0000}\r\n"
            f"Message-ID: <bench-{seed}-{n}@beta.mssante.fr>\r\nMIME-Version: 1.0\r\n"
        ).encode()
        if not attachment:
            yield head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body_text
            continue
        boundary = f"b-{seed}-{n}".encode()
        yield (
            head
            + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
            + b"--" + boundary + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + body_text
            + b"--" + boundary + b"\r\nContent-Type: application/pdf; name=cr.pdf\r\n"
            + b"Content-Transfer-Encoding: base64\r\n"
            + b"Content-Disposition: attachment; filename=cr.pdf\r\n\r\n"
            + _b64_lines(attachment) + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip


FETCH_MIX = ((0.35, 20, 80), (0.05, 200, 500))  # mean about 50 KB a message
SEARCH_MIX = ((0.15, 10, 60),)  # mean about 10 KB a message


# -- a blocking IMAP client --------------------------------------------------------------

_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n$")


class ImapError(RuntimeError):
    pass


class Client:
    """One IMAP connection over implicit TLS, read through one growing buffer."""

    def __init__(self, target: Target, *, timeout: float = 600, source: str | None = None) -> None:
        raw = socket.create_connection(
            (target.host, target.port), timeout=timeout,
            source_address=(source, 0) if source else None,
        )  # fmt: skip
        self.sock = target.context.wrap_socket(raw, server_hostname=target.server_hostname)
        self.buf = bytearray()
        self.pos = 0
        self.counter = 0
        greeting = self.line()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting {greeting!r}")

    def _recv(self) -> None:
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ImapError("connection closed by the server")
        if self.pos > (1 << 20):
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += chunk

    def line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n", self.pos)
            if end >= 0:
                out = bytes(self.buf[self.pos : end + 1])
                self.pos = end + 1
                return out
            self._recv()

    def skip(self, size: int) -> None:
        while len(self.buf) - self.pos < size:
            size -= len(self.buf) - self.pos
            self.buf.clear()
            self.pos = 0
            self._recv()
        self.pos += size

    def response(self) -> tuple[bytes, int]:
        """One response's first line, and the octets of its literals (skipped)."""
        first = self.line()
        current, octets = first, 0
        while (m := _LITERAL.search(current)) is not None:
            size = int(m.group(1))
            self.skip(size)
            octets += size
            current = self.line()
        return first, octets

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, text: str) -> tuple[bytes, list[bytes]]:
        self.counter += 1
        tag = f"b{self.counter}".encode()
        self.send(tag + b" " + text.encode() + b"\r\n")
        untagged = []
        while True:
            first, _ = self.response()
            if first.startswith(tag + b" "):
                if not first.startswith(tag + b" OK"):
                    raise ImapError(f"{text[:60]!r}: {first!r}")
                return first, untagged
            untagged.append(first)

    def login(self, user: str, password: str) -> None:
        self.command(f'LOGIN "{user}" "{password}"')

    def append(self, folder: str, data: bytes) -> None:
        self.counter += 1
        tag = f"b{self.counter}".encode()
        self.send(tag + f' APPEND "{folder}" {{{len(data)}+}}\r\n'.encode() + data + b"\r\n")
        while True:
            first, _ = self.response()
            if first.startswith(tag + b" "):
                if not first.startswith(tag + b" OK"):
                    raise ImapError(f"APPEND: {first!r}")
                return

    def fetch_all(self) -> tuple[float, int, int]:
        """`FETCH 1:* BODY.PEEK[]`: (seconds, messages, octets of bodies)."""
        self.counter += 1
        tag = f"b{self.counter}".encode()
        t0 = time.perf_counter()
        self.send(tag + b" FETCH 1:* BODY.PEEK[]\r\n")
        messages = octets = 0
        while True:
            first, size = self.response()
            if first.startswith(tag + b" "):
                elapsed = time.perf_counter() - t0
                if not first.startswith(tag + b" OK"):
                    raise ImapError(f"FETCH: {first!r}")
                return elapsed, messages, octets
            if b" FETCH " in first:
                messages += 1
                octets += size

    def cipher(self) -> str:
        info = self.sock.cipher()
        return f"{self.sock.version()} {info[0]}" if info else "?"

    def close(self) -> None:
        with contextlib.suppress(OSError, ImapError):
            self.command("LOGOUT")
        with contextlib.suppress(OSError):
            self.sock.close()


# -- processes -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children = _ppid_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def memory_kb(pids: Sequence[int]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in KiB, from /proc/PID/smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / _TICK
    return total


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the servers -------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    host: str
    port: int
    context: ssl.SSLContext
    server_hostname: str
    pids: Callable[[], list[int]]


class MssanteServer:
    """One operator (alpha) with its IMAP listeners, as a `mssante serve` subprocess."""

    def __init__(self, root: Path, database_url: str, users: Sequence[str]) -> None:
        from mssante.testing.trust_space import LocalTrustSpace, write_operator_config

        self.root = root
        self.space = LocalTrustSpace.create(root / "space", [ALPHA], database_urls=[database_url])
        local = self.space.operators[0]
        cfg = local.config
        self.imaps_port = free_port()
        write_operator_config(
            local.config_file, data_dir=cfg.data_dir, domain=ALPHA.domain,
            hostname=ALPHA.mx_host, cert_file=cfg.tls.cert_file, key_file=cfg.tls.key_file,
            trust_anchors=cfg.tls.trust_anchors, trust_list_file=cfg.trust_list.file,
            database_url=cfg.database.url, submission_port=free_port(),
            inbound_port=free_port(), imap_port=free_port(), imaps_port=self.imaps_port,
            name=ALPHA.organization,
        )  # fmt: skip
        self.config_file = local.config_file
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = root / "mssante.log"
        self._seed(users)

    def _seed(self, users: Sequence[str]) -> None:
        from argon2 import PasswordHasher
        from sqlalchemy import update

        from mssante.config import load_config
        from mssante.runtime import Services
        from mssante.storage.schema import users as users_table
        from mssante.testing.clients import seed_professional_mailbox

        # Cheap argon2id parameters (the verifier reads them from the hash): N logins in
        # seconds. Production hashes are t=3, m=64 MiB; login cost is not measured here.
        cheap = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(PASSWORD)
        services = Services(load_config(self.config_file))
        try:
            services.migrate()
            services.load_configured_trust_list()
            for n, login in enumerate(users, start=1):
                seed_professional_mailbox(
                    services.mailboxes, login, rpps(500 + n), PASSWORD, family_name=f"Bench{n}"
                )
            with services.db.write() as conn:
                conn.execute(update(users_table).values(password_hash=cheap))
        finally:
            services.close()

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mssante.cli", "--config", str(self.config_file), "serve"],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        if _read_endpoints(self.process, 60) is None:
            self.stop()
            tail = self.log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"mssante did not start:\n{tail}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def target(self) -> Target:
        ctx = ssl.create_default_context(cafile=str(self.space.ca_file))
        return Target("mssante", HOST, self.imaps_port, ctx, HOST, self.pids)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None else []


def dovecot_binary() -> str | None:
    binary = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )
    if binary is None or not os.access("/usr/lib/dovecot/imap", os.X_OK):
        return None
    return binary


def dovecot_version() -> str:
    binary = dovecot_binary()
    if binary is None:
        return "not installed"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


_DOVECOT_CONF = """\
# Throwaway Dovecot for mssante's IMAP benchmark (bench/imap_bench.py). Not for production.
protocols = imap
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
instance_name = mssante-bench-{port}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
first_valid_gid = {gid}
default_process_limit = {processes}
default_client_limit = {clients}
default_vsz_limit = 1G

ssl = required
ssl_cert = <{root}/tls/server.pem
ssl_key = <{root}/tls/server.key
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {root}/users
}}

mail_location = maildir:{root}/mail/%Lu
namespace inbox {{
  separator = /
  inbox = yes
}}
protocol imap {{
  mail_max_userip_connections = {clients}
}}

# "High-performance" login mode: a few imap-login processes proxy every TLS connection.
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = {cores}
  client_limit = {clients}
}}
service imap {{
  process_limit = {processes}
}}
service anvil {{
  chroot =
  client_limit = {anvil}
}}
service auth {{
  client_limit = {anvil}
}}
"""


class DovecotServer:
    """Debian's Dovecot from a configuration in a temporary directory (root: as mssante-test)."""

    def __init__(self, root: Path, users: Sequence[str], connections: int) -> None:
        from mssante.pki import DemoCA, DistinguishedName

        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            from mssante.testing.postgres import _ensure_test_user

            entry = _ensure_test_user()
        else:
            entry = pwd.getpwuid(os.geteuid())
        user, uid, gid = entry.pw_name, entry.pw_uid, entry.pw_gid
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)
        for sub in ("tls", "mail", "home", "state", "run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        ca = DemoCA.create("mssante IMAP bench CA")
        self.ca_file = root / "tls" / "ca.pem"
        ca.write_cert(self.ca_file)
        leaf = ca.issue(
            DistinguishedName("localhost"), dns_names=("localhost",), ip_addresses=(HOST,)
        )
        leaf.write(root / "tls" / "server.pem", root / "tls" / "server.key")
        (root / "users").write_text(
            "".join(
                f"{login}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{root}/home/{login}::\n"
                for login in users
            ),
            encoding="utf-8",
        )
        clients = connections + 1000
        config = _DOVECOT_CONF.format(
            host=HOST, root=root, port=self.port, imap_port=free_port(), user=user,
            group=group, uid=uid, gid=gid, processes=clients, clients=clients,
            anvil=clients * 3, cores=max(1, os.cpu_count() or 1),
        )  # fmt: skip
        self.config = root / "dovecot.conf"
        self.config.write_text(config, encoding="utf-8")
        if os.geteuid() == 0:
            for path in [root, *root.rglob("*")]:
                os.chown(path, uid, gid, follow_symlinks=False)
            for path in (self.config, root / "tls" / "server.key", root / "state"):
                os.chown(path, 0, 0)

    def start(self) -> None:
        binary = dovecot_binary()
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = (
                    self.process.stdout.read().decode(errors="replace")
                    if self.process.stdout
                    else ""
                )
                self.process = None
                raise RuntimeError(f"dovecot exited at start: {out}\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not listen\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        # The master's children (imap, imap-login…) end with it; wait for them to go.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(process_tree(process.pid)) > 1:
            time.sleep(0.2)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def target(self) -> Target:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return Target("dovecot", HOST, self.port, ctx, "localhost", self.pids)

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process is not None else []


# -- scenarios -----------------------------------------------------------------------------


def load_folder(target: Target, user: str, folder: str, messages: Sequence[bytes]) -> float:
    """APPEND `messages` over a few connections; returns messages/s."""
    if folder != "INBOX":
        c = Client(target)
        c.login(user, PASSWORD)
        c.command(f'CREATE "{folder}"')
        c.close()
    slices = [messages[i::LOAD_CONNECTIONS] for i in range(LOAD_CONNECTIONS)]
    errors: list[BaseException] = []

    def worker(part: Sequence[bytes]) -> None:
        try:
            c = Client(target)
            c.login(user, PASSWORD)
            for data in part:
                c.append(folder, data)
            c.close()
        except BaseException as exc:
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(s,)) for s in slices]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return len(messages) / (time.perf_counter() - t0)


def load_idle_inboxes(target: Target, users: Sequence[str], per_user: int) -> None:
    small = list(make_corpus(per_user, 99, attachment_mix=()))

    def one(user: str) -> None:
        c = Client(target)
        c.login(user, PASSWORD)
        for data in small:
            c.append("INBOX", data)
        c.close()

    with concurrent.futures.ThreadPoolExecutor(LOAD_CONNECTIONS) as pool:
        list(pool.map(one, users))


def measure_fetch(target: Target, runs: int) -> dict[str, Any]:
    c = Client(target)
    c.login(BENCH_USER, PASSWORD)
    c.command("EXAMINE INBOX")
    c.fetch_all()  # warm-up: caches, indexes, code paths
    results = []
    cpu0 = cpu_seconds(target.pids())
    for _ in range(runs):
        results.append(c.fetch_all())
    cpu = cpu_seconds(target.pids()) - cpu0
    cipher = c.cipher()
    c.close()
    elapsed = statistics.median(r[0] for r in results)
    messages, octets = results[0][1], results[0][2]
    return {
        "messages": messages,
        "octets": octets,
        "runs": runs,
        "seconds_each": [round(r[0], 3) for r in results],
        "seconds_median": round(elapsed, 3),
        "msgs_per_s": round(messages / elapsed, 1),
        "mb_per_s": round(octets / elapsed / 1e6, 2),
        "server_cpu_s_per_run": round(cpu / runs, 3),
        "tls": cipher,
    }


def measure_search(target: Target, runs: int) -> dict[str, Any]:
    c = Client(target)
    c.login(BENCH_USER, PASSWORD)
    _, untagged = c.command(f'EXAMINE "{SEARCH_FOLDER}"')
    exists = next((int(u.split()[1]) for u in untagged if u.endswith(b" EXISTS\r\n")), 0)
    times, found = [], 0
    cpu0 = cpu_seconds(target.pids())
    for _ in range(runs):
        t0 = time.perf_counter()
        _, untagged = c.command(f"UID SEARCH HEADER Subject {SEARCH_WORD}")
        times.append((time.perf_counter() - t0) * 1000)
        hits = next((u for u in untagged if u.startswith(b"* SEARCH")), b"* SEARCH")
        found = len(hits.split()) - 2
    cpu = cpu_seconds(target.pids()) - cpu0
    c.close()
    return {
        "messages": exists,
        "query": f"UID SEARCH HEADER Subject {SEARCH_WORD}",
        "matches": found,
        "runs_ms": [round(t, 1) for t in times],
        "first_ms": round(times[0], 1),
        "median_ms": round(statistics.median(times), 1),
        "server_cpu_s_per_run": round(cpu / runs, 3),
    }


async def _open_idle(target: Target, user: str, source: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(
        target.host, target.port, ssl=target.context,
        server_hostname=target.server_hostname, local_addr=(source, 0),
    )  # fmt: skip

    async def until(prefix: bytes) -> bytes:
        while True:
            line = await reader.readline()
            if not line:
                raise ImapError("closed")
            if line.startswith(prefix):
                return line

    await until(b"* OK")
    writer.write(f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
    if not (await until(b"a ")).startswith(b"a OK"):
        raise ImapError("LOGIN refused")
    writer.write(b"b SELECT INBOX\r\n")
    if not (await until(b"b ")).startswith(b"b OK"):
        raise ImapError("SELECT refused")
    writer.write(b"c IDLE\r\n")
    await until(b"+")
    writer.transport.set_write_buffer_limits(0)
    writer._idle_reader = reader  # type: ignore[attr-defined]  # keep it alive
    return writer


async def _idle_connections(
    target: Target, count: int, users: Sequence[str], log: Callable[[str], None]
) -> dict[str, Any]:
    """Open up to `count` IDLE connections; measure the server's memory before and after."""
    import asyncio.sslproto

    # The bench's own client connections: asyncio gives each TLS connection a 256 KiB
    # read buffer; a smaller one keeps 5,000 clients light (this process only).
    asyncio.sslproto.SSLProtocol.max_size = 32 * 1024
    semaphore = asyncio.Semaphore(64)
    writers: list[asyncio.StreamWriter] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        async with semaphore:
            if errors and len(errors) > 20:
                return
            try:
                writer = await asyncio.wait_for(
                    _open_idle(
                        target, users[i % len(users)], SOURCE_ADDRESSES[i % len(SOURCE_ADDRESSES)]
                    ),
                    120,
                )
            except (OSError, ImapError, TimeoutError, ssl.SSLError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            writers.append(writer)
            if len(writers) % 1000 == 0:
                log(f"    {len(writers)} idle connections")

    # Warm-up: code paths, TLS context, allocator pools; then the baseline.
    await asyncio.gather(*(one(i) for i in range(min(20, count))))
    for w in writers:
        w.close()
    writers.clear()
    await asyncio.sleep(2)
    before = memory_kb(target.pids())
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    setup = time.perf_counter() - t0
    await asyncio.sleep(3)
    pids = target.pids()
    after = memory_kb(pids)
    opened = len(writers)
    for w in writers:
        w.close()
    await asyncio.gather(
        *(asyncio.wait_for(w.wait_closed(), 10) for w in writers), return_exceptions=True
    )
    out: dict[str, Any] = {
        "requested": count,
        "connections": opened,
        "users": len(users),
        "inbox_messages_each": IDLE_INBOX_MESSAGES,
        "setup_s": round(setup, 1),
        "server_processes": len(pids),
        "rss_kb_before": before[0],
        "rss_kb_after": after[0],
        "pss_kb_before": before[1],
        "pss_kb_after": after[1],
        "rss_kb_per_connection": round((after[0] - before[0]) / opened, 1) if opened else None,
        "pss_kb_per_connection": round((after[1] - before[1]) / opened, 1) if opened else None,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
    }
    if opened < count:
        out["note"] = f"only {opened} of {count} connections could be opened on this machine"
    return out


def measure_idle(
    target: Target, count: int, users: Sequence[str], log: Callable[[str], None]
) -> dict[str, Any]:
    return asyncio.run(_idle_connections(target, count, users, log))


@dataclass
class Plan:
    fetch_messages: int
    search_messages: int
    idle_connections: int
    fetch_runs: int = 3
    search_runs: int = 5
    idle_users: list[str] = field(default_factory=list)


def run_server(name: str, server: Any, plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Load the mailboxes, then measure IDLE memory (fresh process), FETCH and SEARCH."""
    out: dict[str, Any] = {}
    server.start()
    target: Target = server.target()
    log(f"  {name}: APPEND {plan.fetch_messages} + {plan.search_messages} messages …")
    fetch_corpus = list(make_corpus(plan.fetch_messages, 1, attachment_mix=FETCH_MIX))
    out["append_msgs_per_s"] = round(load_folder(target, BENCH_USER, "INBOX", fetch_corpus), 1)
    del fetch_corpus
    search_corpus = list(make_corpus(plan.search_messages, 2, attachment_mix=SEARCH_MIX))
    rate = load_folder(target, BENCH_USER, SEARCH_FOLDER, search_corpus)
    out["append_msgs_per_s_search_folder"] = round(rate, 1)
    del search_corpus
    load_idle_inboxes(target, plan.idle_users, IDLE_INBOX_MESSAGES)
    # A fresh process for the memory figure: nothing left from loading.
    server.stop()
    server.start()
    log(f"  {name}: {plan.idle_connections} IDLE connections …")
    out["idle"] = measure_idle(target, plan.idle_connections, plan.idle_users, log)
    log(f"  {name}: FETCH 1:* BODY.PEEK[] × {plan.fetch_runs} …")
    out["fetch"] = measure_fetch(target, plan.fetch_runs)
    log(f"  {name}: UID SEARCH HEADER × {plan.search_runs} …")
    out["search"] = measure_search(target, plan.search_runs)
    return out


def _ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if not a or not b:
        return None
    return round(a / b, digits)


def ratios(m: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    return {
        "fetch_msgs_per_s": _ratio(m["fetch"]["msgs_per_s"], d["fetch"]["msgs_per_s"]),
        "fetch_mb_per_s": _ratio(m["fetch"]["mb_per_s"], d["fetch"]["mb_per_s"]),
        "search_median_ms": _ratio(m["search"]["median_ms"], d["search"]["median_ms"]),
        "search_first_ms": _ratio(m["search"]["first_ms"], d["search"]["first_ms"]),
        "idle_kb_per_connection_pss": _ratio(
            m["idle"]["pss_kb_per_connection"], d["idle"]["pss_kb_per_connection"]
        ),
        "idle_kb_per_connection_rss": _ratio(
            m["idle"]["rss_kb_per_connection"], d["idle"]["rss_kb_per_connection"]
        ),
    }


def goals(m: dict[str, Any], r: dict[str, Any] | None) -> dict[str, Any]:
    per = m["idle"]["rss_kb_per_connection"]
    fetch_ratio = r.get("fetch_mb_per_s") if r else None
    return {
        "fetch_at_least_half_of_dovecot": None if fetch_ratio is None else fetch_ratio >= 0.5,
        "idle_under_30_kb_per_connection": None if per is None else per < 30,
    }


# -- output ----------------------------------------------------------------------------------


def print_tables(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    res = report["results"]
    m, d = res["mssante"], res.get("dovecot")
    dov = d if d and "skipped" not in d else None
    r = res.get("ratio") or {}
    console.print(
        f"\n[bold]mssante IMAP benchmark[/bold] — engine {report['settings']['engine']}, "
        f"{report['machine']['cores']} cores, Python {report['machine']['python']}, "
        f"Dovecot: {report['settings']['dovecot']}"
    )
    table = Table(title="IMAP over TLS (ratio = mssante / Dovecot)")
    for col in ("measure", "mssante", "Dovecot", "ratio"):
        table.add_column(col, justify="left" if col == "measure" else "right")

    def row(label: str, a: Any, b: Any, ratio: Any) -> None:
        def fmt(v: Any) -> str:
            if v is None:
                return "-"
            return f"{v:,.2f}" if isinstance(v, float) else str(v)

        table.add_row(label, fmt(a), fmt(b), fmt(ratio))

    mf, ms, mi = m["fetch"], m["search"], m["idle"]
    df = dov["fetch"] if dov else {}
    ds = dov["search"] if dov else {}
    di = dov["idle"] if dov else {}
    row(f"FETCH 1:* BODY.PEEK[] ({mf['messages']} msgs), msgs/s", mf["msgs_per_s"],
        df.get("msgs_per_s"), r.get("fetch_msgs_per_s"))  # fmt: skip
    row("FETCH, MB/s", mf["mb_per_s"], df.get("mb_per_s"), r.get("fetch_mb_per_s"))
    row("FETCH, server CPU s/run", mf["server_cpu_s_per_run"], df.get("server_cpu_s_per_run"), None)
    row(f"UID SEARCH HEADER ({ms['messages']} msgs), median ms", ms["median_ms"],
        ds.get("median_ms"), r.get("search_median_ms"))  # fmt: skip
    row(
        "UID SEARCH HEADER, first run ms",
        ms["first_ms"],
        ds.get("first_ms"),
        r.get("search_first_ms"),
    )
    row("UID SEARCH, matches", ms["matches"], ds.get("matches"), None)
    row(
        f"IDLE connections opened (of {mi['requested']})",
        mi["connections"],
        di.get("connections"),
        None,
    )
    row("IDLE KB/connection (PSS)", mi["pss_kb_per_connection"], di.get("pss_kb_per_connection"),
        r.get("idle_kb_per_connection_pss"))  # fmt: skip
    row("IDLE KB/connection (RSS)", mi["rss_kb_per_connection"], di.get("rss_kb_per_connection"),
        r.get("idle_kb_per_connection_rss"))  # fmt: skip
    row(
        "APPEND msgs/s (4 connections, loading)",
        m["append_msgs_per_s"],
        dov.get("append_msgs_per_s") if dov else None,
        None,
    )
    console.print(table)
    g = res["goals"]
    console.print(
        f"goals: FETCH ≥ ½ Dovecot: {g['fetch_at_least_half_of_dovecot']}; "
        f"idle < 30 KB/connection: {g['idle_under_30_kb_per_connection']}"
    )
    if d and "skipped" in d:
        console.print(f"[yellow]Dovecot comparison skipped:[/yellow] {d['skipped']}")
    for name, values in (("mssante", mi), ("Dovecot", di)):
        if values.get("note"):
            console.print(f"[yellow]{name}: {values['note']}[/yellow]")


# -- main ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the IMAP part (also registered by bench/run.py)."""
    parser.add_argument("--imap-connections", type=int, help="IDLE connections (5000, quick 500)")
    parser.add_argument("--imap-fetch-messages", type=int, help="FETCH folder (1000, quick 200)")
    parser.add_argument(
        "--imap-search-messages", type=int, help="SEARCH folder (10000, quick 2000)"
    )
    parser.add_argument("--no-dovecot", action="store_true", help="skip the Dovecot comparison")
    parser.add_argument("--imap-output", type=Path, default=RESULTS / "imap.json")


def plan_for(args: argparse.Namespace) -> Plan:
    quick = bool(getattr(args, "quick", False))
    plan = Plan(
        fetch_messages=args.imap_fetch_messages or (200 if quick else 1000),
        search_messages=args.imap_search_messages or (2000 if quick else 10_000),
        idle_connections=args.imap_connections or (500 if quick else 5000),
    )
    if quick:
        plan.fetch_runs, plan.search_runs = 2, 3
    plan.idle_users = [_idle_login(i) for i in range(IDLE_USERS)]
    return plan


def run_part(args: argparse.Namespace, console: Any) -> dict[str, Any]:
    """The IMAP part: returns the report and writes `args.imap_output`."""
    import platform

    from mssante.testing.postgres import PostgresServer

    plan = plan_for(args)
    fds = raise_fd_limit(plan.idle_connections * 2 + 4096)
    workdir = Path(
        tempfile.mkdtemp(prefix="mssante-bench-imap-", dir=getattr(args, "workdir", None))
    )
    workdir.chmod(0o755)
    report: dict[str, Any] = {
        "benchmark": "imap",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "fd_limit": fds,
        },
        "settings": {
            "engine": args.engine,
            "quick": bool(getattr(args, "quick", False)),
            "fetch_messages": plan.fetch_messages,
            "search_messages": plan.search_messages,
            "idle_connections": plan.idle_connections,
            "idle_users": len(plan.idle_users),
            "fetch_runs": plan.fetch_runs,
            "search_runs": plan.search_runs,
            "dovecot": "skipped" if args.no_dovecot else dovecot_version(),
            "transport": "implicit TLS (993 role), one client connection per measure",
        },
        "notes": [
            "ratios are mssante/Dovecot: above 1 is better for msgs/s and MB/s, below 1 is "
            "better for ms and KB",
            "memory per idle connection: (server memory with all connections in IDLE - "
            "before) / connections; Dovecot's is summed over its process tree (PSS counts "
            "shared pages once)",
            "Dovecot: maildir, high-performance login mode (service_count = 0), limits raised "
            "for the connection count, IDLE hibernation off (its default)",
            "mssante: messages encrypted at rest (AES-256-GCM), one process; with "
            "--engine postgresql the database server's memory is not counted",
            "bench users' mssante password hashes are cheap argon2id (login cost not measured)",
            "figures, not pass/fail thresholds",
        ],
        "results": {},
    }
    pg = None
    users = [BENCH_USER, *plan.idle_users]
    log = console.print
    try:
        url = ""
        if args.engine == "postgresql":
            pg = PostgresServer().start()
            url = pg.create_database("bench_imap")
        log(f"[bold]IMAP bench[/bold] in {workdir} ({args.engine})")
        mss = MssanteServer(workdir / "mssante", url, users)
        try:
            report["results"]["mssante"] = run_server("mssante", mss, plan, log)
        except BaseException:
            tail = mss.log_file.read_text(errors="replace")[-4000:]
            console.print(f"[red]mssante failed[/red]; end of its log:\n{tail}", markup=False)
            raise
        finally:
            mss.stop()
        if args.no_dovecot:
            report["results"]["dovecot"] = {"skipped": "--no-dovecot"}
        elif dovecot_binary() is None:
            report["results"]["dovecot"] = {"skipped": "dovecot-imapd is not installed"}
        else:
            dov = DovecotServer(workdir / "dovecot", users, plan.idle_connections)
            try:
                report["results"]["dovecot"] = run_server("dovecot", dov, plan, log)
            except RuntimeError as exc:
                report["results"]["dovecot"] = {"skipped": f"dovecot failed: {exc}"}
            finally:
                dov.stop()
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    res = report["results"]
    dov_res = res.get("dovecot")
    res["ratio"] = ratios(res["mssante"], dov_res) if dov_res and "skipped" not in dov_res else None
    res["goals"] = goals(res["mssante"], res["ratio"])
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print_tables(report, console)
    args.imap_output.parent.mkdir(parents=True, exist_ok=True)
    args.imap_output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    console.print(f"written to {args.imap_output}")
    return report


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workdir", type=Path, default=None, help="where temporary data goes")
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_part(args, Console(width=None if sys.stdout.isatty() else 150))
    return 0


if __name__ == "__main__":
    sys.exit(main())
