"""Accounts: console logins bound to registry people, their sessions, integrators' API tokens;
the zone config of each camera as saved in the console's zone editor; gates opened by hand.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table("accounts",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("username", sa.String(length=64), nullable=False),
    sa.Column("password_hash", sa.String(length=255), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("person_id", sa.String(length=64), nullable=False),
    sa.Column("display_name", sa.String(length=200), nullable=False),
    sa.Column("unit", sa.String(length=64), nullable=True),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    sa.UniqueConstraint("username", name=op.f("uq_accounts_username"))
    )
    op.create_table("api_tokens",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=64), nullable=False),
    sa.Column("token_sha256", sa.String(length=64), nullable=False),
    sa.Column("scopes", JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
    sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
    sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256"))
    )
    op.create_table("login_sessions",
    sa.Column("token_sha256", sa.String(length=64), nullable=False),
    sa.Column("account_id", sa.Integer(), nullable=False),
    sa.Column("csrf_token", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_login_sessions_account_id_accounts"),
                            ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_login_sessions"))
    )
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_login_sessions_account_id", ["account_id"], unique=False)
    op.create_table("camera_zones",
    sa.Column("site_id", sa.String(length=64), nullable=False),
    sa.Column("node_id", sa.String(length=64), nullable=False),
    sa.Column("camera_id", sa.String(length=64), nullable=False),
    sa.Column("zones", JSON, nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_by", sa.String(length=64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("site_id", "node_id", "camera_id", name=op.f("pk_camera_zones"))
    )
    op.create_table("gate_openings",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("command_id", sa.String(length=32), nullable=False),
    sa.Column("site_id", sa.String(length=64), nullable=False),
    sa.Column("node_id", sa.String(length=64), nullable=False),
    sa.Column("gate_id", sa.String(length=64), nullable=False),
    sa.Column("reason", sa.String(length=200), nullable=False),
    sa.Column("actor", sa.String(length=64), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published", sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_openings")),
    sa.UniqueConstraint("command_id", name=op.f("uq_gate_openings_command_id"))
    )
    with op.batch_alter_table("gate_openings", schema=None) as batch_op:
        batch_op.create_index("ix_gate_openings_at", ["at"], unique=False)


def downgrade() -> None:
    op.drop_table("gate_openings")
    op.drop_table("camera_zones")
    op.drop_table("login_sessions")
    op.drop_table("api_tokens")
    op.drop_table("accounts")
