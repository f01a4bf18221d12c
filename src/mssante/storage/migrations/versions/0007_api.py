"""http api: idempotency keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_idempotency",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_idempotency")),
        sa.UniqueConstraint("mailbox", "key", name="uq_api_idempotency_mailbox_key"),
    )
    op.create_index(
        op.f("ix_api_idempotency_queue_id"), "api_idempotency", ["queue_id"], unique=False
    )
    op.create_index(
        "ix_api_idempotency_expires_at", "api_idempotency", ["expires_at"], unique=False
    )
    # The API lists a folder newest first with a keyset cursor on (internal_date, id).
    op.create_index(
        "ix_messages_folder_date", "messages", ["folder_id", "internal_date", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_messages_folder_date", table_name="messages")
    op.drop_index("ix_api_idempotency_expires_at", table_name="api_idempotency")
    op.drop_index(op.f("ix_api_idempotency_queue_id"), table_name="api_idempotency")
    op.drop_table("api_idempotency")
