"""Settings, progress and reports of the directory import (services/directory.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mssante.domain.errors import DomainError
from mssante.formats.directory_files import MAX_LINE, RowError


class DirectoryImportBusy(DomainError):
    """Another import of the directory is running."""

    code = "directory-import-busy"


@dataclass(frozen=True)
class DirectorySettings:
    """`[directory]` import limits (docs/configuration.md)."""

    import_max_rejected: int = 100
    import_max_rejected_ratio: float = 0.01
    import_max_removed_ratio: float = 0.2
    import_max_line: int = MAX_LINE
    search_index: bool = True  # build the search index before the switch (benchmarks: off)


@dataclass
class ImportProgress:
    """What a progress bar shows: ``phase`` is ``read``, ``index``, ``switch`` or ``done``."""

    file: str
    phase: str
    bytes_done: int = 0
    bytes_total: int = 0
    rows: int = 0
    rejected: int = 0


@dataclass
class KindReport:
    kind: str
    snapshot_id: int
    formats: list[str]
    rows: int = 0  # rows stored in the snapshot
    rejected: int = 0
    duplicates: int = 0  # rows repeating an address (R52), bal only
    added: int = 0  # BALs (bal) or professionals (professionals)
    changed: int = 0
    removed: int = 0
    previous_rows: int = 0


@dataclass
class ImportReport:
    files: list[str]
    kinds: dict[str, KindReport] = field(default_factory=dict)
    errors: list[tuple[str, RowError]] = field(default_factory=list)  # the first ones
    seconds: float = 0.0
    suspended: list[str] = field(default_factory=list)  # PER BALs suspended (R60)
    timings: dict[str, float] = field(default_factory=dict)  # read, index, purge (seconds)

    def _sum(self, name: str) -> int:
        return sum(int(getattr(k, name)) for k in self.kinds.values())

    @property
    def rows(self) -> int:
        return self._sum("rows")

    @property
    def rejected(self) -> int:
        return self._sum("rejected")

    @property
    def added(self) -> int:
        return self._sum("added")

    @property
    def changed(self) -> int:
        return self._sum("changed")

    @property
    def removed(self) -> int:
        return self._sum("removed")

    @property
    def duplicates(self) -> int:
        return self._sum("duplicates")

    @property
    def snapshot_id(self) -> int | None:
        ids = [k.snapshot_id for k in self.kinds.values()]
        return ids[-1] if ids else None

    @property
    def rows_per_second(self) -> float:
        lines = self.rows + self.duplicates + self.rejected
        return lines / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    kind: str
    format: str
    source: str
    state: str
    started_at: Any
    finished_at: Any
    rows: int
    rejected: int
    added: int
    changed: int
    removed: int
    duplicates: int
    current: bool
    message: str | None
