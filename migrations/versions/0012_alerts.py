"""Alerts: the throttle per alert kind and target, the failures notified, and an index of failed events.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FAILED_WHERE = sa.text("status = 'failed'")


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sending_owner", sa.String(120), nullable=True),
        sa.Column("sending_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kind", "target", name="pk_alert_state"),
    )
    op.create_table(
        "alerted_failures",
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_alerted_failures_event_id_events", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", "target", name="pk_alerted_failures"),
    )
    op.create_index(
        "ix_events_failed", "events", ["updated_at"], sqlite_where=FAILED_WHERE, postgresql_where=FAILED_WHERE
    )


def downgrade() -> None:
    op.drop_index("ix_events_failed", "events")
    op.drop_table("alerted_failures")
    op.drop_table("alert_state")
