"""Search index of the directory (issue 5 item 2): one row of search keys per BAL.

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0008 creates
these tables and, per engine, the full-text index over ``directory_search_docs.doc``:

* SQLite: the FTS5 table ``directory_search_fts`` (external content = this table,
  ``content_rowid`` = ``entry_id``), filled by the indexer;
* PostgreSQL: a GIN index on ``to_tsvector('simple', doc)``, kept by PostgreSQL itself.

Every text column holds normalised words (see :mod:`mssante.domain.directory_text`);
``k_*`` and ``doc`` are padded with spaces so ``LIKE '% word %'`` finds whole words.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text

from mssante.storage.schema import metadata

_S = 255

# entry_id is directory_entries.id (no foreign key: the importer deletes a retired
# snapshot's rows after drop_snapshot_index() removed these).
directory_search_docs = Table(
    "directory_search_docs",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=False),
    Column("snapshot_id", Integer, nullable=False),
    Column("address", String(320), nullable=False),
    Column("bal_type", String(3), nullable=False),
    Column("list_rouge", Boolean, nullable=False, default=False),
    Column("k_name", Text, nullable=False),
    Column("k_given", Text, nullable=False),
    Column("k_org", Text, nullable=False),
    Column("k_city", String(_S), nullable=False),
    Column("k_profession", Text, nullable=False),
    Column("profession_code", String(16), nullable=False),
    Column("postcode", String(16), nullable=False),
    Column("dept_code", String(8), nullable=False),
    Column("sort_name", String(_S), nullable=False),
    Column("doc", Text, nullable=False),
    Index("ix_directory_search_docs_snapshot_address", "snapshot_id", "address", unique=True),
)

# The words of a snapshot (letters only, 4 or more): where typo variants are looked up.
directory_search_terms = Table(
    "directory_search_terms",
    metadata,
    Column("snapshot_id", Integer, primary_key=True, autoincrement=False),
    Column("term", String(_S), primary_key=True),
)

# Byte order on both engines (SQLite's BINARY; "C" on PostgreSQL), so an index gives the
# tie-break order of the search results directly.
BYTE_STRING = String(_S).with_variant(String(_S, collation="C"), "postgresql")
BYTE_ADDRESS = String(320).with_variant(String(320, collation="C"), "postgresql")

# Every word of the name key (k_name) of each BAL that may be shown (red-listed ones are
# left out, R49), in result order: the best tier of a one-word query (an exact family or
# structure name, services/directory_search.py) is read straight from the primary key.
directory_search_names = Table(
    "directory_search_names",
    metadata,
    Column("snapshot_id", Integer, primary_key=True, autoincrement=False),
    Column("word", String(_S), primary_key=True),
    Column("sort_name", BYTE_STRING, primary_key=True),
    Column("address", BYTE_ADDRESS, primary_key=True),
    Column("entry_id", Integer, nullable=False),
    Index("ix_directory_search_names_entry_id", "entry_id"),
)
