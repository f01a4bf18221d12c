"""`INSERT … ON CONFLICT` for both engines (SQLite and PostgreSQL share the syntax, not the
SQLAlchemy construct)."""

from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mssante.storage.database import utcnow
from mssante.storage.schema import blobs


def dialect_insert(conn: Connection, table: Table) -> PgInsert | SqliteInsert:
    """The engine's INSERT construct, which has `on_conflict_do_nothing/update`."""
    return (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(table)


def record_blob(conn: Connection, digest: str, size: int, key_id: str) -> None:
    """The `blobs` row of a stored body; identical bodies stored at once meet ON CONFLICT."""
    conn.execute(
        dialect_insert(conn, blobs)
        .values(digest=digest, size=size, key_id=key_id, created_at=utcnow())
        .on_conflict_do_nothing()
    )
