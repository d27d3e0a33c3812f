"""Per-node event sequence numbers: the highest ``seq`` seen from each edge node and the gaps in
them (events a node lost or has not delivered yet), see server/ingest/sequence.py.

Revision ID: 0005
Revises: 0004
Create Date: 2025-03-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table("node_sequences",
    sa.Column("site_id", sa.String(length=64), nullable=False),
    sa.Column("node_id", sa.String(length=64), nullable=False),
    sa.Column("last_seq", sa.BigInteger(), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("site_id", "node_id", name=op.f("pk_node_sequences"))
    )
    op.create_table("sequence_gaps",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("site_id", sa.String(length=64), nullable=False),
    sa.Column("node_id", sa.String(length=64), nullable=False),
    sa.Column("first_seq", sa.BigInteger(), nullable=False),
    sa.Column("last_seq", sa.BigInteger(), nullable=False),
    sa.Column("missing", sa.BigInteger(), nullable=False),
    sa.Column("filled", JSON, nullable=False),
    sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_gaps"))
    )
    op.create_index("ix_sequence_gaps_site_id_node_id_closed_at", "sequence_gaps",
                    ["site_id", "node_id", "closed_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sequence_gaps_site_id_node_id_closed_at", table_name="sequence_gaps")
    op.drop_table("sequence_gaps")
    op.drop_table("node_sequences")
