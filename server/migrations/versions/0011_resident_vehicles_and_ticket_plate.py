"""Plates on fire-lane tickets and the residents' vehicle list (issue 23): the plate the edge read goes
on the ticket, and the site's list of residents' vehicles (plate -> unit, person, phone) tells the
property office whom to ask to move it.

Revision ID: 0011_plates
Revises: 0010_camera_masks
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011_plates"
down_revision = "0010_camera_masks"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("tickets", sa.Column("plate", JSON, nullable=True))
    op.create_table("resident_vehicles",
    sa.Column("plate", sa.String(length=16), nullable=False),
    sa.Column("unit", sa.String(length=200), nullable=False),
    sa.Column("person", sa.String(length=200), nullable=False),
    sa.Column("phone", sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint("plate", name=op.f("pk_resident_vehicles"))
    )


def downgrade() -> None:
    op.drop_table("resident_vehicles")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("plate")
