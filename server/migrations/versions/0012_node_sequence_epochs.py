"""Sequence resets: each node's outbox epoch (``Event.epoch``), the epochs it had before, and how many
times (and when, from which number) its numbering started over; see server/ingest/sequence.py.

Revision ID: 0012_node_sequence_epochs
Revises: 0011_plates
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012_node_sequence_epochs"
down_revision = "0011_plates"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("node_sequences") as table:
        table.add_column(sa.Column("epoch", sa.String(length=32), nullable=True))
        table.add_column(sa.Column("past_epochs", JSON, server_default="[]", nullable=False))
        table.add_column(sa.Column("resets", sa.Integer(), server_default="0", nullable=False))
        table.add_column(sa.Column("reset_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("seq_before_reset", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node_sequences") as table:
        for column in ("seq_before_reset", "reset_at", "resets", "past_epochs", "epoch"):
            table.drop_column(column)
