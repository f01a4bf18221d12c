"""identity: totp, throttle, machine credentials

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:36:23.856593
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_throttle")),
    )
    op.create_table(
        "machine_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=True),
        sa.Column("subject_dn", sa.String(length=1000), nullable=True),
        sa.Column("client_id", sa.String(length=100), nullable=True),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_machine_credentials_mailbox_id_mailboxes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine_credentials")),
        sa.UniqueConstraint("client_id", name=op.f("uq_machine_credentials_client_id")),
        sa.UniqueConstraint(
            "fingerprint_sha256", name=op.f("uq_machine_credentials_fingerprint_sha256")
        ),
    )
    with op.batch_alter_table("machine_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_machine_credentials_mailbox_id"), ["mailbox_id"], unique=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("totp_last_counter", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_changed_at")
        batch_op.drop_column("totp_last_counter")
        batch_op.drop_column("totp_secret")

    with op.batch_alter_table("machine_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_machine_credentials_mailbox_id"))

    op.drop_table("machine_credentials")
    op.drop_table("auth_throttle")
