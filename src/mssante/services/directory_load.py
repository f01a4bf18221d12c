"""Bulk writing and comparison of directory snapshots, per engine (used by directory.py).

SQLite: ``executemany`` of plain tuples, one transaction per batch (``INSERT OR IGNORE``
keeps the first row of an address, R52). PostgreSQL: ``COPY`` in text format through the
driver connection; BAL rows go through a temporary table so that ``INSERT … ON CONFLICT DO
NOTHING`` keeps the first row of an address. Diffs and deletions are SQL: nothing here
holds more than one batch in memory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, exists, func, select, text

from mssante.formats.directory_files import ENTRY_FIELDS, PROFESSIONAL_FIELDS
from mssante.storage.database import Database
from mssante.storage.schema_directory import directory_entries, directory_professionals

LOCK_KEY = 0x4D5353414E5445  # pg advisory lock of the directory import ("MSSANTE")
DELETE_BATCH = 50_000
_TABLES = {"bal": directory_entries, "professionals": directory_professionals}
_FIELDS = {"bal": ENTRY_FIELDS, "professionals": PROFESSIONAL_FIELDS}


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (and is not us)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Loader(Protocol):
    batch_size: int

    def write(self, batch: Sequence[tuple[str, ...]]) -> int:
        """Store the rows (values + row hash); return how many were stored."""

    def close(self) -> None:
        """Release the connection."""


class _SqliteLoader:
    """One connection for the whole load, so its page cache stays warm across batches.

    It runs with ``synchronous=NORMAL`` (WAL: a crash may lose the last batches, never
    corrupts the file; they belong to a 'loading' snapshot that is discarded anyway; the
    switch is committed by a ``synchronous=FULL`` connection, which syncs them too).
    """

    batch_size = 10_000
    cache_kib = 64 * 1024

    def __init__(self, db: Database, kind: str, snapshot_id: int) -> None:
        self.db = db
        names = _FIELDS[kind]
        marks = ", ".join("?" * len(names))
        sid = int(snapshot_id)
        cols = ", ".join(names)  # SQL built from code constants and an int only
        if kind == "bal":
            self.sql = (
                f"INSERT OR IGNORE INTO directory_entries (snapshot_id, {cols}, "  # noqa: S608
                f"list_rouge, description, responsible, rank, row_hash) "
                f"VALUES ({sid}, {marks}, 0, '', '', 1, ?)"
            )
        else:
            self.sql = (
                f"INSERT INTO directory_professionals (snapshot_id, {cols}, "  # noqa: S608
                f"row_hash) VALUES ({sid}, {marks}, ?)"
            )
        self.conn: Connection | None = None
        # Writers of this process take the Database's lock (SQLite has one writer).
        self.lock = getattr(db, "_write_lock", None) or contextlib.nullcontext()

    def write(self, batch: Sequence[tuple[str, ...]]) -> int:
        if not batch:
            return 0
        if self.conn is None:
            self.conn = self.db.engine.connect()
            self.conn.exec_driver_sql(f"PRAGMA cache_size=-{self.cache_kib}")
            self.conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            self.conn.commit()
        with self.lock, self.conn.begin():
            cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(self.sql, batch)
            stored = int(cursor.rowcount)
            cursor.close()
        return stored

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _copy_escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")
    )


def _copy_text(batch: Sequence[tuple[str, ...]], prefix: str, suffix: str) -> bytes:
    """COPY text format: tab-separated, backslash escapes only where needed."""
    width = len(batch[0]) - 1
    lines = []
    for record in batch:
        line = "\t".join(record)
        if "\\" in line or "\r" in line or line.count("\t") != width:
            line = "\t".join(map(_copy_escape, record))
        lines.append(prefix + line + suffix)
    return "".join(lines).encode()


class _PostgresLoader:
    batch_size = 20_000

    def __init__(self, db: Database, kind: str, snapshot_id: int) -> None:
        self.db = db
        self.kind = kind
        self.conn: Connection | None = None
        names = _FIELDS[kind]
        sid = int(snapshot_id)
        self.sid_prefix = f"{sid}\t"
        if kind == "bal":
            cols = ", ".join(names)
            self.prefix, self.suffix = "", "\n"
            self.create = (
                "CREATE TEMP TABLE IF NOT EXISTS directory_load_entries ("
                "seq bigserial, "
                + ", ".join(f"{n} text" for n in names)
                + ", row_hash text) ON COMMIT DELETE ROWS"
            )
            self.copy = f"COPY directory_load_entries ({cols}, row_hash) FROM STDIN"
            # Fast path: COPY straight into the table; a batch holding an address already
            # stored (R52 duplicates, rare) is rolled back to a savepoint and staged.
            self.direct = (
                f"COPY directory_entries (snapshot_id, {cols}, row_hash, list_rouge, "
                "description, responsible, rank) FROM STDIN"
            )
            self.move = (
                f"INSERT INTO directory_entries (snapshot_id, {cols}, "  # noqa: S608
                "list_rouge, description, "
                f"responsible, rank, row_hash) SELECT {sid}, {cols}, false, '', '', 1, row_hash "
                "FROM directory_load_entries ORDER BY seq "
                "ON CONFLICT (snapshot_id, address) DO NOTHING"
            )
        else:
            self.prefix, self.suffix = f"{sid}\t", "\n"
            self.copy = (
                f"COPY directory_professionals (snapshot_id, {', '.join(names)}, row_hash) "
                "FROM STDIN"
            )

    def write(self, batch: Sequence[tuple[str, ...]]) -> int:
        if not batch:
            return 0
        data = _copy_text(batch, self.prefix, self.suffix)
        if self.conn is None:
            self.conn = self.db.engine.connect()
        with self.conn.begin():
            driver: Any = self.conn.connection.driver_connection
            with driver.cursor() as cursor:
                if self.kind == "bal":
                    if self._direct(cursor, batch):
                        return len(batch)
                    cursor.execute(self.create)
                with cursor.copy(self.copy) as copy:
                    copy.write(data)
                if self.kind != "bal":
                    return len(batch)
                cursor.execute(self.move)
                return int(cursor.rowcount)

    def _direct(self, cursor: Any, batch: Sequence[tuple[str, ...]]) -> bool:
        import psycopg

        data = _copy_text(batch, self.sid_prefix, "\tf\t\t\t1\n")
        cursor.execute("SAVEPOINT directory_batch")
        try:
            with cursor.copy(self.direct) as copy:
                copy.write(data)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT directory_batch")
            return False
        cursor.execute("RELEASE SAVEPOINT directory_batch")
        return True

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def loader(db: Database, kind: str, snapshot_id: int) -> Loader:
    """The bulk writer of the engine; call ``close()`` when done."""
    if db.is_sqlite:
        return _SqliteLoader(db, kind, snapshot_id)
    return _PostgresLoader(db, kind, snapshot_id)


def analyze(db: Database, kind: str) -> None:
    """Refresh the planner statistics after a bulk load (PostgreSQL: without them the diff
    joins of a table that was empty at the last autovacuum run as nested seq scans)."""
    if db.is_sqlite:
        return
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            f"ANALYZE {_TABLES[kind].name}"
        )


# -- comparisons ------------------------------------------------------------------------------


def persons(conn: Connection, snapshot_id: int) -> int:
    p = directory_professionals.c
    query = select(func.count(func.distinct(p.id_nat_ps))).where(p.snapshot_id == snapshot_id)
    return int(conn.execute(query).scalar_one())


def _diff_bal(conn: Connection, old: int, new: int) -> tuple[int, int, int]:
    row = conn.execute(
        text(
            "SELECT count(*) AS matched, "
            "coalesce(sum(CASE WHEN o.row_hash <> n.row_hash THEN 1 ELSE 0 END), 0) AS changed "
            "FROM directory_entries n JOIN directory_entries o "
            "ON o.snapshot_id = :old AND o.address = n.address WHERE n.snapshot_id = :new"
        ),
        {"old": old, "new": new},
    ).one()
    e = directory_entries.c
    counts: dict[int, int] = dict(
        conn.execute(
            select(e.snapshot_id, func.count())
            .where(e.snapshot_id.in_((old, new)))
            .group_by(e.snapshot_id)
        ).all()
    )
    matched = int(row.matched)
    return counts.get(new, 0) - matched, int(row.changed), counts.get(old, 0) - matched


_PERSONS_MATCHED = (
    "SELECT count(DISTINCT n.id_nat_ps) FROM directory_professionals n "
    "WHERE n.snapshot_id = :new AND EXISTS (SELECT 1 FROM directory_professionals o "
    "WHERE o.snapshot_id = :old AND o.id_nat_ps = n.id_nat_ps)"
)
# A person present in both snapshots whose set of situations differs.
_PERSONS_CHANGED = (
    "SELECT count(*) FROM ("
    " SELECT n.id_nat_ps FROM directory_professionals n WHERE n.snapshot_id = :new"
    " AND NOT EXISTS (SELECT 1 FROM directory_professionals o WHERE o.snapshot_id = :old"
    "  AND o.id_nat_ps = n.id_nat_ps AND o.row_hash = n.row_hash)"
    " UNION"
    " SELECT o.id_nat_ps FROM directory_professionals o WHERE o.snapshot_id = :old"
    " AND NOT EXISTS (SELECT 1 FROM directory_professionals n WHERE n.snapshot_id = :new"
    "  AND n.id_nat_ps = o.id_nat_ps AND n.row_hash = o.row_hash)"
    ") d WHERE EXISTS (SELECT 1 FROM directory_professionals a WHERE a.snapshot_id = :new"
    " AND a.id_nat_ps = d.id_nat_ps)"
    " AND EXISTS (SELECT 1 FROM directory_professionals b WHERE b.snapshot_id = :old"
    " AND b.id_nat_ps = d.id_nat_ps)"
)


def _diff_professionals(conn: Connection, old: int, new: int) -> tuple[int, int, int]:
    ids = {"old": old, "new": new}
    matched = int(conn.execute(text(_PERSONS_MATCHED), ids).scalar_one())
    changed = int(conn.execute(text(_PERSONS_CHANGED), ids).scalar_one())
    return persons(conn, new) - matched, changed, persons(conn, old) - matched


def diff(conn: Connection, kind: str, old: int, new: int) -> tuple[int, int, int]:
    """(added, changed, removed) from snapshot ``old`` to ``new``: BALs by address, or
    professionals by idNat_PS."""
    if kind == "bal":
        return _diff_bal(conn, old, new)
    return _diff_professionals(conn, old, new)


# -- deletion ---------------------------------------------------------------------------------


def has_rows(conn: Connection, snapshot_id: int) -> bool:
    return any(
        conn.execute(select(exists().where(table.c.snapshot_id == snapshot_id))).scalar()
        for table in _TABLES.values()
    )


def delete_rows(db: Database, snapshot_id: int) -> None:
    """Delete a snapshot's rows in batches (short transactions: other writers go on)."""
    for table in _TABLES.values():
        name = table.name
        sql = text(
            f"DELETE FROM {name} WHERE id IN "  # noqa: S608
            f"(SELECT id FROM {name} WHERE snapshot_id = :s LIMIT {DELETE_BATCH})"
        )
        while True:
            with db.write() as conn:
                if conn.execute(sql, {"s": snapshot_id}).rowcount == 0:
                    break
