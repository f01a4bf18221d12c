"""The copy of the national directory: import of the extractions, snapshots, eligibility.

An import (issue 5 item 1; SPEC §4.3, R52) streams each file into a NEW snapshot in state
``loading``, in batches committed one by one (``executemany`` on SQLite, ``COPY`` on
PostgreSQL), so memory does not grow with the file. When every file is read and accepted,
the search index is built, the changes are counted in SQL against the snapshot in force,
and one short transaction switches ``directory_current``: readers see the old snapshot or
the new one, never a mix. An import killed midway leaves a ``loading`` snapshot that
readers ignore and the next import deletes. A file that is not an extraction is refused
before anything is written.

BAL rows are deduplicated by address (R52: the first row wins). Professionals are compared
per person (idNat_PS): added, removed, or changed when their set of situations changed.

Eligibility (R60, issue 5 item 6): :func:`listing` says whether an idNat_PS is listed; after
a ``professionals`` snapshot is switched in, every active PER BAL whose professional is no
longer listed is suspended (never deleted), with a ``directory.unlisted`` trace event.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, insert, select, text, update

from mssante.domain.directory import DirectoryEntry
from mssante.domain.errors import DomainError
from mssante.formats.directory_files import (
    DirectoryFileRefused,
    ExtractionReader,
    RowError,
)
from mssante.services import directory_load as load
from mssante.services import traces
from mssante.services.directory_eligibility import current_snapshots, listing, suspend_unlisted
from mssante.services.directory_report import (
    DirectoryImportBusy,
    DirectorySettings,
    ImportProgress,
    ImportReport,
    KindReport,
    SnapshotInfo,
)
from mssante.storage.database import Database, as_utc, utcnow

if TYPE_CHECKING:
    from mssante.services.mailboxes import MailboxService
from mssante.storage.schema_directory import (
    directory_current,
    directory_entries,
    directory_snapshots,
)

__all__ = [
    "DirectoryImportBusy",
    "DirectoryService",
    "DirectorySettings",
    "ImportProgress",
    "ImportReport",
    "KindReport",
    "SnapshotInfo",
    "current_snapshots",
    "listing",
]

log = logging.getLogger("mssante.directory")

KINDS = ("bal", "professionals")
_ENTRY_COLUMNS = tuple(DirectoryEntry.__dataclass_fields__)


@dataclass
class _Source:
    path: Path
    reader: ExtractionReader
    size: int


def _search_hook(name: str) -> Callable[[Connection, int], None] | None:
    try:
        from mssante.services import directory_search
    except ImportError:
        return None
    hook = getattr(directory_search, name, None)
    return hook if callable(hook) else None


class DirectoryService:
    def __init__(
        self,
        db: Database,
        settings: DirectorySettings | None = None,
        *,
        mailboxes: MailboxService | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or DirectorySettings()
        self.mailboxes = mailboxes  # the operator's, for its hooks (R60 suspensions)

    # -- queries --------------------------------------------------------------------------

    def current_snapshot(self, kind: str) -> int | None:
        with self.db.read() as conn:
            return current_snapshots(conn).get(kind)

    def listed(self, id_nat_ps: str) -> bool:
        with self.db.read() as conn:
            return bool(listing(conn, id_nat_ps))

    def entry(self, address: str) -> DirectoryEntry | None:
        """The BAL ``address`` in the snapshot in force, or None."""
        with self.db.read() as conn:
            snap = current_snapshots(conn).get("bal")
            if snap is None:
                return None
            e = directory_entries.c
            row = conn.execute(
                select(*(e[name] for name in _ENTRY_COLUMNS)).where(
                    e.snapshot_id == snap, e.address == address.strip().lower()
                )
            ).first()
        return None if row is None else DirectoryEntry(**row._asdict())

    def status(self, *, history: int = 10) -> list[SnapshotInfo]:
        """The snapshots in force, those loading, and the last ones (newest first)."""
        s = directory_snapshots.c
        with self.db.read() as conn:
            current = set(current_snapshots(conn).values())
            rows = conn.execute(select(directory_snapshots).order_by(s.id.desc()).limit(history))
            out = [
                SnapshotInfo(
                    id=r.id,
                    kind=r.kind,
                    format=r.format,
                    source=r.source,
                    state=r.state,
                    started_at=as_utc(r.started_at),
                    finished_at=as_utc(r.finished_at),
                    rows=r.rows,
                    rejected=r.rejected,
                    added=r.added,
                    changed=r.changed,
                    removed=r.removed,
                    duplicates=r.duplicates,
                    current=r.id in current,
                    message=r.message,
                )
                for r in rows
            ]
        return out

    # -- import ---------------------------------------------------------------------------

    def import_files(
        self,
        paths: Iterable[str | Path],
        *,
        strict: bool = False,
        force: bool = False,
        progress: Callable[[ImportProgress], None] | None = None,
        max_errors: int = 100,
        actor: str = "cli",
    ) -> ImportReport:
        """Import extraction files into new snapshots and switch to them (all or nothing).

        Raises DirectoryFileRefused (nothing changed) for a file that is not an extraction, a
        broken zip, a bad row with ``strict``, too many bad rows, no good row, or (unless
        ``force``) a snapshot that would remove more than ``import_max_removed_ratio`` of
        the rows in force.
        """
        started = time.monotonic()
        files = [Path(p) for p in paths]
        if not files:
            raise DirectoryFileRefused("aucun fichier à importer")
        report = ImportReport(files=[str(p) for p in files])
        with ExitStack() as stack:
            sources = [self._open(p, stack) for p in files]  # refuses before any write
            by_kind: dict[str, list[_Source]] = {}
            for src in sources:
                by_kind.setdefault(src.reader.kind, []).append(src)
            stack.enter_context(self._import_lock())
            self._recover()
            snaps = self._create_snapshots(by_kind)
            try:
                for kind, group in by_kind.items():
                    formats = sorted({s.reader.format.name for s in group})
                    kr = report.kinds[kind] = KindReport(kind, snaps[kind], formats)
                    for src in group:
                        self._read(
                            src, kr, report, strict=strict, max_errors=max_errors, progress=progress
                        )
                    self._check_rejected(kr, group)
                    load.analyze(self.db, kind)
                report.timings["read"] = time.monotonic() - started
                self._index(snaps, progress)
                report.timings["index"] = time.monotonic() - started - report.timings["read"]
                if progress is not None:
                    progress(ImportProgress("", "switch"))
                self._diff_and_check(report, force=force)
                self._switch(report, actor)
            except BaseException as exc:
                reason = exc.message if isinstance(exc, DomainError) else type(exc).__name__
                self._abandon(list(snaps.values()), f"import abandonné : {reason}")
                raise
        mark = time.monotonic()
        self._purge_old()
        report.timings["purge"] = time.monotonic() - mark
        # R60: a professional may also have left through the BAL extraction.
        report.suspended = self.suspend_unlisted(actor=actor)
        report.seconds = time.monotonic() - started
        if progress is not None:
            progress(ImportProgress("", "done", rows=report.rows, rejected=report.rejected))
        return report

    def _open(self, path: Path, stack: ExitStack) -> _Source:
        try:
            handle = stack.enter_context(path.open("rb"))
            size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise DirectoryFileRefused(f"{path.name} : {exc.strerror}") from None
        try:
            reader = ExtractionReader(handle, path.name, max_line=self.settings.import_max_line)
        except DirectoryFileRefused as exc:
            raise DirectoryFileRefused(f"{path.name} : {exc.message}", line=exc.line) from None
        stack.callback(reader.close)
        return _Source(path, reader, size)

    @contextmanager
    def _import_lock(self) -> Iterator[None]:
        """One import at a time: an advisory lock on PostgreSQL (any host); on SQLite, the
        live process of a 'loading' snapshot (see ``_create_snapshots``)."""
        if self.db.is_sqlite:
            yield
            return
        with self.db.engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": load.LOCK_KEY})
            locked = bool(got.scalar())
            conn.commit()
            if not locked:
                raise DirectoryImportBusy("un import de l'annuaire est déjà en cours")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": load.LOCK_KEY})
                conn.commit()

    def _recover(self) -> None:
        """Mark the 'loading' snapshots of dead imports failed, then purge their rows."""
        s = directory_snapshots.c
        with self.db.read() as conn:
            stale = conn.execute(select(s.id, s.host, s.pid).where(s.state == "loading")).all()
        host = socket.gethostname()[:255]
        dead = []
        for row in stale:
            if self.db.is_sqlite and row.host == host and row.pid and load.alive(row.pid):
                raise DirectoryImportBusy(
                    f"un import de l'annuaire est déjà en cours (processus {row.pid})"
                )
            dead.append(int(row.id))
        if dead:
            self._abandon(dead, "import interrompu (processus arrêté)")
        self._purge_old()

    def _create_snapshots(self, by_kind: dict[str, list[_Source]]) -> dict[str, int]:
        s = directory_snapshots.c
        snaps: dict[str, int] = {}
        host, pid = socket.gethostname()[:255], os.getpid()
        with self.db.write() as conn:
            for kind, group in by_kind.items():
                formats = ",".join(sorted({src.reader.format.name for src in group}))
                source = ", ".join(src.path.name for src in group)
                snaps[kind] = int(
                    conn.execute(
                        insert(directory_snapshots).values(
                            kind=kind,
                            format=formats[:32],
                            source=source[:500],
                            state="loading",
                            started_at=utcnow(),
                            rows=0,
                            rejected=0,
                            added=0,
                            changed=0,
                            removed=0,
                            duplicates=0,
                            host=host,
                            pid=pid,
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
            # Checked after our INSERT took SQLite's write lock: two imports cannot both
            # see no other one.
            others = conn.execute(
                select(s.id, s.host, s.pid).where(
                    s.state == "loading", s.id.not_in(list(snaps.values()))
                )
            ).all()
            for row in others:
                if row.host != host or (row.pid and load.alive(row.pid)):
                    raise DirectoryImportBusy(
                        f"un import de l'annuaire est déjà en cours (processus {row.pid})"
                    )
        return snaps

    def _read(
        self,
        src: _Source,
        kr: KindReport,
        report: ImportReport,
        *,
        strict: bool,
        max_errors: int,
        progress: Callable[[ImportProgress], None] | None,
    ) -> None:
        reader = src.reader
        loader = load.loader(self.db, reader.kind, kr.snapshot_id)
        step = ImportProgress(src.path.name, "read", bytes_total=src.size)

        def done(pending: Future[int], size: int) -> None:
            stored = pending.result()
            kr.rows += stored
            kr.duplicates += size - stored
            if progress is not None:
                step.bytes_done = reader.position()
                step.rows, step.rejected = kr.rows + kr.duplicates, kr.rejected
                progress(step)

        # One writer thread: the database works on batch n (SQLite and psycopg release the
        # GIL) while this thread parses batch n + 1. At most two batches are in memory.
        with ThreadPoolExecutor(1, thread_name_prefix="directory-load") as writer:
            pending: tuple[Future[int], int] | None = None
            try:
                for batch in self._batches(
                    reader, loader.batch_size, kr, report, strict, max_errors
                ):
                    if pending is not None:
                        done(*pending)
                    pending = writer.submit(loader.write, batch), len(batch)
                if pending is not None:
                    done(*pending)
                    pending = None
            finally:
                if pending is not None:  # an error while parsing: let the write finish
                    pending[0].exception()
                writer.submit(loader.close).result()

    @staticmethod
    def _batches(
        reader: ExtractionReader,
        size: int,
        kr: KindReport,
        report: ImportReport,
        strict: bool,
        max_errors: int,
    ) -> Iterator[list[tuple[str, ...]]]:
        """The good rows in lists of ``size``; bad rows are counted, kept (the first ones)
        or, with ``strict``, refuse the file."""
        batch: list[tuple[str, ...]] = []
        for record in reader.records():
            if isinstance(record, RowError):
                if strict:
                    raise DirectoryFileRefused(
                        f"{reader.name} ligne {record.line} : {record.reason} (mode strict)",
                        line=record.line,
                    )
                kr.rejected += 1
                if len(report.errors) < max_errors:
                    report.errors.append((reader.name, record))
                continue
            batch.append(record)
            if len(batch) >= size:
                yield batch
                batch = []
        yield batch

    def _check_rejected(self, kr: KindReport, group: list[_Source]) -> None:
        lines = sum(src.reader.stats.rows + src.reader.stats.rejected for src in group)
        limit = max(
            self.settings.import_max_rejected, self.settings.import_max_rejected_ratio * lines
        )
        names = ", ".join(src.path.name for src in group)
        if kr.rejected > limit:
            raise DirectoryFileRefused(
                f"{names} : {kr.rejected} lignes invalides sur {lines} (au plus {int(limit)}) : "
                "fichier refusé, l'annuaire en vigueur est conservé"
            )
        if kr.rows == 0:
            raise DirectoryFileRefused(f"{names} : aucune ligne valide, fichier refusé")

    def _index(
        self, snaps: dict[str, int], progress: Callable[[ImportProgress], None] | None
    ) -> None:
        hook = _search_hook("index_snapshot") if self.settings.search_index else None
        if hook is None:
            return
        for snapshot_id in snaps.values():
            if progress is not None:
                progress(ImportProgress("", "index"))
            with self.db.write() as conn:
                hook(conn, snapshot_id)

    def _diff_and_check(self, report: ImportReport, *, force: bool) -> None:
        with self.db.read() as conn:
            current = current_snapshots(conn)
            for kind, kr in report.kinds.items():
                old = current.get(kind)
                if old is None:
                    kr.added = kr.rows if kind == "bal" else load.persons(conn, kr.snapshot_id)
                    continue
                if kind == "bal":
                    kr.previous_rows = int(
                        conn.execute(
                            select(directory_snapshots.c.rows).where(
                                directory_snapshots.c.id == old
                            )
                        ).scalar_one()
                    )
                else:  # the removed count is of persons
                    kr.previous_rows = load.persons(conn, old)
                kr.added, kr.changed, kr.removed = load.diff(conn, kind, old, kr.snapshot_id)
                ratio = self.settings.import_max_removed_ratio
                if not force and kr.previous_rows and kr.removed > ratio * max(kr.previous_rows, 1):
                    what = "BAL" if kind == "bal" else "professionnels"
                    raise DirectoryFileRefused(
                        f"l'import retirerait {kr.removed} {what} de l'annuaire en vigueur "
                        f"(plus de {ratio:.0%}) : refusé sans --force"
                    )

    def _switch(self, report: ImportReport, actor: str) -> None:
        s = directory_snapshots.c
        now = utcnow()
        with self.db.write() as conn:
            current = current_snapshots(conn)
            for kind, kr in report.kinds.items():
                old = current.get(kind)
                if old is None:
                    conn.execute(
                        insert(directory_current).values(
                            kind=kind, snapshot_id=kr.snapshot_id, switched_at=now
                        )
                    )
                else:
                    conn.execute(
                        update(directory_current)
                        .where(directory_current.c.kind == kind)
                        .values(snapshot_id=kr.snapshot_id, switched_at=now)
                    )
                    conn.execute(
                        update(directory_snapshots).where(s.id == old).values(state="retired")
                    )
                conn.execute(
                    update(directory_snapshots)
                    .where(s.id == kr.snapshot_id)
                    .values(
                        state="current",
                        finished_at=now,
                        rows=kr.rows,
                        rejected=kr.rejected,
                        duplicates=kr.duplicates,
                        added=kr.added,
                        changed=kr.changed,
                        removed=kr.removed,
                        pid=None,
                    )
                )
                traces.record(
                    conn,
                    "directory.import",
                    actor=actor,
                    detail=f"{kind} snapshot {kr.snapshot_id} ({','.join(kr.formats)}): "
                    f"{kr.rows} rows, {kr.rejected} rejected, +{kr.added} ~{kr.changed} "
                    f"-{kr.removed}",
                )

    def _abandon(self, snapshot_ids: list[int], message: str) -> None:
        """Mark snapshots failed (readers never saw them) and delete their rows."""
        try:
            with self.db.write() as conn:
                conn.execute(
                    update(directory_snapshots)
                    .where(directory_snapshots.c.id.in_(snapshot_ids))
                    .where(directory_snapshots.c.state == "loading")
                    .values(state="failed", finished_at=utcnow(), message=message[:500], pid=None)
                )
            self._purge(snapshot_ids)
        except Exception:  # the next import retries; keep the original error
            log.exception("directory: could not clean snapshots %s", snapshot_ids)

    def _purge_old(self) -> None:
        s = directory_snapshots.c
        with self.db.read() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    select(s.id).where(s.state.in_(("retired", "failed")))
                ).scalars()
                if load.has_rows(conn, int(i))
            ]
        self._purge(ids)

    def _purge(self, snapshot_ids: list[int]) -> None:
        drop = _search_hook("drop_snapshot_index")
        for snapshot_id in snapshot_ids:
            if drop is not None:
                with self.db.write() as conn:
                    drop(conn, snapshot_id)
            load.delete_rows(self.db, snapshot_id)

    # -- eligibility (R60) ----------------------------------------------------------------

    def suspend_unlisted(self, *, actor: str = "annuaire") -> list[str]:
        """Suspend every active PER BAL whose professional is no longer listed (R60)."""
        return suspend_unlisted(self.db, self.mailboxes, actor=actor)
