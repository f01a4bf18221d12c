"""directory publication outbox

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("identifier_system", sa.String(length=100), nullable=False),
        sa.Column("identifier_value", sa.String(length=64), nullable=False),
        sa.Column("patch", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_outbox")),
    )
    op.create_index(
        "ix_directory_outbox_state_next_attempt_at",
        "directory_outbox",
        ["state", "next_attempt_at"],
        unique=False,
    )
    op.create_index("ix_directory_outbox_address", "directory_outbox", ["address"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_directory_outbox_address", table_name="directory_outbox")
    op.drop_index("ix_directory_outbox_state_next_attempt_at", table_name="directory_outbox")
    op.drop_table("directory_outbox")
