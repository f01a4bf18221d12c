"""national directory copy

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 01:00:00.000000

Tables of storage/schema_directory.py (issue 5): the snapshots of the national directory,
the switch ``directory_current``, and the rows of each snapshot (BALs of the MSSanté
extraction, exercise situations of the RASS / Pro Santé Connect extractions).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_S = 255


def _text(name: str, length: int) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length=length), nullable=False)


def upgrade() -> None:
    op.create_table(
        "directory_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("message", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_snapshots")),
    )
    op.create_index(
        op.f("ix_directory_snapshots_kind_state"),
        "directory_snapshots",
        ["kind", "state"],
        unique=False,
    )
    op.create_table(
        "directory_current",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("switched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["directory_snapshots.id"],
            name=op.f("fk_directory_current_snapshot_id_directory_snapshots"),
        ),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_directory_current")),
    )
    op.create_table(
        "directory_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        _text("bal_type", 3),
        _text("address", 320),
        _text("id_type_pp", 2),
        _text("id_pp", 32),
        _text("id_nat_ps", 32),
        _text("id_type_struct", 4),
        _text("id_struct", 32),
        _text("service", _S),
        _text("civility", 32),
        _text("family_name", _S),
        _text("given_name", _S),
        _text("profession_category_code", 8),
        _text("profession_category_label", _S),
        _text("profession_code", 16),
        _text("profession_label", _S),
        _text("skill_code", 32),
        _text("skill_label", _S),
        _text("digitization", 16),
        _text("org_name", _S),
        _text("org_trade_name", _S),
        _text("address_l2", _S),
        _text("address_l3", _S),
        _text("street_number", 16),
        _text("street_number_suffix", 16),
        _text("street_type", 32),
        _text("street_name", _S),
        _text("locality", _S),
        _text("city_line", _S),
        _text("postcode", 16),
        _text("departement", 64),
        _text("country", 64),
        sa.Column("list_rouge", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("responsible", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        _text("row_hash", 32),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["directory_snapshots.id"],
            name=op.f("fk_directory_entries_snapshot_id_directory_snapshots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_entries")),
    )
    op.create_index(
        op.f("ix_directory_entries_snapshot_address"),
        "directory_entries",
        ["snapshot_id", "address"],
        unique=True,
    )
    op.create_index(
        op.f("ix_directory_entries_snapshot_id_nat_ps"),
        "directory_entries",
        ["snapshot_id", "id_nat_ps"],
        unique=False,
    )
    op.create_index(
        op.f("ix_directory_entries_snapshot_id_struct"),
        "directory_entries",
        ["snapshot_id", "id_struct"],
        unique=False,
    )
    op.create_table(
        "directory_professionals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        _text("id_type_pp", 2),
        _text("id_pp", 32),
        _text("id_nat_ps", 32),
        _text("civility", 32),
        _text("family_name", _S),
        _text("given_name", _S),
        _text("profession_code", 16),
        _text("profession_label", _S),
        _text("profession_category_code", 8),
        _text("skill_code", 32),
        _text("skill_label", _S),
        _text("org_id", 32),
        _text("org_name", _S),
        _text("postcode", 16),
        _text("city", _S),
        _text("departement", 64),
        _text("email", 320),
        _text("row_hash", 32),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["directory_snapshots.id"],
            name=op.f("fk_directory_professionals_snapshot_id_directory_snapshots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_professionals")),
    )
    op.create_index(
        op.f("ix_directory_professionals_snapshot_id_nat_ps"),
        "directory_professionals",
        ["snapshot_id", "id_nat_ps"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_directory_professionals_snapshot_id_nat_ps"),
        table_name="directory_professionals",
    )
    op.drop_table("directory_professionals")
    for name in ("id_struct", "id_nat_ps", "address"):
        op.drop_index(op.f(f"ix_directory_entries_snapshot_{name}"), table_name="directory_entries")
    op.drop_table("directory_entries")
    op.drop_table("directory_current")
    op.drop_index(op.f("ix_directory_snapshots_kind_state"), table_name="directory_snapshots")
    op.drop_table("directory_snapshots")
