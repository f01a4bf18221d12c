"""`make bench`, SMTP part: figures, not timed tests.

Measures, with the mssante operators running in their own processes (`mssante serve`)
and the load generator in this one:

* accepted messages/s and MB/s for 2 KB and 200 KB messages over TLS with 10 concurrent
  clients, each keeping its connection open: on the submission listener (STARTTLS + AUTH
  PLAIN, from PER mailboxes) and on the inbound listener (STARTTLS with the operator
  certificate of another operator of the trust space);
* p50/p99 acceptance latency (end of DATA sent -> 250: durable write + answer);
* end-to-end A -> B latency p50/p99: from the 250 at operator A to the message appearing
  in operator B's store (B's database is polled every few milliseconds);
* when Debian's Postfix is installed (and we are root): a private Postfix instance on the
  same machine, driven by Postfix's own `smtp-source` (plaintext, no TLS) and by the same
  TLS load generator, against mssante's inbound listener in the same conditions; ratios
  mssante/Postfix are printed.

Writes bench/results/smtp.json. `--quick` for a short run, `--engine postgresql` to run the
operators on a throwaway PostgreSQL server. Exit status 0 unless mssante itself fails.
`--part` picks what runs: by default (`all`) the documents part, this SMTP part, then the
IMAP part (`imap_bench.py`, mssante vs Dovecot, writes bench/results/imap.json), the
directory part (1,000,000-row import, then 1,000 search and suggest queries, on SQLite and
PostgreSQL: directory_import.json, directory_search.json) and the API part (sends/s with a
100 KB attachment, list p50/p99 over 100,000 messages: api.json, api_postgresql.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, select

from mssante.pki import DistinguishedName
from mssante.storage.schema import messages
from mssante.testing.postgres import PostgresServer
from mssante.tls import client_context

sys.path.insert(0, str(Path(__file__).resolve().parent))

import imap_bench
from operators import ALPHA, BETA, PASSWORD, BenchOperators, free_port
from postfix import (
    HOSTNAME as POSTFIX_HOSTNAME,
)
from postfix import (
    PostfixInstance,
    postfix_available,
    postfix_version,
    smtp_source,
)
from smtpload import (
    LoadResult,
    Route,
    SmtpClient,
    Target,
    percentile,
    run_load,
)

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (2 * 1024, 200 * 1024)
console = Console(width=None if sys.stdout.isatty() else 150)


# -- machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _filesystem(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, fstype = mount, parts[2]
    except OSError:
        pass
    return fstype


def machine_info(workdir: Path) -> dict[str, Any]:
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        mem_gb = round(int(mem) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        mem_gb = None
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "filesystem": _filesystem(workdir),
    }


def postgres_version(pg: PostgresServer) -> str:
    import psycopg

    with psycopg.connect(pg.conninfo()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


# -- CPU accounting --------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def process_cpu(pids: list[int]) -> float:
    """CPU seconds (user+system, own and reaped children) of these processes."""
    total = 0.0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            total += sum(int(x) for x in fields[11:15]) / _TICK
    return total


def tree_pids(root: int) -> list[int]:
    """`root` and its direct children (Postfix's master and its daemons)."""
    out = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == root:
                out.append(int(entry.name))
    return out


class CpuMeter:
    """Server and load-generator CPU seconds between `start()` and `stop()`."""

    def __init__(self, pids_of: Callable[[], list[int]]) -> None:
        self.pids_of = pids_of
        self.server = 0.0
        self.client = 0.0
        self._server0 = 0.0
        self._self0 = os.times()

    def start(self) -> None:
        self._server0 = process_cpu(self.pids_of())
        self._self0 = os.times()

    def stop(self) -> None:
        t0, t1 = self._self0, os.times()
        self.server = process_cpu(self.pids_of()) - self._server0
        self.client = (t1.user - t0.user + t1.system - t0.system) + (
            t1.children_user - t0.children_user + t1.children_system - t0.children_system
        )


def with_cpu(summary: dict[str, Any], cpu: CpuMeter) -> dict[str, Any]:
    count = summary.get("accepted") or 0
    summary["server_cpu_s"] = round(cpu.server, 2)
    summary["client_cpu_s"] = round(cpu.client, 2)
    summary["server_cpu_ms_per_msg"] = round(cpu.server * 1000 / count, 3) if count else None
    elapsed = summary.get("duration_s") or 0
    summary["server_cores_busy"] = round(cpu.server / elapsed, 2) if elapsed else None
    return summary


# -- scenarios -------------------------------------------------------------------------


def submission_routes(bench: BenchOperators, ctx: ssl.SSLContext) -> list[Route]:
    port = bench.running[ALPHA.domain].submission
    boxes = bench.mailboxes
    return [
        Route(
            Target("127.0.0.1", port, ctx, ALPHA.mx_host, login=(sender, PASSWORD)),
            sender,
            boxes.alpha_inboxes[i],
        )
        for i, sender in enumerate(boxes.senders)
    ]


def inbound_routes(
    port: int, ctx: ssl.SSLContext | None, server_hostname: str, bench: BenchOperators
) -> list[Route]:
    boxes = bench.mailboxes
    return [
        Route(Target("127.0.0.1", port, ctx, server_hostname), sender, boxes.beta_inboxes[i])
        for i, sender in enumerate(boxes.senders)
    ]


async def measure(
    label: str, routes: list[Route], size: int, duration: float, pids_of: Any
) -> dict[str, Any]:
    console.print(f"  {label}: {size // 1024} KB, {len(routes)} clients, {duration:g} s …")
    cpu = CpuMeter(pids_of)
    result: LoadResult = await run_load(
        routes, size, duration=duration, on_start=cpu.start, on_stop=cpu.stop
    )
    summary = with_cpu(result.summary(), cpu)
    if result.errors:
        console.print(f"    [yellow]{result.errors} error(s)[/yellow]: {result.error_samples[:2]}")
    return summary


class StorePoller(threading.Thread):
    """Polls B's `messages` table and notes when each new Message-ID shows up."""

    def __init__(self, url: str, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url)
        self.interval = interval
        self.seen: dict[str, tuple[float, datetime]] = {}
        self.stop_event = threading.Event()
        self.polls = 0
        with self.engine.connect() as conn:
            self.last = int(
                conn.execute(select(func.coalesce(func.max(messages.c.id), 0))).scalar_one()
            )

    def run(self) -> None:
        query = select(messages.c.id, messages.c.message_id, messages.c.internal_date)
        with self.engine.connect() as conn:
            while not self.stop_event.is_set():
                rows = conn.execute(query.where(messages.c.id > self.last)).all()
                conn.rollback()
                now = time.perf_counter()
                self.polls += 1
                for row in rows:
                    self.last = max(self.last, int(row.id))
                    if row.message_id:
                        date = row.internal_date
                        if date.tzinfo is None:
                            date = date.replace(tzinfo=UTC)
                        self.seen[row.message_id.strip("<>")] = (now, date)
                time.sleep(self.interval)
        self.engine.dispose()


async def end_to_end(bench: BenchOperators, ctx: ssl.SSLContext, count: int, rate: float) -> dict:
    boxes = bench.mailboxes
    url = bench.config(BETA.domain).database_url
    poller = StorePoller(url)
    poller.start()
    target = Target(
        "127.0.0.1",
        bench.running[ALPHA.domain].submission,
        ctx,
        ALPHA.mx_host,
        login=(boxes.e2e_sender, PASSWORD),
    )
    client = SmtpClient(target)
    await client.connect()
    tag = secrets.token_hex(4)
    accepted: dict[str, tuple[float, datetime]] = {}
    errors: list[str] = []
    console.print(f"  end to end A → B: {count} messages at {rate:g}/s …")
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        mid = f"e2e-{tag}-{i}@{ALPHA.domain}"
        message = (
            f"From: <{boxes.e2e_sender}>\r\nTo: <{boxes.e2e_recipient}>\r\n"
            f"Subject: e2e {i}\r\nDate: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n"
            f"Message-ID: <{mid}>\r\n\r\n" + "Bonjour, message de mesure.\r\n" * 40 + ".\r\n"
        ).encode()
        try:
            await client.send(boxes.e2e_sender, boxes.e2e_recipient, message)
        except Exception as exc:
            errors.append(repr(exc))
            continue
        accepted[mid] = (time.perf_counter(), datetime.now(UTC))
    await client.close()
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline and not all(m in poller.seen for m in accepted):
        await asyncio.sleep(0.05)
    poller.stop_event.set()
    poller.join(10)
    polled, stamped = [], []
    for mid, (t_accept, wall_accept) in accepted.items():
        if mid in poller.seen:
            t_seen, internal_date = poller.seen[mid]
            polled.append(t_seen - t_accept)
            stamped.append((internal_date - wall_accept).total_seconds())
    missing = len(accepted) - len(polled)

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value is None else round(value * 1000, 1)

    return {
        "messages": count,
        "rate_per_s": rate,
        "accepted_at_a": len(accepted),
        "delivered_at_b": len(polled),
        "missing_after_60s": missing,
        "errors": errors[:5],
        "latency_ms": {"p50": ms(polled, 50), "p99": ms(polled, 99), "max": ms(polled, 100)},
        "latency_by_internal_date_ms": {"p50": ms(stamped, 50), "p99": ms(stamped, 99)},
        "poll_interval_ms": poller.interval * 1000,
    }


def count_sink(bench: BenchOperators) -> int:
    engine = create_engine(bench.config(BETA.domain).database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())
    finally:
        engine.dispose()


def source_run(
    label: str,
    port: int,
    size: int,
    sessions: int,
    duration: float,
    pids_of: Any,
    delivered: Any,
    bench: BenchOperators,
) -> dict[str, Any]:
    """smtp-source: a calibration run, then about `duration` seconds of messages."""
    boxes = bench.mailboxes
    common = {"sessions": sessions, "length": size, "sender": boxes.senders[0], "to": boxes.sink}
    before = delivered()
    wall, status, err = smtp_source("127.0.0.1", port, messages=sessions * 10, **common)
    if status != 0:
        return {"error": f"smtp-source exit {status}: {err}"}
    estimate = sessions * 10 / wall
    count = int(min(max(estimate * duration, sessions * 20), 50_000))
    console.print(f"  smtp-source → {label}: {size // 1024} KB, -s {sessions}, -m {count} …")
    cpu = CpuMeter(pids_of)
    cpu.start()
    wall, status, err = smtp_source("127.0.0.1", port, messages=count, **common)
    cpu.stop()
    out: dict[str, Any] = {
        "message_size_bytes": size,
        "sessions": sessions,
        "messages": count,
        "duration_s": round(wall, 3),
        "exit_status": status,
    }
    if status != 0:
        out["error"] = err
        return out
    out["msgs_per_s"] = round(count / wall, 1)
    out["mb_per_s"] = round(count * size / wall / 1e6, 2)
    out["accepted"] = count
    with_cpu(out, cpu)
    expected = before + sessions * 10 + count
    t0 = time.perf_counter()
    while delivered() < expected and time.perf_counter() - t0 < 120:
        time.sleep(0.05)
    out["delivered_check"] = delivered() - before
    out["expected_deliveries"] = sessions * 10 + count
    drain = time.perf_counter() - t0
    out["drain_after_s"] = round(drain, 3)
    out["msgs_per_s_incl_delivery"] = round(count / (wall + drain), 1)
    return out


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or not a.get("msgs_per_s") or not b.get("msgs_per_s"):
        return None
    return round(a["msgs_per_s"] / b["msgs_per_s"], 3)


async def postfix_part(
    bench: BenchOperators,
    args: argparse.Namespace,
    mss_inbound: dict[str, dict[str, Any]],
    mss_pids: Any,
    server_cpus: set[int] | None,
) -> dict[str, Any]:
    reason = postfix_available()
    if reason is not None:
        return {"skipped": reason}
    space = bench.space
    base = Path(tempfile.mkdtemp(prefix="mssante-bench-postfix-", dir=args.tmp_parent))
    base.chmod(0o755)  # Postfix's virtual agent delivers as nobody below it
    cert = space.ca.issue(
        DistinguishedName(
            common_name=POSTFIX_HOSTNAME,
            organizational_unit="0000000000",
            organization="Postfix reference",
            state="Paris (75)",
        ),
        dns_names=(POSTFIX_HOSTNAME, "localhost"),
        ip_addresses=("127.0.0.1",),
    )
    cert_file, key_file = base / "tls.pem", base / "tls.key"
    cert.write(cert_file, key_file, chain=True)
    instance = PostfixInstance(
        base / "pf",
        port=free_port(),
        domain=BETA.domain,
        cert_file=cert_file,
        key_file=key_file,
        ca_file=space.ca_file,
    )
    out: dict[str, Any] = {"version": postfix_version()}
    try:
        instance.start(server_cpus)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)
        return {"skipped": f"postfix could not start: {exc}", **out}
    try:
        master_pid = int((instance.base / "queue" / "pid" / "master.pid").read_text().split()[0])
        pf_pids = lambda: tree_pids(master_pid)  # noqa: E731
        mss_port = bench.running[BETA.domain].inbound
        duration = args.duration
        plain: dict[str, Any] = {"mssante_inbound_plaintext": {}, "postfix": {}, "ratio": {}}
        for size in SIZES:
            key = str(size)
            m = source_run(
                "mssante", mss_port, size, 10, duration, mss_pids, lambda: count_sink(bench), bench
            )
            p = source_run(
                "postfix", instance.port, size, 10, duration, pf_pids, instance.delivered, bench
            )
            plain["mssante_inbound_plaintext"][key] = m
            plain["postfix"][key] = p
            plain["ratio"][key] = ratio(m, p)
        out["smtp_source_plaintext"] = plain
        ctx = client_context(
            ca_file=space.ca_file,
            cert_file=space[ALPHA.domain].config.tls.cert_file,
            key_file=space[ALPHA.domain].config.tls.key_file,
        )
        tls: dict[str, Any] = {"postfix": {}, "ratio_mssante_inbound": {}}
        routes = inbound_routes(instance.port, ctx, "localhost", bench)
        for size in SIZES:
            key = str(size)
            start_count = instance.delivered()
            p = await measure("loadgen → postfix STARTTLS", routes, size, duration, pf_pids)
            t0 = time.perf_counter()
            instance.wait_delivered(start_count + int(p["accepted"]), timeout=120)
            drain = time.perf_counter() - t0
            p["drain_after_s"] = round(drain, 3)
            p["msgs_per_s_incl_delivery"] = round(p["accepted"] / (p["duration_s"] + drain), 1)
            tls["postfix"][key] = p
            tls["ratio_mssante_inbound"][key] = ratio(mss_inbound.get(key), p)
        out["tls_loadgen"] = tls
        out["settings"] = instance.settings()
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)
    return out


# -- output ----------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _cpu_pair(mssante: dict[str, Any], postfix: dict[str, Any]) -> str:
    key = "server_cpu_ms_per_msg"
    return f"{_fmt(mssante.get(key), 2)} / {_fmt(postfix.get(key), 2)}"


def _latency(summary: dict[str, Any]) -> str:
    lat = summary.get("accept_latency_ms") or {}
    return f"{_fmt(lat.get('p50'), 1)}/{_fmt(lat.get('p99'), 1)}"


def print_tables(report: dict[str, Any]) -> None:
    m = report["machine"]
    console.print(
        f"\n[bold]mssante SMTP benchmark[/bold] — engine {report['settings']['engine']}, "
        f"{m['cores']} cores ({m['cpu']}), Python {m['python']}, {m['filesystem']}"
    )
    console.print(f"[dim]{report['notes'][0]}[/dim]")
    load = m["load_average_at_start"][0]
    if load > (m["cores"] or 1) * 0.5:
        console.print(
            f"[yellow]load average {load:.1f} at start on {m['cores']} cores: other "
            "processes were running, figures are pessimistic and noisy[/yellow]"
        )
    table = Table(title="Durable acceptance over TLS (10 clients, persistent connections)")
    for col in ("listener", "size", "msgs/s", "MB/s", "accept p50 ms", "accept p99 ms"):
        table.add_column(col, justify="right" if col != "listener" else "left")
    table.add_column("txn p50 ms", justify="right")
    table.add_column("server CPU ms/msg", justify="right")
    table.add_column("errors", justify="right")
    res = report["results"]
    for label, key in (
        ("submission (STARTTLS+AUTH)", "submission_tls"),
        ("inbound (mutual TLS)", "inbound_mtls"),
    ):
        for size, s in res[key].items():
            table.add_row(
                label,
                f"{int(size) // 1024} KB",
                _fmt(s["msgs_per_s"]),
                _fmt(s["mb_per_s"], 2),
                _fmt(s["accept_latency_ms"]["p50"], 2),
                _fmt(s["accept_latency_ms"]["p99"], 2),
                _fmt(s["transaction_latency_ms"]["p50"], 2),
                _fmt(s["server_cpu_ms_per_msg"], 2),
                str(s["errors"]),
            )
    console.print(table)
    e2e = res["end_to_end"]
    table = Table(title="End to end A → B (submission at A, relay over mutual TLS, B's store)")
    for col in ("messages", "rate/s", "delivered", "p50 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="right")
    table.add_column("p50/p99 ms by internal_date", justify="right")
    lat, by_date = e2e["latency_ms"], e2e["latency_by_internal_date_ms"]
    table.add_row(
        str(e2e["messages"]),
        _fmt(e2e["rate_per_s"]),
        str(e2e["delivered_at_b"]),
        _fmt(lat["p50"]),
        _fmt(lat["p99"]),
        _fmt(lat["max"]),
        f"{_fmt(by_date['p50'])} / {_fmt(by_date['p99'])}",
    )
    console.print(table)
    pf = res["postfix"]
    if "skipped" in pf:
        console.print(f"[yellow]Postfix comparison skipped:[/yellow] {pf['skipped']}")
        return
    table = Table(
        title=f"mssante vs Postfix {pf['version']} (same machine, ratio = mssante/Postfix)"
    )
    for col in ("client", "size", "mssante msgs/s", "Postfix msgs/s", "ratio"):
        table.add_column(col, justify="right" if col != "client" else "left")
    table.add_column("Postfix incl. maildir delivery", justify="right")
    table.add_column("accept p50/p99 ms mssante / Postfix", justify="right")
    table.add_column("CPU ms/msg mssante / Postfix", justify="right")
    plain = pf.get("smtp_source_plaintext", {})
    for size in plain.get("postfix", {}):
        mm, pp = plain["mssante_inbound_plaintext"][size], plain["postfix"][size]
        table.add_row(
            "smtp-source, plaintext, -s 10 -d",
            f"{int(size) // 1024} KB",
            _fmt(mm.get("msgs_per_s")),
            _fmt(pp.get("msgs_per_s")),
            _fmt(plain["ratio"][size], 2),
            _fmt(pp.get("msgs_per_s_incl_delivery")),
            "-",
            _cpu_pair(mm, pp),
        )
    tls = pf.get("tls_loadgen", {})
    for size, pp in tls.get("postfix", {}).items():
        mm = res["inbound_mtls"][size]
        table.add_row(
            "TLS loadgen, mutual TLS, 10 clients",
            f"{int(size) // 1024} KB",
            _fmt(mm.get("msgs_per_s")),
            _fmt(pp.get("msgs_per_s")),
            _fmt(tls["ratio_mssante_inbound"][size], 2),
            _fmt(pp.get("msgs_per_s_incl_delivery")),
            f"{_latency(mm)} / {_latency(pp)}",
            _cpu_pair(mm, pp),
        )
    console.print(table)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short run (about 1 minute)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--duration", type=float, help="seconds per load run (10, quick 3)")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--e2e-messages", type=int, help="end-to-end messages (200, quick 40)")
    parser.add_argument("--e2e-rate", type=float, default=20.0, help="messages/s end to end")
    parser.add_argument("--no-postfix", action="store_true", help="skip the Postfix comparison")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the servers to the last core and the load generator to the others",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "smtp.json")
    parser.add_argument(
        "--part",
        choices=("all", "smtp", "documents", "imap", "directory", "api"),
        default="all",
        help="smtp (this file), documents (documents_bench.py: XDM/CDA), imap "
        "(imap_bench.py: mssante vs Dovecot), directory (directory_bench.py and "
        "directory_search_bench.py: import, search and suggest on both engines), api "
        "(api_bench.py: sends/s and list latency), or all of them",
    )
    imap_bench.add_arguments(parser)
    parser.add_argument("--workdir", type=Path, default=None, help="where temporary data goes")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.e2e_messages is None:
        args.e2e_messages = 40 if args.quick else 200
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    args.tmp_parent = args.workdir
    workdir = Path(tempfile.mkdtemp(prefix="mssante-bench-", dir=args.tmp_parent))
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus: set[int] | None = None
    if args.pin and len(cpus) >= 2:
        server_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))
    report: dict[str, Any] = {
        "benchmark": "smtp",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(workdir),
        "settings": {
            "engine": args.engine,
            "quick": args.quick,
            "clients": args.clients,
            "duration_per_run_s": args.duration,
            "message_sizes_bytes": list(SIZES),
            "e2e_messages": args.e2e_messages,
            "e2e_rate_per_s": args.e2e_rate,
            "pinned": {"servers": sorted(server_cpus), "load_generator": cpus[:-1]}
            if server_cpus
            else None,
            "server": "python -m mssante.cli serve (one process per operator)",
            "load_generator": "bench/smtpload.py (asyncio streams, one process)",
        },
        "notes": [
            f"{os.cpu_count()} cores only: servers and load generator share the machine"
            + (" (servers pinned to one core)" if server_cpus else ""),
            "accept latency: end of DATA (CRLF.CRLF) written -> 250 reply; "
            "txn latency: MAIL FROM written -> 250 after DATA",
            "mssante answers 250 after the fsync of the encrypted blob and the database commit "
            "(local delivery in the same transaction); Postfix after the fsync of its queue "
            "file, then delivers to a maildir asynchronously",
            "end to end: 250 at A -> message row visible in B's database (polled)",
            "figures, not pass/fail thresholds",
        ],
        "results": {},
    }
    pg: PostgresServer | None = None
    pg_pid = 0
    urls = None
    bench: BenchOperators | None = None
    try:
        if args.engine == "postgresql":
            pg = PostgresServer().start()
            urls = [pg.create_database("bench_alpha"), pg.create_database("bench_beta")]
            report["machine"]["postgresql_data_dir_fs"] = _filesystem(pg.data_dir)
            pg_pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
            report["machine"]["postgresql"] = postgres_version(pg)
            if server_cpus:
                for pid in tree_pids(pg_pid):
                    os.sched_setaffinity(pid, server_cpus)
        console.print(f"[bold]setting up[/bold] two operators in {workdir} ({args.engine})")
        bench = BenchOperators.create(workdir / "ops", clients=args.clients, database_urls=urls)
        bench.start(server_cpus)
        space = bench.space
        submit_ctx = client_context(ca_file=space.ca_file)
        alpha_tls = space[ALPHA.domain].config.tls
        inbound_ctx = client_context(
            ca_file=space.ca_file, cert_file=alpha_tls.cert_file, key_file=alpha_tls.key_file
        )
        running = bench

        def pids() -> list[int]:
            # The database server works for the operators: its CPU is theirs.
            return running.pids() + (tree_pids(pg_pid) if pg_pid else [])

        results = report["results"]
        results["submission_tls"] = {}
        results["inbound_mtls"] = {}
        for size in SIZES:
            results["submission_tls"][str(size)] = await measure(
                "submission", submission_routes(bench, submit_ctx), size, args.duration, pids
            )
        beta_inbound = bench.running[BETA.domain].inbound
        for size in SIZES:
            routes = inbound_routes(beta_inbound, inbound_ctx, BETA.mx_host, bench)
            results["inbound_mtls"][str(size)] = await measure(
                "inbound", routes, size, args.duration, pids
            )
        results["end_to_end"] = await end_to_end(
            bench, submit_ctx, args.e2e_messages, args.e2e_rate
        )
        if args.no_postfix:
            results["postfix"] = {"skipped": "--no-postfix"}
        else:
            results["postfix"] = await postfix_part(
                bench, args, results["inbound_mtls"], pids, server_cpus
            )
    finally:
        if bench is not None:
            bench.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.part in ("all", "documents"):
        import documents_bench

        documents_bench.main(["--seconds", "1" if args.quick else "3"])
        if args.part == "documents":
            return 0
    if args.part == "imap":
        imap_bench.run_part(args, console)
        return 0
    if args.part == "directory":
        return directory_part(args)
    if args.part == "api":
        return api_part(args)
    report = asyncio.run(run(args))
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print_tables(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    console.print(f"written to {args.output}")
    if args.part == "all":
        imap_bench.run_part(args, console)
        directory_part(args)
        api_part(args)
    return 0


def directory_part(args: argparse.Namespace) -> int:
    """Import of a synthetic national directory, then search and suggest (issue 5)."""
    import directory_bench
    import directory_search_bench

    rows = "100000" if args.quick else "1000000"
    queries = "200" if args.quick else "1000"
    directory_bench.main(["--rows", rows])
    return directory_search_bench.main(
        ["--entries", rows, "--queries", queries, "--json", str(RESULTS / "directory_search.json")]
    )


def api_part(args: argparse.Namespace) -> int:
    """The integration API: sends/s with a 100 KB attachment, list p99 (issue 7)."""
    import api_bench

    extra = ["--quick"] if args.quick else []
    code = api_bench.main(["--engine", "sqlite", *extra])
    if code:
        return code
    return api_bench.main(
        ["--engine", "postgresql", "--output", str(RESULTS / "api_postgresql.json"), *extra]
    )


if __name__ == "__main__":
    sys.exit(main())
