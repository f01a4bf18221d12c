"""`make bench`, directory part: search and suggest on a 1,000,000-entry directory.

The directory is the synthetic ``Extraction_Correspondance_MSSante`` of
``formats/directory_sample.py`` (about 85 % PER, 15 % ORG; 1 % of the rows are marked
red-listed here to exercise R49), loaded into a fresh database of each engine (SQLite file,
throwaway PostgreSQL server) and indexed with ``index_snapshot``. Then 1,000 mixed,
realistic queries (full names with accents, partial names without accents, one-typo names,
profession + city, postcodes, structure names, BAL addresses, family names alone) run
through ``DirectorySearch.search`` and ``DirectorySearch.suggest``, one at a time, in this
process; p50/p99 latencies are reported per engine (goals: suggest p99 < 30 ms, search
p99 < 50 ms).

    python bench/directory_search_bench.py [--entries 1000000] [--queries 1000]
        [--engine sqlite --engine postgresql] [--json FILE]

``run_search_bench(entries, queries, engines)`` is what ``bench/run.py --part directory``
calls.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from mssante.domain.directory import DirectoryEntry
from mssante.formats.directory_files import MSSANTE
from mssante.formats.directory_sample import ascii_fold, sample_lines
from mssante.services.directory_search import DirectorySearch, index_snapshot
from mssante.storage.database import Database
from mssante.storage.schema_directory import (
    directory_current,
    directory_entries,
    directory_snapshots,
)

ENTRY_FIELDS = tuple(DirectoryEntry.__dataclass_fields__)[:31]
INSERT_BATCH = 10_000
QUERY_POOL = 5_000  # entries kept in memory to draw queries from
SEED = 1
WARMUP = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _entry(line: str, i: int) -> DirectoryEntry:
    values = dict(zip(ENTRY_FIELDS, line.split("|"), strict=False))
    values["address"] = values["address"].lower()
    return DirectoryEntry(**values, list_rouge=i % 100 == 37)  # type: ignore[arg-type]


def load_directory(db: Database, entries: int) -> tuple[dict[str, float], list[DirectoryEntry]]:
    """Write ``entries`` synthetic BALs as the current snapshot, build the index."""
    now = datetime.now(UTC)
    step = max(1, entries // QUERY_POOL)
    pool: list[DirectoryEntry] = []
    started = time.perf_counter()
    with db.write() as conn:
        snapshot = conn.execute(
            insert(directory_snapshots).values(
                kind="bal", format="mssante", source="bench", state="loading", started_at=now
            )
        ).inserted_primary_key[0]
        lines = sample_lines(MSSANTE, entries, SEED)
        next(lines)  # header
        batch: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            entry = _entry(line, i)
            if i % step == 0:
                pool.append(entry)
            batch.append({**asdict(entry), "snapshot_id": snapshot, "row_hash": "0" * 32})
            if len(batch) >= INSERT_BATCH:
                conn.execute(insert(directory_entries), batch)
                batch.clear()
        if batch:
            conn.execute(insert(directory_entries), batch)
        loaded = time.perf_counter()
        index_snapshot(conn, snapshot)
        indexed = time.perf_counter()
        conn.execute(
            insert(directory_current).values(kind="bal", snapshot_id=snapshot, switched_at=now)
        )
    return {"load_s": round(loaded - started, 1), "index_s": round(indexed - loaded, 1)}, pool


def _pool(entries: int) -> list[DirectoryEntry]:
    step = max(1, entries // QUERY_POOL)
    lines = sample_lines(MSSANTE, entries, SEED)
    next(lines)
    return [_entry(line, i) for i, line in enumerate(lines) if i % step == 0]


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + letter + word[i + 1 :]
    if kind == 2:
        return word[:i] + letter + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def make_queries(pool: list[DirectoryEntry], count: int) -> list[tuple[str, str]]:
    """``count`` (kind, query) pairs drawn deterministically from the directory."""
    rng = random.Random(SEED)
    people = [e for e in pool if e.bal_type == "PER" and not e.list_rouge]
    structures = [e for e in pool if e.bal_type != "PER"]
    queries: list[tuple[str, str]] = []
    kinds = ("full_name", "partial", "typo", "profession_city", "postcode", "structure",
             "address", "family_name")  # fmt: skip
    weights = (20, 20, 15, 12, 8, 10, 5, 10)
    for kind in rng.choices(kinds, weights, k=count):
        p = rng.choice(people)
        family = ascii_fold(p.family_name).lower()
        if kind == "full_name":
            q = f"{p.given_name} {p.family_name}"
        elif kind == "partial":
            q = f"{ascii_fold(p.given_name).lower()[:3]} {family[: rng.randint(3, 5)]}"
        elif kind == "typo":
            q = _typo(family, rng)
        elif kind == "profession_city":
            q = f"{p.profession_label} {p.city.title()}"
        elif kind == "postcode":
            q = p.postcode
        elif kind == "structure":
            s = rng.choice(structures)
            words = ascii_fold(s.org_name).lower().split()
            q = " ".join(words[:1] + words[-1:])  # "centre nantes", "ehpad lyon"
        elif kind == "address":
            q = p.address.split("@")[0]
        else:
            q = p.family_name
        queries.append((kind, q))
    return queries


def _time(run: Any, queries: list[tuple[str, str]]) -> dict[str, Any]:
    for _, q in queries[:WARMUP]:
        run(q)
    times: list[float] = []
    by_kind: dict[str, list[float]] = {}
    found = 0
    for kind, q in queries:
        start = time.perf_counter()
        hits = run(q)
        elapsed = (time.perf_counter() - start) * 1000
        times.append(elapsed)
        by_kind.setdefault(kind, []).append(elapsed)
        found += bool(hits)
    return {
        "p50_ms": round(percentile(times, 50), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "max_ms": round(max(times), 2),
        "with_results": round(found / len(queries), 3),
        "p99_ms_by_kind": {k: round(percentile(v, 99), 2) for k, v in sorted(by_kind.items())},
    }


def bench_engine(url: str, engine: str, entries: int, queries: int) -> dict[str, Any]:
    db = Database(url)
    try:
        db.migrate()
        with db.read() as conn:
            loaded = conn.execute(directory_current.select()).first() is not None
        if loaded:  # --sqlite-file of an earlier run: reuse it
            timings: dict[str, Any] = {"load_s": None, "index_s": None}
            pool = _pool(entries)
        else:
            timings, pool = load_directory(db, entries)
        plan = make_queries(pool, queries)
        search = DirectorySearch(db)
        result: dict[str, Any] = {"engine": engine, "entries": entries, "queries": queries}
        result.update(timings)
        # A running operator always has connections open; without one, each SQLite read
        # (NullPool) would close the last connection and pay a WAL checkpoint.
        with db.engine.connect():
            result["search"] = _time(lambda q: search.search(q, limit=20), plan)
            result["suggest"] = _time(lambda q: search.suggest(q, limit=10), plan)
        return result
    finally:
        db.dispose()


def run_search_bench(
    entries: int, queries: int, engines: list[str], *, sqlite_file: Path | None = None
) -> list[dict[str, Any]]:
    """One result per engine: load/index times, p50/p99 of search and suggest (ms)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mssante-dirbench-") as tmp:
        for engine in engines:
            if engine == "sqlite":
                url = f"sqlite:///{sqlite_file or Path(tmp) / 'directory.db'}"
                results.append(bench_engine(url, engine, entries, queries))
            elif engine == "postgresql":
                from mssante.testing.postgres import PostgresServer

                with PostgresServer() as pg:
                    url = pg.create_database("dirbench")
                    results.append(bench_engine(url, engine, entries, queries))
            else:
                raise ValueError(f"unknown engine {engine!r}")
    return results


def print_results(results: list[dict[str, Any]]) -> None:
    print(f"{'engine':<11} {'entries':>9} {'load s':>7} {'index s':>8} "
          f"{'search p50':>11} {'p99':>7} {'suggest p50':>12} {'p99':>7}")  # fmt: skip
    for r in results:
        s, g = r["search"], r["suggest"]
        print(
            f"{r['engine']:<11} {r['entries']:>9} {r['load_s']!s:>7} {r['index_s']!s:>8} "
            f"{s['p50_ms']:>9} ms {s['p99_ms']:>4} ms {g['p50_ms']:>10} ms {g['p99_ms']:>4} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--engine", action="append", choices=("sqlite", "postgresql"))
    parser.add_argument("--json", type=Path, help="also write the results there")
    parser.add_argument(
        "--sqlite-file", type=Path, help="keep the SQLite directory there (reused when loaded)"
    )
    args = parser.parse_args(argv)
    engines = args.engine or ["sqlite", "postgresql"]
    results = run_search_bench(args.entries, args.queries, engines, sqlite_file=args.sqlite_file)
    print_results(results)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
