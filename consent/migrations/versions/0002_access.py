"""The citizens' access history: the exchanges about each citizen (by pseudonym) that
providers' security servers report from their audit logs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_events",
        sa.Column("log", sa.String(300), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("consumer", sa.String(300), nullable=False),
        sa.Column("consumer_server", sa.String(300), nullable=False),
        sa.Column("provider", sa.String(300), nullable=False),
        sa.Column("method", sa.String(320), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger, nullable=False),
        sa.Column("checkpoint_root", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("log", "seq", name="access_events_pkey"),
    )
    op.create_index("access_events_by_subject", "access_events", ["subject", "at"])


def downgrade() -> None:
    op.drop_index("access_events_by_subject", table_name="access_events")
    op.drop_table("access_events")
