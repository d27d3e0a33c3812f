"""Initial schema: events, tickets (one per incident) and dead letters.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        _ts("opened_at"),
        _ts("last_event_at"),
        _ts("ended_at", nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("snapshot_sha256", sa.String(64), nullable=True),
        sa.Column("latest_snapshot_sha256", sa.String(64), nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.UniqueConstraint("incident_id", name="uq_tickets_incident_id"),
    )
    op.create_index("ix_tickets_opened_at", "tickets", ["opened_at"])
    op.create_index("ix_tickets_stage_opened_at", "tickets", ["stage", "opened_at"])
    op.create_index("ix_tickets_type_opened_at", "tickets", ["type", "opened_at"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        _ts("observed_at"),
        _ts("received_at"),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("snapshot_sha256", sa.String(64), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name="fk_events_ticket_id_tickets", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_events_observed_at", "events", ["observed_at"])
    op.create_index("ix_events_ticket_id_observed_at", "events", ["ticket_id", "observed_at"])
    op.create_index("ix_events_camera_id_observed_at", "events", ["camera_id", "observed_at"])
    op.create_index("ix_events_type_observed_at", "events", ["type", "observed_at"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("received_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_received_at", "dead_letters", ["received_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("events")
    op.drop_table("tickets")
