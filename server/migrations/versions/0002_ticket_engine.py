"""The ticket engine: incidents, correlation, lifecycle and SLA columns, audit trail, registry,
versioned category table, silences. Events of suppressed incidents have no ticket.

Existing tickets (one per incident) get an incident row each and keep their stage; the new
NOT NULL columns are filled from what each ticket already says.

Revision ID: 0002
Revises: 0001
Create Date: 2025-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

APPEND_ONLY_PG = """
CREATE FUNCTION gridwatch_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'ticket_transitions is append-only'; END $$;
CREATE TRIGGER ticket_transitions_append_only BEFORE UPDATE ON ticket_transitions
    FOR EACH ROW EXECUTE FUNCTION gridwatch_append_only();
"""
APPEND_ONLY_SQLITE = """
CREATE TRIGGER ticket_transitions_append_only BEFORE UPDATE ON ticket_transitions
BEGIN SELECT RAISE(ABORT, 'ticket_transitions is append-only'); END;
"""
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("category_tables",
    sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
    sa.Column("content", JSON, nullable=False),
    sa.Column("author", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("version", name=op.f("pk_category_tables"))
    )
    op.create_table("correlation_locks",
    sa.Column("key", sa.String(length=140), nullable=False),
    sa.PrimaryKeyConstraint("key", name=op.f("pk_correlation_locks"))
    )
    op.create_table("silences",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("site_id", sa.String(length=64), nullable=True),
    sa.Column("grid_id", sa.String(length=64), nullable=True),
    sa.Column("camera_id", sa.String(length=64), nullable=True),
    sa.Column("zone_id", sa.String(length=64), nullable=True),
    sa.Column("type", sa.String(length=40), nullable=True),
    sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("author", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_silences"))
    )
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.create_index("ix_silences_ends_at", ["ends_at"], unique=False)

    op.create_table("units",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("parent_id", sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_units"))
    )
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.create_index("ix_units_parent_id", ["parent_id"], unique=False)

    op.create_table("cameras",
    sa.Column("site_id", sa.String(length=64), nullable=False),
    sa.Column("camera_id", sa.String(length=64), nullable=False),
    sa.Column("grid_id", sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(["grid_id"], ["units.id"], name=op.f("fk_cameras_grid_id_units"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("site_id", "camera_id", name=op.f("pk_cameras"))
    )
    op.create_table("incidents",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("incident_id", sa.String(length=32), nullable=False),
    sa.Column("ticket_id", sa.Integer(), nullable=True),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("type", sa.String(length=40), nullable=False),
    sa.Column("site_id", sa.String(length=64), nullable=False),
    sa.Column("node_id", sa.String(length=64), nullable=False),
    sa.Column("camera_id", sa.String(length=64), nullable=False),
    sa.Column("zone_id", sa.String(length=64), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("suppressed_by", sa.String(length=80), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_incidents_ticket_id_tickets"),
                            ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    sa.UniqueConstraint("incident_id", name=op.f("uq_incidents_incident_id"))
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index("ix_incidents_camera", ["site_id", "camera_id", "type", "ended_at"], unique=False)
        batch_op.create_index("ix_incidents_fingerprint_id", ["fingerprint", "id"], unique=False)
        batch_op.create_index("ix_incidents_ticket_id", ["ticket_id"], unique=False)

    op.create_table("ticket_transitions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("ticket_id", sa.Integer(), nullable=False),
    sa.Column("action", sa.String(length=32), nullable=False),
    sa.Column("from_stage", sa.String(length=32), nullable=True),
    sa.Column("to_stage", sa.String(length=32), nullable=False),
    sa.Column("actor", sa.String(length=64), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("details", JSON, nullable=False),
    sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_transitions_ticket_id_tickets"),
                            ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_transitions"))
    )
    with op.batch_alter_table("ticket_transitions", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_transitions_at", ["at"], unique=False)
        batch_op.create_index("ix_ticket_transitions_ticket_id_id", ["ticket_id", "id"], unique=False)

    op.create_table("unit_members",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("unit_id", sa.String(length=64), nullable=False),
    sa.Column("person_id", sa.String(length=64), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_unit_members_unit_id_units"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_members"))
    )
    with op.batch_alter_table("unit_members", schema=None) as batch_op:
        batch_op.create_index("ix_unit_members_unit_id_person_id", ["unit_id", "person_id"], unique=False)

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("ticket_id",
               existing_type=sa.INTEGER(),
               nullable=True)

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("incident_count", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("open_incidents", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_incident_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("previous_ticket_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("category", sa.String(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("subcategory", sa.String(length=200), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("category_version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("responsible_unit", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("grid_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("community_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("street_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("district_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("assignee_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("assignee_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("parked_from", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("extension_request", JSON, nullable=True))
        batch_op.add_column(sa.Column("rework_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("extension_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("handling_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("stage_entered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("warn_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sla_next_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("overdue", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index("ix_tickets_community_id_opened_at", ["community_id", "opened_at"], unique=False)
        batch_op.create_index("ix_tickets_grid_id_opened_at", ["grid_id", "opened_at"], unique=False)
        batch_op.create_index("ix_tickets_group", ["site_id", "grid_id", "type", "last_incident_at"], unique=False)
        batch_op.create_index("ix_tickets_sla_next_at", ["sla_next_at"], unique=False)
        batch_op.create_index("ix_tickets_street_id_opened_at", ["street_id", "opened_at"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_tickets_previous_ticket_id_tickets"), "tickets",
                                    ["previous_ticket_id"], ["id"])

    tickets = sa.table("tickets", sa.column("opened_at"), sa.column("created_at"),
                       sa.column("last_incident_at"), sa.column("stage_entered_at"))
    op.execute(tickets.update().values(last_incident_at=tickets.c.opened_at,
                                       stage_entered_at=tickets.c.created_at))
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.alter_column("last_incident_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column("stage_entered_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    # One incident row per existing ticket (the founding rule was one ticket per incident).
    op.execute(
        "INSERT INTO incidents (incident_id, ticket_id, fingerprint, type, site_id, node_id, camera_id, zone_id,"
        " started_at, ended_at, created_at) SELECT incident_id, id, '', type, site_id, node_id, camera_id,"
        " zone_id, opened_at, ended_at, created_at FROM tickets"
    )
    op.execute(APPEND_ONLY_PG if op.get_bind().dialect.name == "postgresql" else APPEND_ONLY_SQLITE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ticket_transitions_append_only ON ticket_transitions")
        op.execute("DROP FUNCTION gridwatch_append_only()")
    else:
        op.execute("DROP TRIGGER ticket_transitions_append_only")
    op.execute("DELETE FROM events WHERE ticket_id IS NULL")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_previous_ticket_id_tickets"), type_="foreignkey")
        batch_op.drop_index("ix_tickets_street_id_opened_at")
        batch_op.drop_index("ix_tickets_sla_next_at")
        batch_op.drop_index("ix_tickets_group")
        batch_op.drop_index("ix_tickets_grid_id_opened_at")
        batch_op.drop_index("ix_tickets_community_id_opened_at")
        batch_op.drop_column("overdue")
        batch_op.drop_column("escalation_level")
        batch_op.drop_column("sla_next_at")
        batch_op.drop_column("warn_at")
        batch_op.drop_column("due_at")
        batch_op.drop_column("stage_entered_at")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("verified_at")
        batch_op.drop_column("feedback_at")
        batch_op.drop_column("handling_at")
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("registered_at")
        batch_op.drop_column("rating")
        batch_op.drop_column("extension_count")
        batch_op.drop_column("rework_count")
        batch_op.drop_column("extension_request")
        batch_op.drop_column("parked_from")
        batch_op.drop_column("assignee_id")
        batch_op.drop_column("assignee_kind")
        batch_op.drop_column("version")
        batch_op.drop_column("district_id")
        batch_op.drop_column("street_id")
        batch_op.drop_column("community_id")
        batch_op.drop_column("grid_id")
        batch_op.drop_column("responsible_unit")
        batch_op.drop_column("category_version")
        batch_op.drop_column("subcategory")
        batch_op.drop_column("category")
        batch_op.drop_column("previous_ticket_id")
        batch_op.drop_column("last_incident_at")
        batch_op.drop_column("open_incidents")
        batch_op.drop_column("incident_count")
        batch_op.drop_column("fingerprint")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column("ticket_id",
               existing_type=sa.INTEGER(),
               nullable=False)

    with op.batch_alter_table("unit_members", schema=None) as batch_op:
        batch_op.drop_index("ix_unit_members_unit_id_person_id")

    op.drop_table("unit_members")
    with op.batch_alter_table("ticket_transitions", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_transitions_ticket_id_id")
        batch_op.drop_index("ix_ticket_transitions_at")

    op.drop_table("ticket_transitions")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_ticket_id")
        batch_op.drop_index("ix_incidents_fingerprint_id")
        batch_op.drop_index("ix_incidents_camera")

    op.drop_table("incidents")
    op.drop_table("cameras")
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_index("ix_units_parent_id")

    op.drop_table("units")
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.drop_index("ix_silences_ends_at")

    op.drop_table("silences")
    op.drop_table("correlation_locks")
    op.drop_table("category_tables")
