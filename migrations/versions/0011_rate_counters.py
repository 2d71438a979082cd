"""Fixed-window counters for the sources' ``rate_limit``, shared by every process.

Revision ID: 0011
Revises: 0006
Create Date: 2026-12-06

Self-contained: it creates one new table and touches no other, so it can be re-linked after
whichever revision comes last when branches are merged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("window_start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name="pk_rate_counters"),
    )


def downgrade() -> None:
    op.drop_table("rate_counters")
