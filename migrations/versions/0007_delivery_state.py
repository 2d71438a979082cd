"""Delivery paused for every process while SPP refuses the API token: one shared row.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
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
        "delivery_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("paused_since", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.String(40)),
        sa.Column("http_status", sa.Integer()),
        sa.Column("next_probe_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_state"),
    )


def downgrade() -> None:
    op.drop_table("delivery_state")
