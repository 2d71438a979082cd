"""Events and their delivery attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("request_id", sa.String(100)),
        sa.Column("raw_request", sa.JSON(), nullable=False),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.Column("message", sa.JSON()),
        sa.Column("ticket_request", sa.JSON()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC),
        sa.Column("lease_owner", sa.String(120)),
        sa.Column("lease_expires_at", UTC),
        sa.Column("ticket_id", sa.BigInteger()),
        sa.Column("spp_request_id", sa.String(120)),
        sa.Column("last_error", sa.Text()),
        sa.Column("received_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("delivered_at", UTC),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("source", "dedupe_key", name="uq_events_source_dedupe_key"),
    )
    op.create_index("ix_events_status_next_attempt_at", "events", ["status", "next_attempt_at"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("http_status", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("ambiguous", sa.Boolean(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger()),
        sa.Column("spp_request_id", sa.String(120)),
        sa.Column("response_excerpt", sa.Text()),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_attempts_event_id_events", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
    )
    op.create_index("ix_attempts_event_id", "attempts", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_attempts_event_id", table_name="attempts")
    op.drop_table("attempts")
    op.drop_index("ix_events_status_next_attempt_at", table_name="events")
    op.drop_table("events")
