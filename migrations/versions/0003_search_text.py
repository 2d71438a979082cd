"""A case-folded copy of sender and subject, so the admin page can search events by them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("search_text", sa.String(512)))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("search_text")
