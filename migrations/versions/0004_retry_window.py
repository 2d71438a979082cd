"""Where BRIDGE_MAX_ATTEMPTS and the 72 h limit count from: receipt, or the last replay.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("retry_window_start", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("attempts_at_window_start", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE events SET retry_window_start = received_at")
    with op.batch_alter_table("events") as batch:
        batch.alter_column("retry_window_start", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("attempts_at_window_start")
        batch.drop_column("retry_window_start")
