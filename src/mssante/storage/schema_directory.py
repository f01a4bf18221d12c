"""Tables of the national directory copy (issue 5): snapshots and their rows.

Registered on the shared :data:`mssante.storage.schema.metadata`; migration 0006 creates
them. An import writes a whole new snapshot, then switches ``directory_current`` to it in
one UPDATE: readers always see one complete snapshot (the previous one until the switch).
Column names follow :mod:`mssante.domain.directory` field names exactly.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from mssante.storage.schema import UTC_DATETIME, metadata

_S = 255  # free-text fields of the extraction

directory_snapshots = Table(
    "directory_snapshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # bal | professionals
    Column("format", String(32), nullable=False),  # mssante | rass | psc | fhir
    Column("source", String(500), nullable=False, default=""),  # file names
    Column("state", String(16), nullable=False),  # loading | current | retired | failed
    Column("started_at", UTC_DATETIME, nullable=False),
    Column("finished_at", UTC_DATETIME, nullable=True),
    Column("rows", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("added", Integer, nullable=False, default=0),
    Column("changed", Integer, nullable=False, default=0),
    Column("removed", Integer, nullable=False, default=0),
    # Added by the importer (issue 5): rows of the file that repeated an address (R52),
    # the importing process (a 'loading' snapshot whose process is gone is stale), and
    # why a snapshot failed.
    Column("duplicates", Integer, nullable=False, default=0),
    Column("host", String(255), nullable=False, default=""),
    Column("pid", Integer, nullable=True),
    Column("message", String(500), nullable=True),
    Index("ix_directory_snapshots_kind_state", "kind", "state"),
)

# The one switch: kind -> snapshot in force.
directory_current = Table(
    "directory_current",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("snapshot_id", Integer, ForeignKey("directory_snapshots.id"), nullable=False),
    Column("switched_at", UTC_DATETIME, nullable=False),
)

directory_entries = Table(
    "directory_entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("snapshot_id", Integer, ForeignKey("directory_snapshots.id"), nullable=False),
    Column("bal_type", String(3), nullable=False),
    Column("address", String(320), nullable=False),
    Column("id_type_pp", String(2), nullable=False, default=""),
    Column("id_pp", String(32), nullable=False, default=""),
    Column("id_nat_ps", String(32), nullable=False, default=""),
    Column("id_type_struct", String(4), nullable=False, default=""),
    Column("id_struct", String(32), nullable=False, default=""),
    Column("service", String(_S), nullable=False, default=""),
    Column("civility", String(32), nullable=False, default=""),
    Column("family_name", String(_S), nullable=False, default=""),
    Column("given_name", String(_S), nullable=False, default=""),
    Column("profession_category_code", String(8), nullable=False, default=""),
    Column("profession_category_label", String(_S), nullable=False, default=""),
    Column("profession_code", String(16), nullable=False, default=""),
    Column("profession_label", String(_S), nullable=False, default=""),
    Column("skill_code", String(32), nullable=False, default=""),
    Column("skill_label", String(_S), nullable=False, default=""),
    Column("digitization", String(16), nullable=False, default=""),
    Column("org_name", String(_S), nullable=False, default=""),
    Column("org_trade_name", String(_S), nullable=False, default=""),
    Column("address_l2", String(_S), nullable=False, default=""),
    Column("address_l3", String(_S), nullable=False, default=""),
    Column("street_number", String(16), nullable=False, default=""),
    Column("street_number_suffix", String(16), nullable=False, default=""),
    Column("street_type", String(32), nullable=False, default=""),
    Column("street_name", String(_S), nullable=False, default=""),
    Column("locality", String(_S), nullable=False, default=""),
    Column("city_line", String(_S), nullable=False, default=""),
    Column("postcode", String(16), nullable=False, default=""),
    Column("departement", String(64), nullable=False, default=""),
    Column("country", String(64), nullable=False, default=""),
    Column("list_rouge", Boolean, nullable=False, default=False),
    Column("description", Text, nullable=False, default=""),
    Column("responsible", Text, nullable=False, default=""),
    Column("rank", Integer, nullable=False, default=1),
    # Digest of the row's content: a re-import compares these to report changes.
    Column("row_hash", String(32), nullable=False),
    Index("ix_directory_entries_snapshot_address", "snapshot_id", "address", unique=True),
    Index("ix_directory_entries_snapshot_id_nat_ps", "snapshot_id", "id_nat_ps"),
    Index("ix_directory_entries_snapshot_id_struct", "snapshot_id", "id_struct"),
)

directory_professionals = Table(
    "directory_professionals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("snapshot_id", Integer, ForeignKey("directory_snapshots.id"), nullable=False),
    Column("id_type_pp", String(2), nullable=False),
    Column("id_pp", String(32), nullable=False),
    Column("id_nat_ps", String(32), nullable=False),
    Column("civility", String(32), nullable=False, default=""),
    Column("family_name", String(_S), nullable=False, default=""),
    Column("given_name", String(_S), nullable=False, default=""),
    Column("profession_code", String(16), nullable=False, default=""),
    Column("profession_label", String(_S), nullable=False, default=""),
    Column("profession_category_code", String(8), nullable=False, default=""),
    Column("skill_code", String(32), nullable=False, default=""),
    Column("skill_label", String(_S), nullable=False, default=""),
    Column("org_id", String(32), nullable=False, default=""),
    Column("org_name", String(_S), nullable=False, default=""),
    Column("postcode", String(16), nullable=False, default=""),
    Column("city", String(_S), nullable=False, default=""),
    Column("departement", String(64), nullable=False, default=""),
    Column("email", String(320), nullable=False, default=""),
    Column("row_hash", String(32), nullable=False),
    Index("ix_directory_professionals_snapshot_id_nat_ps", "snapshot_id", "id_nat_ps"),
)
