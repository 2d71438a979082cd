"""Retention: when an event's request and message were deleted, and the index of what is left to delete.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# bridge/db.py PURGEABLE_WHERE, spelled out: a migration does not import the code it migrates
PURGEABLE = sa.text("purged_at IS NULL AND status IN ('delivered', 'discarded', 'failed')")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_events_purgeable", "events", ["updated_at"], sqlite_where=PURGEABLE, postgresql_where=PURGEABLE
    )


def downgrade() -> None:
    op.drop_index("ix_events_purgeable", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("purged_at")
