"""One-time signature tokens (Mailgun), so that a replayed signature is refused across processes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
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
        "seen_tokens",
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("token", sa.String(255), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "token", name="pk_seen_tokens"),
    )
    op.create_index("ix_seen_tokens_seen_at", "seen_tokens", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_tokens_seen_at", table_name="seen_tokens")
    op.drop_table("seen_tokens")
