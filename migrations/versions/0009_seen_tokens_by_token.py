"""One-time signature tokens are remembered by token alone, not per source.

Per source, a signature captured at one Mailgun source could be replayed, with a forged message,
to another source with the same signing key. A token that two sources have seen keeps its first
sighting.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "DELETE FROM seen_tokens WHERE EXISTS (SELECT 1 FROM seen_tokens AS earlier"
            " WHERE earlier.token = seen_tokens.token AND (earlier.seen_at < seen_tokens.seen_at"
            " OR (earlier.seen_at = seen_tokens.seen_at AND earlier.source < seen_tokens.source)))"
        )
    )
    with op.batch_alter_table("seen_tokens") as batch:
        batch.drop_constraint("pk_seen_tokens", type_="primary")
        batch.create_primary_key("pk_seen_tokens", ["token"])


def downgrade() -> None:
    with op.batch_alter_table("seen_tokens") as batch:
        batch.drop_constraint("pk_seen_tokens", type_="primary")
        batch.create_primary_key("pk_seen_tokens", ["source", "token"])
