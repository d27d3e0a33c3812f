"""The evidence access log says why, for accesses that must: an unblurred original opened on an edge
node is logged with the purpose given (e.g. a police request number).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evidence_access", sa.Column("purpose", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("evidence_access", "purpose")
