"""Indicators at a district's year of tickets (≈1 M): a day summary kept by a trigger, and an
index-only scan for what the summary cannot answer.

``ticket_day_stats`` holds, per local day (UTC+8) of ``opened_at`` and community / street /
district / type / category, the sums the indicators are made of (gridwatch.server.tickets.indicators). A
PostgreSQL trigger keeps it: each insert, delete, or update of a column the indicators read takes
the row's old contribution out and puts the new one in. It is a deferred constraint trigger, so it
runs at commit, after the transaction has taken all its ticket locks: a transition (one ticket)
then touches its summary row last and cannot deadlock with ingest. Ingest's per-event summary
update changes none of those columns, so it does not fire it. SQLite has the table but no trigger
(and the indicators there read the tickets directly).

``ix_tickets_opened_at`` carries the same columns (``INCLUDE``), so a grid-level query, which the
summary cannot answer, is an index-only scan instead of one heap visit per ticket.

Revision ID: 0006
Revises: 0005
Create Date: 2025-03-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# server/models.py Ticket: the same list (what gridwatch.server.tickets.indicators.compute reads besides opened_at).
INDICATOR_COLUMNS = ["grid_id", "community_id", "street_id", "district_id", "subcategory", "type", "stage",
                     "created_at", "registered_at", "dispatched_at", "handling_at", "feedback_at", "verified_at",
                     "closed_at", "overdue", "escalation_level", "rework_count", "extension_count", "rating"]
KEYS = ["day", "type", "subcategory", "district_id", "street_id", "community_id"]
SPANS = {"to_register": ("created_at", "registered_at"), "to_dispatch": ("registered_at", "dispatched_at"),
         "to_accept": ("dispatched_at", "handling_at"), "handling": ("handling_at", "feedback_at"),
         "to_verify": ("feedback_at", "verified_at"), "to_close": ("verified_at", "closed_at")}
# One ticket's contribution to each sum, over the row variable t (the same definitions as the scan in
# indicators.compute; tests/test_server_ingest.py checks that both give the same indicators).
CONTRIBUTION = {
    "tickets": "1",
    "registered": "(t.registered_at IS NOT NULL)::int",
    "voided": "(t.stage = 'voided')::int",
    "closed": "(t.closed_at IS NOT NULL)::int",
    "closed_on_time": "(t.closed_at IS NOT NULL AND t.overdue IS FALSE)::int",
    "overdue": "(t.overdue IS TRUE)::int",
    "escalated": "(t.escalation_level > 0)::int",
    "reworked": "(t.rework_count > 0)::int",
    "reached_feedback": "(t.feedback_at IS NOT NULL)::int",
    "extended": "(t.extension_count > 0)::int",
    "rated": "(t.rating IS NOT NULL)::int",
    "rating_sum": "coalesce(t.rating, 0)",
    **{k: v for name, (a, b) in SPANS.items() for k, v in (
        (f"s_{name}", f"coalesce(date_part('epoch', t.{b} - t.{a}), 0)"),
        (f"n_{name}", f"(t.{a} IS NOT NULL AND t.{b} IS NOT NULL)::int"))},
}
KEY_VALUES = ["((t.opened_at AT TIME ZONE 'UTC') + interval '8 hours')::date", "t.type", "t.subcategory",
              "coalesce(t.district_id, '')", "coalesce(t.street_id, '')", "coalesce(t.community_id, '')"]


def upgrade() -> None:
    counts = [sa.Column(name, sa.Float() if name.startswith("s_") else sa.BigInteger(), nullable=False)
              for name in CONTRIBUTION]
    op.create_table(
        "ticket_day_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("subcategory", sa.String(length=200), nullable=False),
        sa.Column("district_id", sa.String(length=64), nullable=False),
        sa.Column("street_id", sa.String(length=64), nullable=False),
        sa.Column("community_id", sa.String(length=64), nullable=False),
        *counts,
        sa.PrimaryKeyConstraint(*KEYS, name=op.f("pk_ticket_day_stats")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_tickets_opened_at", table_name="tickets")
    op.create_index("ix_tickets_opened_at", "tickets", ["opened_at"], postgresql_include=INDICATOR_COLUMNS)
    names = ", ".join(CONTRIBUTION)
    watched = ["opened_at", *INDICATOR_COLUMNS]
    sums = ", ".join(f"sum({expression})" for expression in CONTRIBUTION.values())

    def upsert(key_row: str, values: list[str]) -> str:
        keys = ", ".join(k.replace("t.", f"{key_row}.") for k in KEY_VALUES)
        added = ", ".join(f"{name} = s.{name} + excluded.{name}" for name in CONTRIBUTION)
        return (f"INSERT INTO ticket_day_stats AS s ({', '.join(KEYS)}, {names}) VALUES ({keys}, {', '.join(values)}) "
                f"ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET {added};")

    def of(row: str) -> list[str]:
        return [expression.replace("t.", f"{row}.") for expression in CONTRIBUTION.values()]

    # PL/pgSQL keeps each statement's plan across calls (a SQL function would plan it on every row).
    # A transition leaves the ticket in its day bucket: one upsert of the difference.
    same_bucket = " AND ".join(f"{k.replace('t.', 'OLD.')} IS NOT DISTINCT FROM {k.replace('t.', 'NEW.')}"
                               for k in KEY_VALUES)
    op.execute(f"""
        CREATE FUNCTION ticket_day_stats_row() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {upsert("NEW", of("NEW"))}
            ELSIF TG_OP = 'DELETE' THEN
                {upsert("OLD", [f"-({v})" for v in of("OLD")])}
            ELSIF {same_bucket} THEN
                {upsert("NEW", [f"({n}) - ({o})" for n, o in zip(of("NEW"), of("OLD"), strict=True)])}
            ELSE
                {upsert("OLD", [f"-({v})" for v in of("OLD")])}
                {upsert("NEW", of("NEW"))}
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE FUNCTION ticket_day_stats_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN TRUNCATE ticket_day_stats; RETURN NULL; END $$""")
    op.execute("""
        CREATE CONSTRAINT TRIGGER ticket_day_stats_insert_delete AFTER INSERT OR DELETE ON tickets
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ticket_day_stats_row()""")
    op.execute(f"""
        CREATE CONSTRAINT TRIGGER ticket_day_stats_update AFTER UPDATE ON tickets
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN ((OLD.{", OLD.".join(watched)}) IS DISTINCT FROM (NEW.{", NEW.".join(watched)}))
        EXECUTE FUNCTION ticket_day_stats_row()""")
    op.execute("""
        CREATE TRIGGER ticket_day_stats_truncate AFTER TRUNCATE ON tickets
        FOR EACH STATEMENT EXECUTE FUNCTION ticket_day_stats_truncate()""")
    op.execute(f"""
        INSERT INTO ticket_day_stats ({", ".join(KEYS)}, {names})
        SELECT {", ".join(KEY_VALUES)}, {sums} FROM tickets AS t GROUP BY 1, 2, 3, 4, 5, 6""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ticket_day_stats_truncate ON tickets")
        op.execute("DROP TRIGGER ticket_day_stats_update ON tickets")
        op.execute("DROP TRIGGER ticket_day_stats_insert_delete ON tickets")
        op.execute("DROP FUNCTION ticket_day_stats_truncate()")
        op.execute("DROP FUNCTION ticket_day_stats_row()")
        op.drop_index("ix_tickets_opened_at", table_name="tickets")
        op.create_index("ix_tickets_opened_at", "tickets", ["opened_at"])
    op.drop_table("ticket_day_stats")
