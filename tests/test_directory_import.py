"""Import of the directory extractions into snapshots (issue 5 items 1 and 6; SPEC §4.3,
R52, R60), on the engine under test: one switch or nothing, diffs, bad files that change
nothing, an import killed midway, and the eligibility of PER BALs.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from conftest import SHARED_DATA
from mssante.cli import main
from mssante.domain.directory import DirectoryEntry
from mssante.domain.errors import RuleViolation
from mssante.domain.mailboxes import MailboxSpec, MailboxStatus, MailboxType
from mssante.formats.directory_files import DirectoryFileRefused
from mssante.formats.directory_sample import rpps_for, sample_lines, write_sample
from mssante.services import traces
from mssante.services.directory import (
    DirectoryImportBusy,
    DirectoryService,
)
from mssante.services.mailboxes import MailboxService
from mssante.storage.database import Database, utcnow
from mssante.storage.schema_directory import (
    directory_entries,
    directory_snapshots,
)

PSC_FILE = (
    SHARED_DATA
    / "annuaire"
    / "extractions"
    / "Extraction_ProSanteConnect_Personne_activite_202112120512.txt"
)
DOMAIN = "alpha.mssante.fr"


@pytest.fixture
def db(tmp_path: Path, database_url: Callable[[], str]) -> Iterator[Database]:
    url = database_url() or f"sqlite:///{tmp_path / 'directory.db'}"
    database = Database(url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def service(db: Database) -> DirectoryService:
    return DirectoryService(db)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


def _sample(path: Path, fmt: str, rows: int, seed: int = 1) -> Path:
    with path.open("wb") as out:
        write_sample(out, fmt, rows, seed)
    return path


def _rows(db: Database, table: object, snapshot_id: int) -> int:
    with db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(table)  # type: ignore[arg-type]
                .where(table.c.snapshot_id == snapshot_id)  # type: ignore[attr-defined]
            ).scalar_one()
        )


def _states(db: Database) -> dict[int, str]:
    with db.read() as conn:
        rows = conn.execute(select(directory_snapshots.c.id, directory_snapshots.c.state))
        return {int(r.id): r.state for r in rows}


# -- import, re-import, diff --------------------------------------------------------------------


def test_import_reimport_and_changes(
    tmp_path: Path, db: Database, service: DirectoryService
) -> None:
    lines = list(sample_lines("mssante", 1500, seed=11))
    first = service.import_files([_write(tmp_path / "a.txt", lines)])
    kr = first.kinds["bal"]
    assert (first.rows, first.rejected, first.added, first.changed, first.removed) == (
        1500, 0, 1500, 0, 0,
    )  # fmt: skip
    assert service.current_snapshot("bal") == kr.snapshot_id == first.snapshot_id
    address = lines[1].split("|")[1]
    entry = service.entry(address.upper())
    assert isinstance(entry, DirectoryEntry) and entry.address == address

    again = service.import_files([_write(tmp_path / "b.txt", lines)])
    assert (again.rows, again.added, again.changed, again.removed) == (1500, 0, 0, 0)
    assert _states(db)[kr.snapshot_id] == "retired"
    assert _rows(db, directory_entries, kr.snapshot_id) == 0  # purged after the switch

    changed = list(lines)
    for i in (5, 6, 7):  # new service / street for 3 BALs
        fields = changed[i].split("|")
        fields[25] = "DES LILAS"
        changed[i] = "|".join(fields)
    del changed[100:105]  # 5 BALs gone
    changed += list(sample_lines("mssante", 1507, seed=11))[-7:]  # 7 new ones
    third = service.import_files([_write(tmp_path / "c.txt", changed)])
    assert (third.added, third.changed, third.removed) == (7, 3, 5)
    assert third.rows == 1502
    assert service.entry(lines[101].split("|")[1]) is None
    with db.read() as conn:
        events = traces.list_events(conn, action="directory.import")
    assert len(events) == 3 and "+7 ~3 -5" in (events[0].detail or "")


def test_duplicate_addresses_keep_the_first_row(tmp_path: Path, service: DirectoryService) -> None:
    lines = list(sample_lines("mssante", 20, seed=2))
    dup = lines[3].split("|")
    dup[9] = "AUTRE NOM"
    lines.append("|".join(dup).replace(dup[1], dup[1].upper()))
    report = service.import_files([_write(tmp_path / "d.txt", lines)])
    assert (report.rows, report.duplicates) == (20, 1)
    entry = service.entry(dup[1])
    assert entry is not None and entry.family_name == lines[3].split("|")[9]


def test_professionals_diff_per_person(tmp_path: Path, service: DirectoryService) -> None:
    lines = list(sample_lines("rass", 600, seed=4))
    first = service.import_files([_write(tmp_path / "p.txt", lines)])
    persons = first.kinds["professionals"].added
    assert first.rows == 600 and 300 < persons < 600
    ids = [line.split("|")[2] for line in lines[1:]]
    gone = ids[0]
    kept = [line for line in lines if line.split("|")[2] != gone]
    moved = kept[10].split("|")
    moved[24] = "CABINET DÉMÉNAGÉ"
    kept[10] = "|".join(moved)
    second = service.import_files([_write(tmp_path / "q.txt", kept)])
    assert (second.added, second.changed, second.removed) == (0, 1, 1)
    assert service.listed(moved[2]) and not service.listed(gone)


def test_the_real_pro_sante_connect_file_imports(service: DirectoryService) -> None:
    report = service.import_files([PSC_FILE])
    assert (report.rows, report.rejected) == (8, 2)
    assert [(name, e.line) for name, e in report.errors] == [
        (PSC_FILE.name, 10),
        (PSC_FILE.name, 11),
    ]
    assert service.listed("810107592585") and service.listed("0012800728")
    assert not service.listed("810107592544")  # only on the rejected rows


def test_zip_and_two_kinds_switch_together(tmp_path: Path, service: DirectoryService) -> None:
    archive = tmp_path / "Extraction_Correspondance_MSSante_202611260000.zip"
    data = io.BytesIO()
    write_sample(data, "mssante", 300, seed=8)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("Extraction_Correspondance_MSSante_202611260000.txt", data.getvalue())
    rass = _sample(tmp_path / "rass.txt", "rass", 200, seed=8)
    report = service.import_files([archive, rass])
    assert set(report.kinds) == {"bal", "professionals"} and report.rows == 500
    snapshots = {s.kind: s for s in service.status() if s.current}
    assert snapshots["bal"].format == "mssante" and snapshots["professionals"].format == "rass"


# -- bad files change nothing ----------------------------------------------------------------


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = list(sample_lines("mssante", 400, seed=3))
    files: dict[str, Path] = {}
    files["separator"] = _write(tmp_path / "sep.txt", [line.replace("|", ";") for line in good])
    cut = io.BytesIO()
    with zipfile.ZipFile(cut, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.txt", ("\n".join(good) + "\n").encode())
    (tmp_path / "cut.zip").write_bytes(cut.getvalue()[: len(cut.getvalue()) // 2])
    files["truncated zip"] = tmp_path / "cut.zip"
    files["columns"] = _write(tmp_path / "cols.txt", [good[0]] + [g + "|x" for g in good[1:]])
    bad_ids = [good[0]] + [g.replace("|8|1", "|8|2", 1) for g in good[1:] if "|8|1" in g]
    files["identifiers"] = _write(tmp_path / "ids.txt", bad_ids)
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as f:
        f.write(good[0].encode() + b"\n" + b"PER|" + b"a" * (50 * 1024 * 1024) + b"\n")
    files["50 MB line"] = huge
    files["empty"] = _write(tmp_path / "empty.txt", [good[0]])
    return files


def test_bad_files_are_refused_and_change_nothing(
    tmp_path: Path, db: Database, service: DirectoryService
) -> None:
    before = service.import_files([_sample(tmp_path / "ok.txt", "mssante", 500, seed=3)])
    current = before.snapshot_id
    assert current is not None
    messages = {}
    for what, path in _bad_files(tmp_path).items():
        with pytest.raises(DirectoryFileRefused) as caught:
            service.import_files([path])
        messages[what] = caught.value.message
        assert service.current_snapshot("bal") == current, what
        assert "loading" not in _states(db).values(), what
        assert _rows(db, directory_entries, current) == 500, what
    assert "ligne 1" in messages["separator"] and "séparateur" in messages["separator"]
    assert "tronquée" in messages["truncated zip"]
    assert "lignes invalides sur" in messages["columns"]
    assert "lignes invalides sur" in messages["identifiers"]
    assert "aucune ligne valide" in messages["50 MB line"]
    assert "aucune ligne valide" in messages["empty"]
    # No row of any refused file stayed behind.
    with db.read() as conn:
        total = conn.execute(select(func.count()).select_from(directory_entries)).scalar_one()
    assert total == 500


def test_strict_stops_at_the_first_bad_row(tmp_path: Path, service: DirectoryService) -> None:
    lines = list(sample_lines("mssante", 50, seed=6))
    lines[20] = lines[20] + "|en trop"
    path = _write(tmp_path / "s.txt", lines)
    with pytest.raises(DirectoryFileRefused, match="ligne 21 : 32 colonnes, 31 attendues"):
        service.import_files([path], strict=True)
    assert service.current_snapshot("bal") is None
    report = service.import_files([path])
    assert (report.rows, report.rejected) == (49, 1)
    assert report.errors[0][1].line == 21


def test_an_import_removing_too_much_needs_force(tmp_path: Path, service: DirectoryService) -> None:
    lines = list(sample_lines("mssante", 400, seed=7))
    service.import_files([_write(tmp_path / "all.txt", lines)])
    half = _write(tmp_path / "half.txt", lines[:200])
    with pytest.raises(DirectoryFileRefused, match="retirerait 201 BAL"):
        service.import_files([half])
    assert service.import_files([half], force=True).removed == 201


# -- a killed import -------------------------------------------------------------------------

_KILLED = """
import sys
from mssante.services.directory import DirectoryService, DirectorySettings
from mssante.storage.database import Database, utcnow
db = Database(sys.argv[1])
DirectoryService(db, DirectorySettings(search_index=False)).import_files([sys.argv[2]])
"""


def test_an_import_killed_midway_leaves_the_previous_snapshot(
    tmp_path: Path, db: Database, service: DirectoryService
) -> None:
    first = service.import_files([_sample(tmp_path / "small.txt", "mssante", 300, seed=5)])
    big = _sample(tmp_path / "big.txt", "mssante", 200_000, seed=6)
    child = subprocess.Popen([sys.executable, "-c", _KILLED, db.url, str(big)])
    try:
        loading = None
        deadline = time.monotonic() + 120
        while loading is None and time.monotonic() < deadline and child.poll() is None:
            with db.read() as conn:
                s = directory_snapshots.c
                row = conn.execute(select(s.id).where(s.state == "loading")).first()
            if row is not None and _rows(db, directory_entries, int(row.id)) > 0:
                loading = int(row.id)
            time.sleep(0.05)
        assert loading is not None, "the child never loaded a batch"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert _states(db)[loading] == "loading"
    assert service.current_snapshot("bal") == first.snapshot_id
    address = list(sample_lines("mssante", 2, seed=5))[1].split("|")[1]
    assert service.entry(address) is not None  # still searchable
    search = _directory_search(db)
    if search is not None:
        assert search(address.split("@")[0].split(".")[0])
    # A second import while the dead one is 'loading': it is cleaned, then this one wins.
    next_file = _sample(tmp_path / "next.txt", "mssante", 100, seed=9)
    again = service.import_files([next_file], force=True)
    assert _states(db)[loading] == "failed"
    assert _rows(db, directory_entries, loading) == 0
    assert service.current_snapshot("bal") == again.snapshot_id


def _directory_search(db: Database) -> Callable[[str], list[object]] | None:
    try:
        from mssante.services.directory_search import DirectorySearch
    except ImportError:
        return None
    searcher = DirectorySearch(db)
    method = getattr(searcher, "search", None)
    if method is None:
        return None

    def run(query: str) -> list[object]:
        result = method(query)
        return list(getattr(result, "hits", result))

    return run


def test_a_live_import_blocks_another(
    tmp_path: Path, db: Database, service: DirectoryService
) -> None:
    with db.write() as conn:  # a 'loading' snapshot of a live process of this host
        conn.execute(
            directory_snapshots.insert().values(
                kind="bal",
                format="mssante",
                source="x",
                state="loading",
                started_at=utcnow(),
                rows=0,
                rejected=0,
                added=0,
                changed=0,
                removed=0,
                duplicates=0,
                host=socket.gethostname(),
                pid=os.getppid(),
            )
        )
    if db.is_sqlite:
        with pytest.raises(DirectoryImportBusy):
            service.import_files([_sample(tmp_path / "x.txt", "mssante", 10)])
    else:  # PostgreSQL: the advisory lock decides; the stale row is cleaned
        service.import_files([_sample(tmp_path / "x.txt", "mssante", 10)])
        assert "loading" not in _states(db).values()


# -- eligibility (R60) -------------------------------------------------------------------------


def _per(mailboxes: MailboxService, local: str, id_nat_ps: str) -> None:
    mailboxes.create_mailbox(MailboxSpec(f"{local}@{DOMAIN}", MailboxType.PER, id_nat_ps=id_nat_ps))


def test_eligibility_and_suspension_of_unlisted_professionals(
    tmp_path: Path, db: Database, service: DirectoryService
) -> None:
    mailboxes = MailboxService(db, (DOMAIN,))
    listed, unlisted, early = ("8" + rpps_for(4, k) for k in (0, 1, 2))
    adeli = "0012800736"
    for id_nat_ps in (listed, unlisted, early, adeli):
        mailboxes.create_professional(id_nat_ps, "Martin", "Camille")
    # No RASS/PSC loaded: any registered RPPS professional may get a PER BAL.
    _per(mailboxes, "early", early)
    with pytest.raises(RuleViolation, match="ADELI"):
        _per(mailboxes, "adeli", adeli)

    lines = list(sample_lines("rass", 40, seed=4))
    people = [line for line in lines[1:] if line.split("|")[2] in (listed, early)]
    rass = _write(tmp_path / "rass.txt", [lines[0], *people])
    report = service.import_files([rass])
    assert report.suspended == []
    _per(mailboxes, "listed", listed)
    with pytest.raises(RuleViolation, match="absent de l'annuaire"):
        _per(mailboxes, "unlisted", unlisted)

    without_early = [line for line in people if line.split("|")[2] != early]
    report = service.import_files(
        [_write(tmp_path / "r2.txt", [lines[0], *without_early])], force=True
    )
    assert report.suspended == [f"early@{DOMAIN}"]
    box = mailboxes.get(f"early@{DOMAIN}")
    assert box.status is MailboxStatus.SUSPENDED  # suspended, never deleted
    assert mailboxes.get(f"listed@{DOMAIN}").status is MailboxStatus.ACTIVE
    with db.read() as conn:
        events = traces.list_events(conn, mailbox=f"early@{DOMAIN}")
    assert {"directory.unlisted", "mailbox.suspend"} <= {e.action for e in events}
    # Idempotent: the next import does not suspend it again.
    assert (
        service.import_files([_write(tmp_path / "r3.txt", [lines[0], *without_early])]).suspended
        == []
    )


# -- command line ------------------------------------------------------------------------------


def _config(tmp_path: Path, url: str) -> Path:
    runner = CliRunner()
    result = runner.invoke(main, ["init", str(tmp_path / "op"), "--domain", DOMAIN])
    assert result.exit_code == 0, result.output
    path = tmp_path / "op" / "mssante.toml"
    text = path.read_text(encoding="utf-8")
    text, count = re.subn(r'(?m)^url = "".*$', f"url = {json.dumps(url)}", text)
    assert count == 1
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_sample_import_status(tmp_path: Path, db: Database) -> None:
    config = _config(tmp_path, db.url)
    runner = CliRunner()
    sample = tmp_path / "s.zip"
    result = runner.invoke(
        main,
        [
            "annuaire",
            "sample",
            "--rows",
            "250",
            "--format",
            "psc",
            "--seed",
            "3",
            "-o",
            str(sample),
        ],
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(sample) as zf:
        assert len(zf.namelist()) == 1
    result = runner.invoke(main, ["--config", str(config), "annuaire", "import", str(sample)])
    assert result.exit_code == 0, result.output
    assert "250" in result.output and "professionnels" in result.output
    result = runner.invoke(main, ["--config", str(config), "annuaire", "status"])
    assert result.exit_code == 0 and "current" in result.output and "psc" in result.output
    bad = _write(tmp_path / "bad.txt", ["a;b;c", "1;2;3"])
    result = runner.invoke(main, ["--config", str(config), "annuaire", "import", str(bad)])
    assert result.exit_code == 1
    assert "ligne 1" in result.output and "séparateur" in result.output


def test_migration_0006_mirrors_the_schema(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from mssante.storage.schema import metadata

    tables = (
        "directory_snapshots",
        "directory_current",
        "directory_entries",
        "directory_professionals",
    )
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    mine = [d for d in diff if any(f"'{t}'" in repr(d) or f"{t}." in repr(d) for t in tables)]
    assert mine == []
