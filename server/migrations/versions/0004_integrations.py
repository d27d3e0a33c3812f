"""Integrations and privacy: tickets reported through Open311 (no camera), outbound webhooks with
their delivery log, and the evidence access log.

A ticket from Open311 has no node, camera or zone, so those columns become nullable and the
ticket records where it came from (``source``) and what the reporter gave (place, description,
photo link). On SQLite the column change rebuilds ``tickets``; foreign keys are switched off for
the rebuild, because dropping the old table with them on would cascade-delete every event,
incident and audit entry that points at a ticket.

Revision ID: 0004
Revises: 0003
Create Date: 2025-03-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
CAMERA_COLUMNS = ("node_id", "camera_id", "zone_id")


def _sqlite_foreign_keys(on: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def upgrade() -> None:
    _sqlite_foreign_keys(False)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        for column in CAMERA_COLUMNS:
            batch_op.alter_column(column, existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default="camera"))
        batch_op.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("longitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("address", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("media_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("reporter", sa.String(length=64), nullable=True))
    _sqlite_foreign_keys(True)

    op.create_table("webhook_subscriptions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("url", sa.String(length=2000), nullable=False),
    sa.Column("secret", sa.String(length=200), nullable=False),
    sa.Column("events", JSON, nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("created_by", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions"))
    )
    op.create_table("webhook_deliveries",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("subscription_id", sa.Integer(), nullable=False),
    sa.Column("transition_id", sa.Integer(), nullable=False),
    sa.Column("ticket_id", sa.Integer(), nullable=False),
    sa.Column("event", sa.String(length=32), nullable=False),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["subscription_id"], ["webhook_subscriptions.id"],
                            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
                            ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    sa.UniqueConstraint("subscription_id", "transition_id", name="uq_webhook_deliveries_subscription_transition")
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_status_next_attempt_at", ["status", "next_attempt_at"],
                              unique=False)
        batch_op.create_index("ix_webhook_deliveries_created_at", ["created_at"], unique=False)
    op.create_table("webhook_attempts",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("delivery_id", sa.Integer(), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("latency_ms", sa.Float(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"],
                            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts"))
    )
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_attempts_delivery_id", ["delivery_id"], unique=False)
    op.create_table("evidence_access",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(length=64), nullable=False),
    sa.Column("ticket_id", sa.Integer(), nullable=True),
    sa.Column("actor", sa.String(length=64), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("principal_kind", sa.String(length=8), nullable=False),
    sa.Column("client", sa.String(length=64), nullable=False),
    sa.Column("user_agent", sa.String(length=200), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_access"))
    )
    with op.batch_alter_table("evidence_access", schema=None) as batch_op:
        batch_op.create_index("ix_evidence_access_at", ["at"], unique=False)
        batch_op.create_index("ix_evidence_access_sha256", ["sha256"], unique=False)


def downgrade() -> None:
    op.drop_table("evidence_access")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.execute("DELETE FROM tickets WHERE source <> 'camera'")
    _sqlite_foreign_keys(False)
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        for column in ("reporter", "media_url", "description", "address", "longitude", "latitude", "source"):
            batch_op.drop_column(column)
        for column in CAMERA_COLUMNS:
            batch_op.alter_column(column, existing_type=sa.String(length=64), nullable=False)
    _sqlite_foreign_keys(True)
