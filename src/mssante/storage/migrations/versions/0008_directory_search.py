"""directory search index

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 01:00:00.000000

Tables of storage/schema_directory_search.py, plus the engine's full-text index over
``directory_search_docs.doc``: an FTS5 table on SQLite, a GIN index on
``to_tsvector('simple', doc)`` on PostgreSQL. ``directory_search_names`` sorts in byte order
on both engines (collation "C" on PostgreSQL). No PostgreSQL extension is needed: accents,
case and typos are handled in Python (domain/directory_text.py), so an operator without
superuser rights can run this migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FTS_SQLITE = (
    "CREATE VIRTUAL TABLE directory_search_fts USING fts5("
    "doc, content='directory_search_docs', content_rowid='entry_id', "
    "tokenize='unicode61 remove_diacritics 0', prefix='2 3')"
)
GIN_POSTGRESQL = (
    "CREATE INDEX ix_directory_search_docs_doc_tsv ON directory_search_docs "
    "USING gin (to_tsvector('simple'::regconfig, doc))"
)


def _bytes(length: int) -> sa.types.TypeEngine[str]:
    """Byte order on both engines (collation "C" on PostgreSQL)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "directory_search_docs",
        sa.Column("entry_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("bal_type", sa.String(length=3), nullable=False),
        sa.Column("list_rouge", sa.Boolean(), nullable=False),
        sa.Column("k_name", sa.Text(), nullable=False),
        sa.Column("k_given", sa.Text(), nullable=False),
        sa.Column("k_org", sa.Text(), nullable=False),
        sa.Column("k_city", sa.String(length=255), nullable=False),
        sa.Column("k_profession", sa.Text(), nullable=False),
        sa.Column("profession_code", sa.String(length=16), nullable=False),
        sa.Column("postcode", sa.String(length=16), nullable=False),
        sa.Column("dept_code", sa.String(length=8), nullable=False),
        sa.Column("sort_name", sa.String(length=255), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_directory_search_docs")),
    )
    op.create_index(
        "ix_directory_search_docs_snapshot_address",
        "directory_search_docs",
        ["snapshot_id", "address"],
        unique=True,
    )
    op.create_table(
        "directory_search_terms",
        sa.Column("snapshot_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("term", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("snapshot_id", "term", name=op.f("pk_directory_search_terms")),
    )
    op.create_table(
        "directory_search_names",
        sa.Column("snapshot_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("word", sa.String(length=255), nullable=False),
        sa.Column("sort_name", _bytes(255), nullable=False),
        sa.Column("address", _bytes(320), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "snapshot_id", "word", "sort_name", "address", name=op.f("pk_directory_search_names")
        ),
    )
    op.create_index("ix_directory_search_names_entry_id", "directory_search_names", ["entry_id"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(FTS_SQLITE)
    else:
        op.execute(GIN_POSTGRESQL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS directory_search_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_directory_search_docs_doc_tsv")
    op.drop_index("ix_directory_search_names_entry_id", table_name="directory_search_names")
    op.drop_table("directory_search_names")
    op.drop_table("directory_search_terms")
    op.drop_index("ix_directory_search_docs_snapshot_address", table_name="directory_search_docs")
    op.drop_table("directory_search_docs")
