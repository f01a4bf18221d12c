"""Database engine, transactions and migrations for SQLite and PostgreSQL.

SQLite is opened in WAL mode with `synchronous=FULL`, so a committed transaction is on disk
(fsync) before `commit()` returns; PostgreSQL keeps its default `synchronous_commit=on`.
Writers on SQLite are serialised by a process lock (SQLite allows one writer at a time);
PostgreSQL writers run concurrently and the queue uses `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored datetime is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """One engine and the rules for using it."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._write_lock = threading.Lock()
        self.on_commit: Callable[[set[int]], None] | None = None
        if self.is_sqlite:
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url,
                poolclass=NullPool,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed (and durable) when the block ends.

        Folders marked changed during the transaction (`ChangeBus.touched`) are announced
        to `on_commit` once the commit succeeded.
        """
        if self.is_sqlite:
            with self._write_lock, self.engine.begin() as conn:
                # Take the write lock at once (BEGIN IMMEDIATE semantics) so a reader
                # cannot be upgraded into a deadlock.
                conn.exec_driver_sql("SELECT 1")
                yield conn
                touched = conn.info.pop("mssante_touched", None)
        else:
            with self.engine.begin() as conn:
                yield conn
                touched = conn.info.pop("mssante_touched", None)
        if touched and self.on_commit is not None:
            self.on_commit(touched)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._write_lock if self.is_sqlite else _nullcontext(), self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield
