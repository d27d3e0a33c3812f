"""Uniform examples: person crops a supervisor added from events, in the console, as positive or
negative examples of a uniform, which the server publishes for the site's edge nodes to refit with.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("uniform_examples",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("site_id", sa.String(length=64), nullable=False),
    sa.Column("uniform_id", sa.String(length=64), nullable=False),
    sa.Column("crop_sha256", sa.String(length=64), nullable=False),
    sa.Column("label", sa.String(length=8), nullable=False),
    sa.Column("event_id", sa.String(length=32), nullable=False),
    sa.Column("added_by", sa.String(length=64), nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("label IN ('positive', 'negative')", name=op.f("ck_uniform_examples_label")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_uniform_examples")),
    sa.UniqueConstraint("site_id", "uniform_id", "crop_sha256",
                        name=op.f("uq_uniform_examples_site_id_uniform_id_crop_sha256"))
    )


def downgrade() -> None:
    op.drop_table("uniform_examples")
