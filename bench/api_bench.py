"""`make bench`, API part (issue 7): figures, not timed tests.

Measures, with one mssante operator running in its own process (`mssante serve`) and the
load generator (the SDK, `mssante.client.AsyncClient`) in this one:

* sends/s through the HTTP API with a 100 KB attachment: N concurrent clients of an APP BAL
  (client credentials), each sending one message after the other for a fixed duration, to
  a local PER BAL; once as multipart (the attachment streamed from a file) and once as JSON
  (the attachment base64 inside the body). The answer is the 202 after the durable write;
* list latency p50/p99 (``GET …/messages?limit=50``) over a BAL holding 100,000 messages:
  the first page, a page reached by cursor deep in the list, and a filtered listing
  (``unread=true``). The BAL is filled before the server starts by direct inserts through
  the mail store (one blob per distinct message, rows in large transactions), not by HTTP.

`run_api_bench(...)` returns a list of result dicts (for `bench/run.py --part api`);
`python bench/api_bench.py [--quick] [--engine postgresql]` runs it alone and writes
bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, update

from mssante.client import AsyncClient, Client, File
from mssante.config import load_config
from mssante.domain.identifiers import luhn_check_digit
from mssante.domain.mailboxes import MailboxType
from mssante.runtime import Services
from mssante.storage.schema import folders, messages
from mssante.storage.upsert import record_blob
from mssante.testing.clients import make_message, seed_professional_mailbox, seed_structure_mailbox
from mssante.testing.postgres import PostgresServer
from mssante.testing.trust_space import LocalTrustSpace, OperatorSpec, write_operator_config

RESULTS = Path(__file__).resolve().parent / "results"
ALPHA = OperatorSpec("alpha.mssante.fr", "Operateur Alpha", "1750000028", "Paris (75)")
SENDER = "dui@alpha.mssante.fr"  # APP BAL that sends
ARCHIVE = "archive@alpha.mssante.fr"  # APP BAL holding the big mailbox
RECIPIENT = "inbox@alpha.mssante.fr"  # PER BAL receiving the sends
PASSWORD = "bench-password-not-a-secret"
ATTACHMENT_BYTES = 100 * 1024
PAGE = 50
DISTINCT_BLOBS = 2_500  # more than the summary cache of the server (2,048 views)
FILL_BATCH = 5_000


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rpps(n: int) -> str:
    payload = f"1{n:09d}"
    return payload + luhn_check_digit(payload)


class ApiOperator:
    """One operator (alpha) with fixed ports, seeded, then run as `mssante serve`."""

    def __init__(self, root: Path, database_url: str = "") -> None:
        self.root = root
        self.space = LocalTrustSpace.create(root / "space", [ALPHA], database_urls=[database_url])
        local = self.space.operators[0]
        cfg = local.config
        self.http_port = _free_port()
        write_operator_config(
            local.config_file,
            data_dir=cfg.data_dir,
            domain=ALPHA.domain,
            hostname=ALPHA.mx_host,
            cert_file=cfg.tls.cert_file,
            key_file=cfg.tls.key_file,
            trust_anchors=cfg.tls.trust_anchors,
            trust_list_file=cfg.trust_list.file,
            database_url=cfg.database.url,
            submission_port=_free_port(),
            inbound_port=_free_port(),
            http_port=self.http_port,
            imap_port=_free_port(),
            imaps_port=_free_port(),
            name=ALPHA.organization,
        )
        local.config = load_config(local.config_file)
        self.config_file = local.config_file
        self.url = f"https://127.0.0.1:{self.http_port}"
        self.ca_file = self.space.ca_file
        self.process: subprocess.Popen[bytes] | None = None
        self.clients: dict[str, tuple[str, str]] = {}

    def services(self) -> Services:
        services = Services(self.space.operators[0].config)
        services.migrate()
        return services

    def seed(self) -> None:
        services = self.services()
        try:
            services.load_configured_trust_list()
            boxes = services.mailboxes
            seed_professional_mailbox(boxes, RECIPIENT, _rpps(1), PASSWORD, family_name="Bench")
            for i, app in enumerate((SENDER, ARCHIVE)):
                seed_structure_mailbox(
                    boxes, app, "1750000010", "CH Alpha", PASSWORD,
                    type=MailboxType.APP, create_structure=i == 0,
                )  # fmt: skip
                self.clients[app] = services.machine_credentials.create_client(app, actor="bench")
        finally:
            services.close()

    def fill(self, address: str, count: int) -> dict[str, Any]:
        """`count` messages in the INBOX of `address`: DISTINCT_BLOBS blobs, rows in batches.

        The messages are spread over the last 100 days (internal dates), a third of them
        unread, like a long-lived BAL of a care software. Blobs go through the blob store
        (encrypted, fsynced: in parallel threads); the rows are inserted in bulk, UIDs and
        MODSEQs taken from the folder's counters as the mail store does (IMAP, RFC 9051
        §2.3.1.1; RFC 7162), before the server starts (so nobody waits for a change event).
        """
        services = self.services()
        started = time.perf_counter()
        try:
            principal = services.mailboxes.authenticate(address, PASSWORD)
            assert principal is not None
            folder = services.mailstore.resolve(principal, "INBOX")
            bodies = [
                make_message(
                    f"labo{i % 97}@beta.mssante.fr",
                    [address],
                    subject=f"Résultat d'analyse n° {i}",
                    body=f"Bonjour,\n\nRésultat {i} (message de banc d'essai).\n" * 8,
                )
                for i in range(min(DISTINCT_BLOBS, count))
            ]
            with ThreadPoolExecutor(16) as pool:
                refs = list(pool.map(services.blobs.put, bodies))
            with services.db.write() as conn:
                for ref in refs:
                    record_blob(conn, ref.digest, ref.size, ref.key_id)
            now = datetime.now(UTC)
            done = 0
            while done < count:
                batch = min(FILL_BATCH, count - done)
                with services.db.write() as conn:
                    counters = conn.execute(
                        select(folders.c.uidnext, folders.c.highestmodseq).where(
                            folders.c.id == folder.id
                        )
                    ).one()
                    uid, modseq = int(counters.uidnext), int(counters.highestmodseq)
                    rows = []
                    for k, j in enumerate(range(done, done + batch)):
                        ref = refs[j % len(refs)]
                        rows.append(
                            {
                                "folder_id": folder.id,
                                "uid": uid + k,
                                "modseq": modseq + k + 1,
                                "envelope_id": None,
                                "blob_digest": ref.digest,
                                "size": ref.size,
                                "message_id": None,
                                "internal_date": now - timedelta(seconds=(count - j) * 86.4),
                                "flags": "" if j % 3 == 0 else "\\Seen",
                            }
                        )
                    conn.execute(insert(messages), rows)
                    conn.execute(
                        update(folders)
                        .where(folders.c.id == folder.id)
                        .values(uidnext=uid + batch, highestmodseq=modseq + batch)
                    )
                done += batch
        finally:
            services.close()
        seconds = time.perf_counter() - started
        return {"messages": count, "fill_s": round(seconds, 1)}

    def start(self, timeout: float = 60.0) -> None:
        log = (self.root / "alpha.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mssante.cli", "--config", str(self.config_file), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                httpx.get(self.url + "/api/v1/me", verify=str(self.ca_file), timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        tail = (self.root / "alpha.log").read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"the operator did not start:\n{tail}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def client(self, address: str, cls: type[Any] = Client, **kwargs: Any) -> Any:
        client_id, secret = self.clients[address]
        return cls(
            self.url, client_id=client_id, client_secret=secret, verify=self.ca_file, **kwargs
        )


async def _send_load(
    op: ApiOperator, attachment: Path, clients: int, duration: float, multipart: bool
) -> dict[str, Any]:
    payload = File(attachment) if multipart else File(attachment.read_bytes(), attachment.name)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker(api: AsyncClient) -> None:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                await api.send(
                    SENDER, [RECIPIENT], "Banc d'essai", "Bonjour", attachments=[payload]
                )
            except Exception as exc:
                errors.append(type(exc).__name__ + ": " + str(exc)[:200])
                continue
            latencies.append(time.perf_counter() - t0)

    apis = [op.client(SENDER, AsyncClient, timeout=60.0) for _ in range(clients)]
    for api in apis:  # each client's token first (an argon2id check each), off the clock
        await api.me()
    began = time.perf_counter()
    end = began + duration
    await asyncio.gather(*(worker(api) for api in apis))
    elapsed = time.perf_counter() - began
    for api in apis:
        await api.close()
    return {
        "name": f"api_send_100KB_{'multipart' if multipart else 'json'}",
        "clients": clients,
        "duration_s": round(elapsed, 2),
        "sends": len(latencies),
        "sends_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "errors": len(errors),
        **({"first_error": errors[0]} if errors else {}),
    }


def _list_latency(op: ApiOperator, samples: int, total: int) -> list[dict[str, Any]]:
    results = []
    with op.client(ARCHIVE) as api:
        api.me()
        # The cursor of a page deep in the list (about the 200th page when full).
        cursor = None
        depth = min(200, max(1, total // PAGE - 1))
        for _ in range(depth):
            cursor = api.list_page(ARCHIVE, limit=PAGE, cursor=cursor).next_cursor
        cases: list[tuple[str, dict[str, Any]]] = [
            ("first_page", {}),
            (f"page_{depth + 1}_by_cursor", {"cursor": cursor}),
            ("unread_first_page", {"unread": True}),
        ]
        for name, params in cases:
            timings = []
            for _ in range(samples):
                t0 = time.perf_counter()
                page = api.list_page(ARCHIVE, limit=PAGE, **params)
                timings.append(time.perf_counter() - t0)
                assert len(page.items) == PAGE
            results.append(
                {
                    "name": f"api_list_{name}",
                    "messages_in_bal": total,
                    "page_size": PAGE,
                    "samples": samples,
                    "latency_ms_p50": round(percentile(timings, 0.5) * 1000, 1),
                    "latency_ms_p99": round(percentile(timings, 0.99) * 1000, 1),
                    "latency_ms_mean": round(statistics.fmean(timings) * 1000, 1),
                }
            )
    return results


def run_api_bench(
    *,
    engine: str = "sqlite",
    clients: int = 8,
    duration: float = 10.0,
    messages: int = 100_000,
    samples: int = 200,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the API benchmark; one dict per figure (engine and settings included)."""
    root = Path(tempfile.mkdtemp(prefix="mssante-api-bench-", dir=workdir))
    pg: PostgresServer | None = None
    op: ApiOperator | None = None
    try:
        url = ""
        if engine == "postgresql":
            pg = PostgresServer().start()
            url = pg.create_database("bench_api")
        op = ApiOperator(root, url)
        op.seed()
        fill = op.fill(ARCHIVE, messages)
        op.start()
        attachment = root / "compte-rendu.pdf"
        attachment.write_bytes(os.urandom(ATTACHMENT_BYTES))
        results = []
        for multipart in (True, False):
            results.append(asyncio.run(_send_load(op, attachment, clients, duration, multipart)))
        listing = _list_latency(op, samples, messages)
        for item in listing:
            item["fill_s"] = fill["fill_s"]
        results += listing
        for item in results:
            item["engine"] = engine
        return results
    finally:
        if op is not None:
            op.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (10,000 messages, 3 s)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS / "api.json")
    args = parser.parse_args(argv)
    results = run_api_bench(
        engine=args.engine,
        clients=args.clients,
        duration=args.duration or (3.0 if args.quick else 10.0),
        messages=args.messages or (10_000 if args.quick else 100_000),
        samples=args.samples or (50 if args.quick else 200),
    )
    report = {
        "benchmark": "api",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "notes": [
            "one operator process (mssante serve); the SDK load generator in another",
            "send: 202 after the durable write (local delivery to a PER BAL)",
            "figures, not pass/fail thresholds",
        ],
        "results": results,
    }
    for item in results:
        print(json.dumps(item, ensure_ascii=False))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
