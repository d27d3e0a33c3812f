"""False alarms (误报): the reason a person marked a camera's ticket as a false alarm, and when, for the
weekly false-alarm rate per rule, camera and zone (gridwatch.server.tickets.false_alarms).

Revision ID: 0009_false_alarms
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_false_alarms"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("false_alarm_reason", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("false_alarm_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("false_alarm_at")
        batch.drop_column("false_alarm_reason")
