"""Attempt outcomes use the event statuses' words: ``retry`` becomes ``retrying``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE attempts SET outcome = 'retrying' WHERE outcome = 'retry'"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE attempts SET outcome = 'retry' WHERE outcome = 'retrying'"))
