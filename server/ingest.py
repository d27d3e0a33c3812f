"""Turn one MQTT message into stored rows: an event on its incident's ticket, or a dead letter.

:func:`store_message` is the whole ingest rule set, free of MQTT so it can be tested and reused
(replays, HTTP ingest later). Bad input never raises: it is dead-lettered with a readable reason,
because one malformed message must not stop a site's event stream. Database failures do raise, so
the MQTT consumer leaves the message unacknowledged and the broker delivers it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gridwatch.broker import topics
from gridwatch.broker.contract import Event, Phase, now_utc, parse_event
from gridwatch.server.models import DeadLetter, EventRecord, Ticket

log = logging.getLogger(__name__)

# An event is a few hundred bytes of JSON; anything this big is abuse or a bug upstream.
MAX_EVENT_BYTES = 64 * 1024
MAX_REASON_CHARS = 4000
INITIAL_STAGE = "reported"


class IngestStatus(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one message; ``ticket_id`` is set for stored and duplicate events."""

    status: IngestStatus
    event_id: str | None = None
    ticket_id: int | None = None
    ticket_created: bool = False
    reason: str | None = None
    dead_letter_id: int | None = None


class InvalidMessage(ValueError):
    """A message that is not a contract event for its topic; ``str()`` is the readable reason."""


def validate_message(topic: str, payload: bytes) -> Event:
    """Check topic, size, encoding and schema, and that topic ids match the payload's ids."""
    try:
        ids = topics.parse_events_topic(topic)
    except topics.TopicError as exc:
        raise InvalidMessage(f"bad topic: {exc}") from None
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidMessage(f"payload too large: {len(payload)} bytes > {MAX_EVENT_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"payload is not UTF-8: {exc}") from None
    try:
        event = parse_event(text)
    except ValidationError as exc:
        raise InvalidMessage(f"not a gridwatch.event/1 payload: {_describe(exc)}") from None
    mismatched = [
        f"{name} is {getattr(ids, name)!r} in the topic but {getattr(event, name)!r} in the payload"
        for name in ("site_id", "node_id", "camera_id")
        if getattr(ids, name) != getattr(event, name)
    ]
    if mismatched:
        raise InvalidMessage("topic/payload mismatch: " + "; ".join(mismatched))
    return event


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def store_message(
    session: Session, topic: str, payload: bytes | str, *, received_at: datetime | None = None
) -> IngestOutcome:
    """Validate and store one message, committing the session; idempotent by ``event_id``.

    Raises only for database errors (after rolling back), never for bad input.
    """
    received_at = received_at or now_utc()
    payload = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    try:
        event = validate_message(topic, payload)
    except InvalidMessage as exc:
        return dead_letter(session, topic, payload, str(exc), received_at)
    try:
        return _store_event(session, event, received_at)
    except _IncidentConflict as exc:
        session.rollback()
        return dead_letter(session, topic, payload, str(exc), received_at)
    except Exception:
        session.rollback()
        raise


def dead_letter(
    session: Session, topic: str, payload: bytes, reason: str, received_at: datetime | None = None
) -> IngestOutcome:
    """Keep a refused message whole, with why, and commit."""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    row = DeadLetter(topic=topic, payload=bytes(payload), reason=reason, received_at=received_at or now_utc())
    try:
        session.add(row)
        session.commit()
    except Exception:
        session.rollback()
        raise
    log.warning("dead-lettered a message on %s: %s", topic, reason)
    return IngestOutcome(IngestStatus.DEAD_LETTERED, reason=reason, dead_letter_id=row.id)


class _IncidentConflict(Exception):
    """The event's incident already has a ticket for another camera or type."""


def _insert_if_absent(session: Session, model: type[Any], values: dict[str, Any], key: str) -> bool:
    """INSERT unless a row with the same unique ``key`` exists; True if this call inserted it.

    Relies on the unique constraint, not on a prior SELECT, so two ingest workers (or servers)
    racing on the same event or incident cannot both insert.
    """
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=[key])
        # RETURNING, not rowcount: drivers disagree on rowcount once RETURNING is implicit.
        return session.execute(stmt.returning(model.id)).first() is not None
    try:  # any other backend: a savepoint turns the duplicate key error into a no-op
        with session.begin_nested():
            session.execute(sa.insert(model).values(**values))
        return True
    except sa.exc.IntegrityError:
        return False


def _store_event(session: Session, event: Event, received_at: datetime) -> IngestOutcome:
    # 1. Whichever event of an incident arrives first opens its ticket (a late start attaches).
    created = _insert_if_absent(
        session,
        Ticket,
        {
            "incident_id": event.incident_id,
            "type": event.type.value,
            "site_id": event.site_id,
            "node_id": event.node_id,
            "camera_id": event.camera_id,
            "zone_id": event.zone_id,
            "stage": INITIAL_STAGE,
            "opened_at": event.started_at,
            "last_event_at": event.observed_at,
            "event_count": 0,
            "attributes": {},
            "created_at": received_at,
            "updated_at": received_at,
        },
        "incident_id",
    )
    # 2. Lock the ticket row so concurrent events of one incident update its totals in turn.
    ticket = session.scalars(
        sa.select(Ticket)
        .where(Ticket.incident_id == event.incident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    theirs = (ticket.type, ticket.site_id, ticket.node_id, ticket.camera_id)
    ours = (event.type.value, event.site_id, event.node_id, event.camera_id)
    if theirs != ours:
        raise _IncidentConflict(
            f"incident {event.incident_id} already has ticket {ticket.id} for {'/'.join(theirs)}; "
            f"this event says {'/'.join(ours)}"
        )
    # 3. The event itself; the unique event_id makes a redelivery a no-op.
    snapshot = event.snapshot.sha256 if event.snapshot else None
    inserted = _insert_if_absent(
        session,
        EventRecord,
        {
            "event_id": event.event_id,
            "incident_id": event.incident_id,
            "type": event.type.value,
            "phase": event.phase.value,
            "site_id": event.site_id,
            "node_id": event.node_id,
            "camera_id": event.camera_id,
            "zone_id": event.zone_id,
            "observed_at": event.observed_at,
            "received_at": received_at,
            "ticket_id": ticket.id,
            "snapshot_sha256": snapshot,
            "payload": event.to_dict(),
        },
        "event_id",
    )
    if not inserted:
        session.rollback()
        ticket_id = session.scalar(
            sa.select(EventRecord.ticket_id).where(EventRecord.event_id == event.event_id)
        )
        session.rollback()  # end the read transaction; the caller's session is left idle
        return IngestOutcome(IngestStatus.DUPLICATE, event_id=event.event_id, ticket_id=ticket_id)
    _apply(ticket, event, snapshot, received_at)
    session.commit()
    return IngestOutcome(
        IngestStatus.STORED, event_id=event.event_id, ticket_id=ticket.id, ticket_created=created
    )


def _apply(ticket: Ticket, event: Event, snapshot: str | None, received_at: datetime) -> None:
    """Fold one new event into its ticket's summary; events may arrive out of order."""
    ticket.event_count += 1
    ticket.updated_at = received_at
    if event.phase is Phase.START:
        ticket.opened_at = event.started_at  # the start is authoritative for when it began
        if snapshot:
            ticket.snapshot_sha256 = snapshot
    if snapshot and ticket.snapshot_sha256 is None:
        ticket.snapshot_sha256 = snapshot
    newest = event.observed_at >= ticket.last_event_at or ticket.event_count == 1
    if newest:
        ticket.last_event_at = event.observed_at
        ticket.attributes = dict(event.attributes)
        if snapshot:
            ticket.latest_snapshot_sha256 = snapshot
    if snapshot and ticket.latest_snapshot_sha256 is None:
        ticket.latest_snapshot_sha256 = snapshot
    if event.phase is Phase.END:
        ticket.ended_at = event.ended_at or event.observed_at
