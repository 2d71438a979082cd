"""Partial indexes for the worker: due events in claim order, and leases to check for expiry.

With only (status, next_attempt_at) a claim sorted every due event, so a backlog of thousands
made each claim slower than the delivery it was for. That index goes: SQLite's planner would
keep choosing it over the partial one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DUE_WHERE = sa.text("status IN ('queued', 'retrying')")
LEASED_WHERE = sa.text("status = 'delivering'")


def upgrade() -> None:
    op.drop_index("ix_events_status_next_attempt_at", "events")
    op.create_index("ix_events_due", "events", ["next_attempt_at"], sqlite_where=DUE_WHERE, postgresql_where=DUE_WHERE)
    op.create_index(
        "ix_events_leases", "events", ["lease_expires_at"], sqlite_where=LEASED_WHERE, postgresql_where=LEASED_WHERE
    )


def downgrade() -> None:
    op.drop_index("ix_events_leases", "events")
    op.drop_index("ix_events_due", "events")
    op.create_index("ix_events_status_next_attempt_at", "events", ["status", "next_attempt_at"])
