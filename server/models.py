"""The database tables: events as received, incidents, grid tickets with their audit trail, the
registry, the versioned category table, silences, and the dead-letter shelf.

The ORM classes are the reference for the Alembic migrations (a test compares the two), and they
carry only the columns the server queries on; the whole event is also kept as JSON in
``events.payload`` so nothing the edge sent is ever lost to a schema we have not grown yet.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
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
# ... where a missing value must be SQL NULL (found by IS NULL), not JSON null
NullableJSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

ID_LENGTH = 64  # broker.topics.ID_PATTERN allows 1-64 characters
HEX32 = 32
SHA256_HEX = 64
NAME_LENGTH = 200


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
    """A grid ticket (网格工单): one situation, collecting the incidents correlation merged into it.

    ``incident_id`` is the incident that opened it. The lifecycle columns (stage, assignee, SLA
    clock, first-time stamps per stage, rework/extension counts, rating) are a summary kept by
    :mod:`gridwatch.server.tickets.lifecycle` in step with the append-only ``ticket_transitions`` audit
    trail, so lists and indicators read one row per ticket instead of replaying the trail.
    """

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(sa.String(HEX32), unique=True)
    type: Mapped[str] = mapped_column(sa.String(40))
    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    # None for a ticket a person reported (Open311): no camera saw it.
    node_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    camera_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    zone_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
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
    # -- correlation
    fingerprint: Mapped[str] = mapped_column(sa.String(SHA256_HEX), default="")
    incident_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    open_incidents: Mapped[int] = mapped_column(sa.Integer, default=0)  # started, not yet ended
    last_incident_at: Mapped[datetime] = mapped_column(UtcDateTime())  # newest incident start
    previous_ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id"), nullable=True)
    # -- classification and place
    category: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), default="")
    subcategory: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), default="")
    category_version: Mapped[int] = mapped_column(sa.Integer, default=0)
    responsible_unit: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    grid_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    community_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    street_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    district_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    # -- lifecycle
    version: Mapped[int] = mapped_column(sa.Integer, default=1)  # optimistic lock, bumped per transition
    assignee_kind: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    assignee_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    parked_from: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    extension_request: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    rework_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    extension_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    rating: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    registered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    handling_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    feedback_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # -- SLA clock of the current stage
    stage_entered_at: Mapped[datetime] = mapped_column(UtcDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    warn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sla_next_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)  # sweeper's next look
    escalation_level: Mapped[int] = mapped_column(sa.Integer, default=0)  # 0 grid … 3 district
    overdue: Mapped[bool] = mapped_column(sa.Boolean, default=False)  # breached any time limit
    # -- a person said it was a false alarm (误报), and why: gridwatch.server.tickets.false_alarms
    false_alarm_reason: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    false_alarm_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # -- origin: "camera" (an edge incident) or "open311" (reported by a person through an integrator)
    source: Mapped[str] = mapped_column(sa.String(16), server_default="camera")
    latitude: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    longitude: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    address: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH), nullable=True)
    description: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    media_url: Mapped[str | None] = mapped_column(sa.String(2000), nullable=True)
    reporter: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)  # the API token's name
    # The blocking vehicle's plate as the edge read it (contract PlateReading), fire-lane tickets only; retention
    # clears it (server/privacy/retention.py).
    plate: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)

    events: Mapped[list[EventRecord]] = relationship(
        back_populates="ticket", order_by="EventRecord.observed_at", lazy="raise"
    )

    __table_args__ = (
        # INCLUDE: the columns indicators.compute reads, so its scans are index-only (migration 0006).
        sa.Index("ix_tickets_opened_at", "opened_at", postgresql_include=[
            "grid_id", "community_id", "street_id", "district_id", "subcategory", "type", "stage", "created_at",
            "registered_at", "dispatched_at", "handling_at", "feedback_at", "verified_at", "closed_at", "overdue",
            "escalation_level", "rework_count", "extension_count", "rating"]),
        sa.Index("ix_tickets_stage_opened_at", "stage", "opened_at"),
        sa.Index("ix_tickets_type_opened_at", "type", "opened_at"),
        sa.Index("ix_tickets_grid_id_opened_at", "grid_id", "opened_at"),
        sa.Index("ix_tickets_community_id_opened_at", "community_id", "opened_at"),
        sa.Index("ix_tickets_street_id_opened_at", "street_id", "opened_at"),
        sa.Index("ix_tickets_sla_next_at", "sla_next_at"),
        sa.Index("ix_tickets_group", "site_id", "grid_id", "type", "last_incident_at"),
    )


class Incident(Base):
    """One edge incident and where correlation put it: a ticket, or suppressed with the reason."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(sa.String(HEX32), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(SHA256_HEX))
    type: Mapped[str] = mapped_column(sa.String(40))
    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    node_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    camera_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    zone_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    suppressed_by: Mapped[str | None] = mapped_column(sa.String(80), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        sa.Index("ix_incidents_fingerprint_id", "fingerprint", "id"),
        sa.Index("ix_incidents_ticket_id", "ticket_id"),
        sa.Index("ix_incidents_camera", "site_id", "camera_id", "type", "ended_at"),
    )


class TicketTransition(Base):
    """The audit trail: every change of a ticket's lifecycle, with who, when and why. Append-only."""

    __tablename__ = "ticket_transitions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(sa.String(32))
    from_stage: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    to_stage: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    role: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    version: Mapped[int] = mapped_column(sa.Integer)  # the ticket's version after this entry
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        sa.Index("ix_ticket_transitions_ticket_id_id", "ticket_id", "id"),
        sa.Index("ix_ticket_transitions_at", "at"),
    )


class Silence(Base):
    """A time-boxed mute: matching new incidents are stored but open no ticket. Empty matcher = any."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    site_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    grid_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    camera_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    zone_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    type: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(sa.Text)
    author: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (sa.Index("ix_silences_ends_at", "ends_at"),)


class Unit(Base):
    """A node of the registry: district, street, community, grid or department."""

    __tablename__ = "units"

    id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    parent_id: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)

    __table_args__ = (sa.Index("ix_units_parent_id", "parent_id"),)


class UnitMember(Base):
    """A person of a unit: its leader, or a member (grid worker, department staff)."""

    __tablename__ = "unit_members"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    unit_id: Mapped[str] = mapped_column(sa.ForeignKey("units.id", ondelete="CASCADE"))
    person_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    role: Mapped[str] = mapped_column(sa.String(16))

    __table_args__ = (sa.Index("ix_unit_members_unit_id_person_id", "unit_id", "person_id"),)


class ResidentVehicle(Base):
    """A resident's vehicle in the site's own list (imported as CSV): whom to ask to move a car blocking a lane."""

    __tablename__ = "resident_vehicles"

    plate: Mapped[str] = mapped_column(sa.String(16), primary_key=True)  # normalised: 京AD12345, no dot
    unit: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))            # the household, e.g. 3栋2单元1502
    person: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    phone: Mapped[str] = mapped_column(sa.String(32))


class CameraBinding(Base):
    """Which grid a camera watches."""

    __tablename__ = "cameras"

    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    camera_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    grid_id: Mapped[str] = mapped_column(sa.ForeignKey("units.id", ondelete="CASCADE"))


class CategoryTableRecord(Base):
    """One saved version of the category table (the highest is active)."""

    __tablename__ = "category_tables"

    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSONType)
    author: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class CorrelationLock(Base):
    """One row per (site, grid): new incidents of a grid are correlated one at a time, across replicas."""

    __tablename__ = "correlation_locks"

    key: Mapped[str] = mapped_column(sa.String(140), primary_key=True)


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
    # None while its incident is suppressed (inhibited or silenced): kept, but on no ticket.
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=True)
    snapshot_sha256: Mapped[str | None] = mapped_column(sa.String(SHA256_HEX), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)

    ticket: Mapped[Ticket | None] = relationship(back_populates="events", lazy="raise")

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


class Account(Base):
    """A person who logs in to the console: a username bound to a registry person and one role.

    ``person_id`` is the registry id the lifecycle sees as the actor (a grid worker's claim is
    checked against the registry with it); ``unit`` is the department of a department account.
    """

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(ID_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    person_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    display_name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), default="")
    unit: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH), nullable=True)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LoginSession(Base):
    """A console login: only the SHA-256 of the cookie value is stored, so a leaked table logs nobody in."""

    __tablename__ = "login_sessions"

    token_sha256: Mapped[str] = mapped_column(sa.String(SHA256_HEX), primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(sa.String(SHA256_HEX))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (sa.Index("ix_login_sessions_account_id", "account_id"),)


class ApiToken(Base):
    """An integrator's or edge node's Bearer token with scopes; stored as its SHA-256 only."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(ID_LENGTH), unique=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(SHA256_HEX), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class CameraZones(Base):
    """The zones and masks of one camera as an installer last saved them in the console's zone editor; the
    same document is published retained to the camera's config topic for the edge to load."""

    __tablename__ = "camera_zones"

    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    node_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    camera_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    zones: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    masks: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict, server_default="{}")  # privacy, motion
    version: Mapped[int] = mapped_column(sa.Integer)
    updated_by: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class GateOpening(Base):
    """A gate opened by hand from the console: who, why, when, and the command sent. Append-only."""

    __tablename__ = "gate_openings"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    command_id: Mapped[str] = mapped_column(sa.String(HEX32), unique=True)
    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    node_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    gate_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    reason: Mapped[str] = mapped_column(sa.String(200))
    actor: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    role: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    published: Mapped[bool] = mapped_column(sa.Boolean)

    __table_args__ = (sa.Index("ix_gate_openings_at", "at"),)


class WebhookSubscription(Base):
    """An integrator's HTTPS endpoint for ticket changes; ``events`` filters by transition action
    (``["*"]`` = all). The secret signs each body (HMAC-SHA256), so it is kept, never shown again."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    secret: Mapped[str] = mapped_column(sa.String(200))
    events: Mapped[list[str]] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_by: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WebhookDelivery(Base):
    """One ticket transition owed to one subscription: the body, its state and the retry clock.

    Kept in the database so pending retries survive a restart; ``transition_id`` is not a foreign
    key, so purging an old audit trail leaves the delivery log readable.
    """

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    transition_id: Mapped[int] = mapped_column(sa.Integer)
    ticket_id: Mapped[int] = mapped_column(sa.Integer)
    event: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)

    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "transition_id", name="uq_webhook_deliveries_subscription_transition"),
        sa.Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_created_at", "created_at"),
    )


class WebhookAttempt(Base):
    """One HTTP try of a delivery: the delivery log integrators and admins debug with."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    status_code: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(sa.Float)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)

    __table_args__ = (sa.Index("ix_webhook_attempts_delivery_id", "delivery_id"),)


class EvidenceAccess(Base):
    """Who looked at which snapshot, when and from where (privacy: evidence views are accountable)."""

    __tablename__ = "evidence_access"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.String(SHA256_HEX))
    ticket_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)  # the ticket it is evidence of
    actor: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    role: Mapped[str] = mapped_column(sa.String(16))
    principal_kind: Mapped[str] = mapped_column(sa.String(8))  # user | token | anonymous
    client: Mapped[str] = mapped_column(sa.String(64))
    user_agent: Mapped[str] = mapped_column(sa.String(200))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Why, for an access that must say so: an unblurred original opened on an edge node (a police request).
    purpose: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")

    __table_args__ = (
        sa.Index("ix_evidence_access_at", "at"),
        sa.Index("ix_evidence_access_sha256", "sha256"),
    )


class UniformExample(Base):
    """A person crop a supervisor added, from an event, as a positive or negative example of a uniform;
    the site's list per uniform is published retained for its edge nodes to refit the profile with."""

    __tablename__ = "uniform_examples"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    uniform_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    crop_sha256: Mapped[str] = mapped_column(sa.String(SHA256_HEX))
    label: Mapped[str] = mapped_column(sa.String(8))  # positive | negative
    event_id: Mapped[str] = mapped_column(sa.String(HEX32))
    added_by: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        # One crop is one example of a uniform: adding it again (or with the other label) is refused.
        sa.UniqueConstraint("site_id", "uniform_id", "crop_sha256",
                            name="uq_uniform_examples_site_id_uniform_id_crop_sha256"),
        sa.CheckConstraint("label IN ('positive', 'negative')", name="label"),
    )


class NodeSequence(Base):
    """The highest event ``seq`` seen from one edge node (server/ingest/sequence.py); the first one seen is
    the baseline, so a server that joins late does not report a node's whole history as lost."""

    __tablename__ = "node_sequences"

    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    node_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    last_seq: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SequenceGap(Base):
    """Sequence numbers a node skipped: events lost (its outbox dropped them) or not delivered yet.
    A late delivery fills its number (``filled``); the gap closes when none is ``missing``."""

    __tablename__ = "sequence_gaps"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    node_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    first_seq: Mapped[int] = mapped_column(sa.BigInteger)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger)
    missing: Mapped[int] = mapped_column(sa.BigInteger)
    filled: Mapped[list[int]] = mapped_column(JSONType, default=list)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (sa.Index("ix_sequence_gaps_site_id_node_id_closed_at", "site_id", "node_id", "closed_at"),)


class TicketDayStats(Base):
    """Indicator sums per local day (UTC+8) of ``opened_at``, community, street, district, type and
    category: what :mod:`gridwatch.server.tickets.indicators` adds up for a district-wide month in a few
    thousand rows instead of a hundred thousand tickets. Kept by a PostgreSQL trigger on ``tickets``
    at commit (migration 0006); unused on SQLite. '' stands for no community/street/district."""

    __tablename__ = "ticket_day_stats"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    subcategory: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), primary_key=True)
    district_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    street_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    community_id: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    tickets: Mapped[int] = mapped_column(sa.BigInteger)
    registered: Mapped[int] = mapped_column(sa.BigInteger)
    voided: Mapped[int] = mapped_column(sa.BigInteger)
    closed: Mapped[int] = mapped_column(sa.BigInteger)
    closed_on_time: Mapped[int] = mapped_column(sa.BigInteger)
    overdue: Mapped[int] = mapped_column(sa.BigInteger)
    escalated: Mapped[int] = mapped_column(sa.BigInteger)
    reworked: Mapped[int] = mapped_column(sa.BigInteger)
    reached_feedback: Mapped[int] = mapped_column(sa.BigInteger)
    extended: Mapped[int] = mapped_column(sa.BigInteger)
    rated: Mapped[int] = mapped_column(sa.BigInteger)
    rating_sum: Mapped[int] = mapped_column(sa.BigInteger)
    s_to_register: Mapped[float] = mapped_column(sa.Float)
    n_to_register: Mapped[int] = mapped_column(sa.BigInteger)
    s_to_dispatch: Mapped[float] = mapped_column(sa.Float)
    n_to_dispatch: Mapped[int] = mapped_column(sa.BigInteger)
    s_to_accept: Mapped[float] = mapped_column(sa.Float)
    n_to_accept: Mapped[int] = mapped_column(sa.BigInteger)
    s_handling: Mapped[float] = mapped_column(sa.Float)
    n_handling: Mapped[int] = mapped_column(sa.BigInteger)
    s_to_verify: Mapped[float] = mapped_column(sa.Float)
    n_to_verify: Mapped[int] = mapped_column(sa.BigInteger)
    s_to_close: Mapped[float] = mapped_column(sa.Float)
    n_to_close: Mapped[int] = mapped_column(sa.BigInteger)
