"""imap

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:43:57.207435
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "subscriptions",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_subscriptions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "name", name=op.f("pk_subscriptions")),
    )
    op.create_table(
        "expunged",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("folder_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name=op.f("fk_expunged_folder_id_folders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expunged")),
    )
    with op.batch_alter_table("expunged", schema=None) as batch_op:
        batch_op.create_index("ix_expunged_folder_modseq", ["folder_id", "modseq"], unique=False)

    op.create_table(
        "user_seen",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_user_seen_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_user_seen_user_id_users")),
        sa.PrimaryKeyConstraint("message_id", "user_id", name=op.f("pk_user_seen")),
    )


def downgrade() -> None:

    op.drop_table("user_seen")
    with op.batch_alter_table("expunged", schema=None) as batch_op:
        batch_op.drop_index("ix_expunged_folder_modseq")

    op.drop_table("expunged")
    op.drop_table("subscriptions")
