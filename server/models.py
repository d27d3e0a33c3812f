"""The database tables: events as received, one ticket per incident, and the dead-letter shelf.

The ORM classes are the reference for the Alembic migrations (a test compares the two), and they
carry only the columns the server queries on; the whole event is also kept as JSON in
``events.payload`` so nothing the edge sent is ever lost to a schema we have not grown yet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, identical on SQLite and PostgreSQL, so later migrations can drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable later), plain JSON text on SQLite.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

ID_LENGTH = 64  # broker.topics.ID_PATTERN allows 1-64 characters
HEX32 = 32
SHA256_HEX = 64


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every backend.

    SQLite has no time zone type and hands back naive values; normalising here keeps API output
    and comparisons identical on SQLite and PostgreSQL.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Ticket(Base):
    """A grid ticket (网格工单): one per incident, opened by the first event that names it."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(sa.String(HEX32), unique=True)
    type: Mapped[str] = mapped_column(sa.String(40))
    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    node_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    camera_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    zone_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    # Only 'reported' for now; the full lifecycle arrives with the dispatch issue.
    stage: Mapped[str] = mapped_column(sa.String(32), default="reported")
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())  # the incident's started_at (edge clock)
    last_event_at: Mapped[datetime] = mapped_column(UtcDateTime())  # newest observed_at seen
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    event_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    snapshot_sha256: Mapped[str | None] = mapped_column(sa.String(SHA256_HEX), nullable=True)
    latest_snapshot_sha256: Mapped[str | None] = mapped_column(sa.String(SHA256_HEX), nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())  # server clock
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    events: Mapped[list[EventRecord]] = relationship(
        back_populates="ticket", order_by="EventRecord.observed_at", lazy="raise"
    )

    __table_args__ = (
        sa.Index("ix_tickets_opened_at", "opened_at"),
        sa.Index("ix_tickets_stage_opened_at", "stage", "opened_at"),
        sa.Index("ix_tickets_type_opened_at", "type", "opened_at"),
    )


class EventRecord(Base):
    """One event exactly as the edge published it; ``event_id`` is the idempotency key."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(HEX32), unique=True)
    incident_id: Mapped[str] = mapped_column(sa.String(HEX32))
    type: Mapped[str] = mapped_column(sa.String(40))
    phase: Mapped[str] = mapped_column(sa.String(16))
    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    node_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    camera_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    zone_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    snapshot_sha256: Mapped[str | None] = mapped_column(sa.String(SHA256_HEX), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)

    ticket: Mapped[Ticket] = relationship(back_populates="events", lazy="raise")

    __table_args__ = (
        sa.Index("ix_events_observed_at", "observed_at"),
        sa.Index("ix_events_ticket_id_observed_at", "ticket_id", "observed_at"),
        sa.Index("ix_events_camera_id_observed_at", "camera_id", "observed_at"),
        sa.Index("ix_events_type_observed_at", "type", "observed_at"),
    )


class DeadLetter(Base):
    """A message the server could not accept, kept byte for byte with the reason it was refused."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    reason: Mapped[str] = mapped_column(sa.Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (sa.Index("ix_dead_letters_received_at", "received_at"),)
