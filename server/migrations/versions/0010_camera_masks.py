"""Camera masks: the privacy and motion masks an installer draws in the console's zone editor, saved
with the camera's zones and published with them in its camera config (broker.zones.Masks).

Revision ID: 0010_camera_masks
Revises: 0009_false_alarms
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_camera_masks"
down_revision = "0009_false_alarms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("camera_zones") as batch:
        batch.add_column(sa.Column("masks", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                                   nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("camera_zones") as batch:
        batch.drop_column("masks")
