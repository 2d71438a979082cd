"""Conversations: the delivery plan and steps of an event, its files, and the clients looked up or created.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

EVENT_COLUMNS = (
    ("plan", sa.JSON()),
    ("client_id", sa.BigInteger()),
    ("client_how", sa.String(20)),
    ("spp_message_id", sa.BigInteger()),
    ("thread_of", sa.String(40)),
    ("email_message_id", sa.String(255)),
)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name, type_ in EVENT_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_events_email_message_id", "events", ["email_message_id"])
    op.create_index("ix_events_ticket_id", "events", ["ticket_id"])
    with op.batch_alter_table("attempts") as batch:
        # every attempt made before this revision created a ticket
        batch.add_column(sa.Column("step", sa.String(20), nullable=False, server_default="ticket"))
        batch.add_column(sa.Column("client_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("message_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "attachments",
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name="fk_attachments_event_id_events", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", "number", name="pk_attachments"),
    )
    op.create_table(
        "clients",
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=True),
        sa.Column("how", sa.String(20), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("creating_owner", sa.String(120), nullable=True),
        sa.Column("creating_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("email", name="pk_clients"),
    )


def downgrade() -> None:
    op.drop_table("clients")
    op.drop_table("attachments")
    with op.batch_alter_table("attempts") as batch:
        for name in ("message_id", "client_id", "step"):
            batch.drop_column(name)
    op.drop_index("ix_events_ticket_id", "events")
    op.drop_index("ix_events_email_message_id", "events")
    with op.batch_alter_table("events") as batch:
        for name, _ in reversed(EVENT_COLUMNS):
            batch.drop_column(name)
