"""`make bench`, directory import part (issue 5 item 1): figures, not timed tests.

For each engine (SQLite, PostgreSQL on a throwaway server): write a synthetic extraction of
N rows (``mssante annuaire sample``'s generator, exact published format), import it into a
fresh database in a child process, then import the same file again (it must report zero
changes). Reported: rows/s of the whole import and of the read+load phase, the time of the
search index and of the purge of the previous snapshot, and the child's peak RSS (``wait4``).
The peak RSS of a 10× smaller file is measured too: memory must not grow with the file.

``run_import_bench(rows, engines)`` is the entry point for ``bench/run.py --part directory``;
``python bench/directory_bench.py --rows 1000000`` runs it alone and writes
bench/results/directory_import.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mssante.formats.directory_sample import write_sample
from mssante.testing.postgres import PostgresServer

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def _child(url: str, files: list[str], search_index: bool, repeat: int) -> None:
    """Runs in the child process: import ``files`` ``repeat`` times, print JSON lines."""
    import resource

    from mssante.services.directory import DirectoryService, DirectorySettings
    from mssante.storage.database import Database

    db = Database(url)
    db.migrate()
    service = DirectoryService(db, DirectorySettings(search_index=search_index))
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_SELF)
        report = service.import_files(files)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(
            json.dumps(
                {
                    "rows": report.rows,
                    "rejected": report.rejected,
                    "duplicates": report.duplicates,
                    "added": report.added,
                    "changed": report.changed,
                    "removed": report.removed,
                    "seconds": round(report.seconds, 2),
                    "cpu_seconds": round(cpu, 2),
                    "timings": {k: round(v, 2) for k, v in report.timings.items()},
                }
            ),
            flush=True,
        )
    db.dispose()


def _run_child(url: str, path: Path, search_index: bool, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", url, str(path), "--repeat", str(repeat)]
    if not search_index:
        cmd.append("--no-search-index")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"import child failed with status {proc.returncode}")
    runs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {"runs": runs, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def _database(engine: str, pg: PostgresServer | None, workdir: Path, name: str) -> str:
    if engine == "sqlite":
        return f"sqlite:///{workdir / (name + '.db')}"
    assert pg is not None
    return pg.create_database(name)


def run_import_bench(
    rows: int,
    engines: list[str],
    *,
    fmt: str = "mssante",
    search_index: bool = True,
    workdir: Path | None = None,
) -> list[dict[str, Any]]:
    """Import ``rows`` synthetic rows on each engine; one result dict per engine."""
    tmp = Path(tempfile.mkdtemp(prefix="mssante-dirbench-", dir=workdir))
    pg: PostgresServer | None = None
    results: list[dict[str, Any]] = []
    try:
        big, small = tmp / f"{fmt}_{rows}.txt", tmp / f"{fmt}_{rows // 10}.txt"
        started = time.monotonic()
        for path, count in ((big, rows), (small, rows // 10)):
            with path.open("wb") as out:
                write_sample(out, fmt, count, seed=1)
        generated = time.monotonic() - started
        if "postgresql" in engines:
            pg = PostgresServer().start()
        for engine in engines:
            console.print(f"[bold]directory import[/bold] {rows} rows {fmt} on {engine}")
            main = _run_child(_database(engine, pg, tmp, "dir_big"), big, search_index, 2)
            tenth = _run_child(_database(engine, pg, tmp, "dir_small"), small, search_index, 1)
            first, second = main["runs"]
            results.append(
                {
                    "engine": engine,
                    "format": fmt,
                    "rows": rows,
                    "file_mb": round(big.stat().st_size / 1e6, 1),
                    "generate_seconds": round(generated, 1),
                    "search_index": search_index,
                    "first_import": first,
                    "rows_per_s": round(rows / first["seconds"]),
                    "load_rows_per_s": round(rows / first["timings"]["read"]),
                    "second_import": second,
                    "second_import_changes": second["added"]
                    + second["changed"]
                    + second["removed"],
                    "peak_rss_mb": main["peak_rss_mb"],
                    "peak_rss_mb_tenth_file": tenth["peak_rss_mb"],
                }
            )
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    table = Table(title="Directory import (synthetic extraction)", title_justify="left")
    for column in (
        "engine", "rows", "MB", "import s", "rows/s", "load rows/s", "index s",
        "2nd import s", "2nd changes", "peak RSS MB", "RSS 1/10 file",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for r in results:
        first, second = r["first_import"], r["second_import"]
        table.add_row(
            r["engine"], str(r["rows"]), str(r["file_mb"]), str(first["seconds"]),
            f"{r['rows_per_s']:,}", f"{r['load_rows_per_s']:,}",
            str(first["timings"].get("index", 0)), str(second["seconds"]),
            str(r["second_import_changes"]), str(r["peak_rss_mb"]),
            str(r["peak_rss_mb_tenth_file"]),
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engine", action="append", choices=("sqlite", "postgresql"))
    parser.add_argument("--format", default="mssante", choices=("mssante", "rass", "psc"))
    parser.add_argument("--no-search-index", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS / "directory_import.json")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], [args.child[1]], not args.no_search_index, args.repeat)
        return 0
    engines = args.engine or ["sqlite", "postgresql"]
    results = run_import_bench(
        args.rows,
        engines,
        fmt=args.format,
        search_index=not args.no_search_index,
        workdir=args.workdir,
    )
    print_table(results)
    report = {
        "benchmark": "directory_import",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    console.print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
