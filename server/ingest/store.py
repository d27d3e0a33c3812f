"""Turn MQTT messages into stored rows: events, incidents correlated into tickets, or dead letters.

:func:`store_messages` is the whole ingest rule set, free of MQTT so it can be tested and reused
(replays, HTTP ingest later). It stores a batch in one transaction with a handful of set-based
statements, which is what lets one server keep up with thousands of events a second. Bad input
never raises: it is dead-lettered with a readable reason, because one malformed message must not
stop a site's event stream. Database failures do raise (after a rollback), so the MQTT consumer
leaves the batch unacknowledged and the broker delivers it again; ``event_id`` makes that harmless.

A new incident goes through :mod:`~gridwatch.server.tickets.correlation`; every event then updates its
ticket's summary, and the system's own transitions follow from it: the category's registration
condition met → registered; the situation cleared before that → voided; every camera of a
``camera_clear`` ticket reports ``end`` while it awaits verification → verified.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import pydantic_core
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from gridwatch.broker import topics
from gridwatch.broker.contract import Event, EventType, Phase, parse_event
from gridwatch.server.clock import Clock, SystemClock
from gridwatch.server.ingest import sequence
from gridwatch.server.ingest.bulk import among, insert_absent, insert_rows, update_rows
from gridwatch.server.models import DeadLetter, EventRecord, Incident, Ticket, TicketTransition
from gridwatch.server.registry import grids
from gridwatch.server.tickets import correlation
from gridwatch.server.tickets.categories import CategoryStore, Closing
from gridwatch.server.tickets.lifecycle import SystemAction, plan
from gridwatch.server.tickets.stages import OPEN_STAGES, Stage

log = logging.getLogger(__name__)

# An event is a few hundred bytes of JSON; anything this big is abuse or a bug upstream.
MAX_EVENT_BYTES = 64 * 1024
MAX_REASON_CHARS = 4000
OPEN_STAGE_VALUES = tuple(s.value for s in OPEN_STAGES)
# One statement for every new ticket (values as parameters), so SQLAlchemy compiles it once.
INSERT_TICKET = sa.insert(Ticket.__table__).returning(Ticket.__table__.c.id)


class IngestStatus(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one message; ``ticket_id`` is set for stored and duplicate events unless
    their incident is suppressed (``suppressed_by`` says why)."""

    status: IngestStatus
    event_id: str | None = None
    ticket_id: int | None = None
    ticket_created: bool = False
    reason: str | None = None
    dead_letter_id: int | None = None
    suppressed_by: str | None = None


class InvalidMessage(ValueError):
    """A message that is not a contract event for its topic; ``str()`` is the readable reason."""


# A site has a bounded set of cameras and each sends many events: parse each topic once, not per event.
_parse_topic = functools.lru_cache(maxsize=16384)(topics.parse_events_topic)


def validate_message(topic: str, payload: bytes) -> Event:
    """Check topic, size, encoding and schema, and that topic ids match the payload's ids."""
    try:
        ids = _parse_topic(topic)
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
    if (ids.site_id, ids.node_id, ids.camera_id) != (event.site_id, event.node_id, event.camera_id):
        mismatched = [
            f"{name} is {getattr(ids, name)!r} in the topic but {getattr(event, name)!r} in the payload"
            for name in ("site_id", "node_id", "camera_id")
            if getattr(ids, name) != getattr(event, name)
        ]
        raise InvalidMessage("topic/payload mismatch: " + "; ".join(mismatched))
    return event


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


@dataclass
class IngestContext:
    """What ingest needs besides the database: the category table and the server clock."""

    categories: CategoryStore = field(default_factory=CategoryStore)
    clock: Clock = field(default_factory=SystemClock)


@dataclass
class Batch:
    """The outcome of each message, in order, and the audit entries ingest wrote (to publish)."""

    outcomes: list[IngestOutcome]
    transitions: list[TicketTransition]


DEFAULT_CONTEXT = IngestContext()


def store_message(session: Session, topic: str, payload: bytes | str, *,
                  context: IngestContext | None = None) -> IngestOutcome:
    """Validate and store one message, committing the session; idempotent by ``event_id``."""
    return store_messages(session, [(topic, payload)], context=context).outcomes[0]


def store_messages(session: Session, messages: list[tuple[str, bytes | str]], *,
                   context: IngestContext | None = None) -> Batch:
    """Validate and store a batch of messages in one transaction, committing it.

    Raises only for database errors (after rolling back), never for bad input.
    """
    context = context or DEFAULT_CONTEXT
    try:
        batch = _Ingest(session, context).run(messages)
        session.commit()
    except Exception:
        session.rollback()
        raise
    for outcome in batch.outcomes:
        if outcome.status is IngestStatus.DEAD_LETTERED:
            log.warning("dead-lettered a message: %s", outcome.reason)
    return batch


class _Ingest:
    """One batch: the steps share the batch's rows, so each step is one statement for all of it."""

    def __init__(self, session: Session, context: IngestContext) -> None:
        self.session = session
        self.now = context.clock.now()
        self.version, self.table = context.categories.current(session)
        self.audit: list[dict[str, Any]] = []  # audit-trail rows, inserted together at the end
        self.merges: dict[int, list[tuple[_IncidentRow, str | None]]] = defaultdict(list)

    def run(self, messages: list[tuple[str, bytes | str]]) -> Batch:
        outcomes: list[IngestOutcome | None] = [None] * len(messages)
        letters: list[tuple[int, dict[str, Any]]] = []
        events: dict[int, Event] = {}
        first_of: dict[str, int] = {}
        for index, (topic, payload) in enumerate(messages):
            raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
            try:
                event = validate_message(topic, raw)
            except InvalidMessage as exc:
                letters.append((index, _letter(topic, raw, str(exc), self.now)))
                continue
            if event.event_id in first_of:  # the same event twice in one batch
                outcomes[index] = IngestOutcome(IngestStatus.DUPLICATE, event_id=event.event_id)
                continue
            first_of[event.event_id] = index
            events[index] = event
        incidents = self._incidents(events)
        for index, event in list(events.items()):
            row = incidents[event.incident_id]
            theirs = (row.type, row.site_id, row.node_id, row.camera_id)
            ours = (event.type, event.site_id, event.node_id, event.camera_id)
            if theirs != ours:
                reason = (f"incident {event.incident_id} already has ticket {row.ticket_id} for {'/'.join(theirs)}; "
                          f"this event says {'/'.join(ours)}")
                topic, payload = messages[index]
                raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
                letters.append((index, _letter(topic, raw, reason, self.now)))
                del events[index]
        inserted = _insert_events(self.session, [(event, incidents[event.incident_id].ticket_id)
                                                 for event in events.values()], self.now)
        sequence.observe(self.session, (e for e in events.values() if e.event_id in inserted), self.now)
        for index, event in events.items():
            row = incidents[event.incident_id]
            status = IngestStatus.STORED if event.event_id in inserted else IngestStatus.DUPLICATE
            outcomes[index] = IngestOutcome(status, event_id=event.event_id, ticket_id=row.ticket_id,
                                            ticket_created=status is IngestStatus.STORED and row.created_ticket
                                            and row.opened_by == event.event_id,
                                            suppressed_by=row.suppressed_by)
        self._fold([e for e in events.values() if e.event_id in inserted], incidents)
        if letters:
            ids = self.session.scalars(sa.insert(DeadLetter).returning(DeadLetter.id, sort_by_parameter_order=True),
                                       [row for _, row in letters]).all()
            for (index, row), letter_id in zip(letters, ids, strict=True):
                outcomes[index] = IngestOutcome(IngestStatus.DEAD_LETTERED, reason=row["reason"],
                                                dead_letter_id=letter_id)
        for index, outcome in enumerate(outcomes):  # in-batch duplicates learn their ticket now
            if outcome is not None and outcome.ticket_id is None and outcome.status is IngestStatus.DUPLICATE:
                source = outcomes[first_of[outcome.event_id]]
                outcomes[index] = IngestOutcome(IngestStatus.DUPLICATE, event_id=outcome.event_id,
                                                ticket_id=source.ticket_id, suppressed_by=source.suppressed_by)
        return Batch([o for o in outcomes if o is not None], self._store_audit())

    def _store_audit(self) -> list[TicketTransition]:
        """Insert the batch's audit-trail rows in one statement; the entries, with their ids, to publish."""
        if not self.audit:
            return []
        ids = insert_rows(self.session, TicketTransition.__table__, self.audit)
        return [TicketTransition(id=entry_id, **row) for entry_id, row in zip(ids, self.audit, strict=True)]

    # -- incidents and correlation -----------------------------------------------------------

    def _incidents(self, events: dict[int, Event]) -> dict[str, _IncidentRow]:
        """Insert the batch's unknown incidents, lock all of them, correlate the new ones."""
        earliest: dict[str, Event] = {}
        arrival: dict[str, int] = {}  # first position in the batch: ties are correlated in the order they came
        for position, event in enumerate(events.values()):
            arrival.setdefault(event.incident_id, position)
            known = earliest.get(event.incident_id)
            if known is None or (event.phase is Phase.START and known.phase is not Phase.START):
                earliest[event.incident_id] = event
        rows = []
        for incident_id in sorted(earliest):  # one order everywhere: concurrent batches cannot deadlock
            event = earliest[incident_id]
            category = self.table.for_type(event.type.value)
            rows.append({"incident_id": incident_id, "fingerprint": correlation.fingerprint(event, category),
                         "type": event.type.value, "site_id": event.site_id, "node_id": event.node_id,
                         "camera_id": event.camera_id, "zone_id": event.zone_id, "started_at": event.started_at,
                         "created_at": self.now})
        created = insert_absent(self.session, Incident, rows, "incident_id")
        found = self.session.execute(
            sa.select(Incident.id, Incident.incident_id, Incident.ticket_id, Incident.type, Incident.site_id,
                      Incident.node_id, Incident.camera_id, Incident.zone_id, Incident.fingerprint,
                      Incident.suppressed_by, Incident.ended_at, Incident.started_at)
            .where(among(self.session, Incident.incident_id, earliest)).order_by(Incident.incident_id).with_for_update()
        ).all()
        incidents = {r.incident_id: _IncidentRow(**r._asdict()) for r in found}
        fresh = sorted((incidents[i] for i in created), key=lambda r: (r.started_at, arrival[r.incident_id]))
        if not fresh:
            return incidents
        cameras = {(r.site_id, r.camera_id) for r in fresh}
        places = correlation.locate_all(self.session, cameras)
        for key in sorted({correlation.lock_key(site, places[(site, cam)]) for site, cam in cameras}):
            correlation.lock(self.session, key)
        correlator = correlation.Correlator(self.session, self.now, OPEN_STAGE_VALUES, [
            (row, self.table.for_type(row.type), places[(row.site_id, row.camera_id)]) for row in fresh])
        for row in fresh:
            self._correlate(correlator, row, earliest[row.incident_id], places[(row.site_id, row.camera_id)])
        update_rows(self.session, Incident.__table__,
                    [{"id": r.id, "ticket_id": r.ticket_id, "suppressed_by": r.suppressed_by} for r in fresh], "id")
        return incidents

    def _correlate(self, correlator: correlation.Correlator, row: _IncidentRow, event: Event,
                   place: grids.GridPath | None) -> None:
        category = self.table.for_type(row.type)
        decision = correlator.decide(row, category, place)
        if decision.suppressed_by:
            row.suppressed_by = decision.suppressed_by
        elif decision.ticket_id is not None:
            row.ticket_id = decision.ticket_id
            self.merges[decision.ticket_id].append((row, decision.via))
        else:
            values = dict(
                incident_id=row.incident_id, type=row.type, site_id=row.site_id, node_id=row.node_id,
                camera_id=row.camera_id, zone_id=event.zone_id, stage=Stage.REPORTED.value,
                opened_at=event.started_at, last_event_at=event.observed_at, event_count=0, attributes={},
                created_at=self.now, updated_at=self.now, fingerprint=row.fingerprint, incident_count=1,
                open_incidents=0, last_incident_at=row.started_at, previous_ticket_id=decision.previous_ticket_id,
                category=category.category, subcategory=category.subcategory, category_version=self.version,
                responsible_unit=category.responsible_unit, version=1, rework_count=0, extension_count=0,
                stage_entered_at=self.now, escalation_level=0, overdue=False,
                grid_id=place.grid_id if place else None, community_id=place.community_id if place else None,
                street_id=place.street_id if place else None, district_id=place.district_id if place else None,
            )
            row.ticket_id = self.session.scalar(INSERT_TICKET, values)
            correlator.record_open(row, place, row.ticket_id)
            row.created_ticket = True
            row.opened_by = event.event_id
            self.audit.append(dict(
                ticket_id=row.ticket_id, action="open", from_stage=None, to_stage=Stage.REPORTED.value,
                actor="system", role="system", at=self.now, version=1,
                details={"incident_id": row.incident_id, "camera_id": row.camera_id,
                         "previous_ticket_id": decision.previous_ticket_id}))

    # -- folding events into tickets ---------------------------------------------------------

    def _fold(self, events: list[Event], incidents: dict[str, _IncidentRow]) -> None:
        """Apply new events to incident end times and ticket summaries; then the system's transitions.

        The tickets are read as plain rows (locked) and written back with one UPDATE for all of
        them, plus one per ticket that changed stage (rare: once or twice in a ticket's life).
        """
        ended = {e.incident_id: e.ended_at or e.observed_at for e in events
                 if e.phase is Phase.END and incidents[e.incident_id].ended_at is None}
        update_rows(self.session, Incident.__table__,
                    [{"incident_id": iid, "ended_at": at} for iid, at in ended.items()], "incident_id")
        by_ticket: dict[int, list[Event]] = {ticket_id: [] for ticket_id in self.merges}
        for event in events:
            ticket_id = incidents[event.incident_id].ticket_id
            if ticket_id is not None:
                by_ticket.setdefault(ticket_id, []).append(event)
        if not by_ticket:
            return
        ids = sorted(by_ticket)
        table = Ticket.__table__
        tickets = [_TicketRow(row._mapping) for row in self.session.execute(
            sa.select(table).where(among(self.session, table.c.id, ids)).order_by(table.c.id).with_for_update())]
        still_open = dict(self.session.execute(
            sa.select(Incident.ticket_id, sa.func.count()).where(
                among(self.session, Incident.ticket_id, ids), Incident.ended_at.is_(None))
            .group_by(Incident.ticket_id)).all())
        staged: dict[int, dict[str, Any]] = {}
        for ticket in tickets:
            ticket.open_incidents = still_open.get(ticket.id, 0)
            for row, via in self.merges.get(ticket.id, []):
                ticket.incident_count += 1
                ticket.last_incident_at = max(ticket.last_incident_at, row.started_at)
                self._audit(ticket, "merge", {"incident_id": row.incident_id, "camera_id": row.camera_id,
                                              "via": via})
            for event in sorted(by_ticket[ticket.id], key=lambda e: e.observed_at):
                _apply(ticket, event, self.now)
                if change := self._system_transition(ticket, event):
                    staged.setdefault(ticket.id, {}).update(change)
        update_rows(self.session, table, [{"id": t.id, **{name: getattr(t, name) for name in SUMMARY_COLUMNS}}
                                          for t in tickets], "id")
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for ticket in tickets:
            if ticket.id in staged:
                names = tuple(sorted(staged[ticket.id]))
                by_columns[names].append({"id": ticket.id, **{name: getattr(ticket, name) for name in names}})
        for rows in by_columns.values():  # tickets the same transitions moved share one statement
            update_rows(self.session, table, rows, "id")
        _forget(self.session, ids)

    def _system_transition(self, ticket: _TicketRow, event: Event) -> dict[str, Any] | None:
        """The system's own transition this event causes, applied to ``ticket``; the columns it set."""
        category = self.table.for_type(ticket.type)
        if ticket.stage == Stage.REPORTED and category.registration.met(event, self.table.calendar.zone):
            if correlation.waiting(ticket, category, self.now):
                return None  # its group is still gathering the burst
            return self._transition(ticket, SystemAction("register", reason="registration condition met"))
        if ticket.stage == Stage.REPORTED and ticket.open_incidents == 0 and event.phase is Phase.END:
            return self._transition(ticket, SystemAction("void", reason="cleared before the registration "
                                                         "condition was met"))
        if (ticket.stage == Stage.FEEDBACK and category.closing is Closing.CAMERA_CLEAR
                and ticket.open_incidents == 0):
            return self._transition(ticket, SystemAction("verify", reason="the camera reports the situation "
                                                         "cleared"))
        return None

    def _transition(self, ticket: _TicketRow, action: SystemAction) -> dict[str, Any]:
        change = plan(ticket, action, self.table.for_type(ticket.type), self.table, self.now)
        for name, value in change.values.items():
            setattr(ticket, name, value)
        self.audit.append(change.audit)
        return change.values

    def _audit(self, ticket: _TicketRow, action: str, details: dict[str, Any]) -> None:
        """A system notice that changes no stage (an incident merged into the ticket)."""
        self.audit.append(dict(
            ticket_id=ticket.id, action=action, from_stage=ticket.stage, to_stage=ticket.stage, actor="system",
            role="system", at=self.now, version=ticket.version, details=details))


# The ticket columns folding events changes (:func:`_apply` and merges); a system transition writes its own.
SUMMARY_COLUMNS = ("event_count", "updated_at", "opened_at", "snapshot_sha256", "last_event_at", "attributes",
                   "latest_snapshot_sha256", "ended_at", "open_incidents", "incident_count", "last_incident_at",
                   "plate")


class _TicketRow:
    """A ticket's columns as plain attributes (a :class:`~gridwatch.server.tickets.lifecycle.TicketState`): what
    :func:`_apply` and lifecycle's ``plan`` read and set, without an ORM object's tracking (which cost
    more than the database's work at thousands of events/s)."""

    def __init__(self, values: Any) -> None:
        self.__dict__.update(values)


def _forget(session: Session, ticket_ids: list[int]) -> None:
    """Expire Ticket objects the caller's session already holds for these ids: the plain-SQL update
    bypassed them, and with expire_on_commit off they would otherwise keep showing the old values."""
    held = set(ticket_ids)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Ticket) and obj.id in held:
            session.expire(obj)


@dataclass
class _IncidentRow:
    id: int
    incident_id: str
    ticket_id: int | None
    type: str
    site_id: str
    node_id: str
    camera_id: str
    zone_id: str
    fingerprint: str
    suppressed_by: str | None
    ended_at: datetime | None
    started_at: datetime
    created_ticket: bool = False
    opened_by: str | None = None


def _letter(topic: str, payload: bytes, reason: str, now: datetime) -> dict[str, Any]:
    """A dead-letter row. Topic and reason go to text columns, where PostgreSQL refuses NUL: one
    such message would roll back its whole batch and be redelivered forever, so NUL is escaped."""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return {"topic": topic.replace("\x00", "\\x00"), "payload": payload,
            "reason": reason.replace("\x00", "\\x00"), "received_at": now}


# PostgreSQL: each event goes once, as its payload; the columns are read out of the stored jsonb. Half
# the database's work per event of a recordset with every column beside the payload, which parsed
# each value twice (the events insert was two thirds of ingest's database time). Same columns as
# _event_row, the portable path.
INSERT_EVENTS_PG = sa.text("""
INSERT INTO events (event_id, incident_id, type, phase, site_id, node_id, camera_id, zone_id, observed_at,
                    received_at, ticket_id, snapshot_sha256, payload)
SELECT e->>'event_id', e->>'incident_id', e->>'type', e->>'phase', e->>'site_id', e->>'node_id', e->>'camera_id',
       e->>'zone_id', CAST(e->>'observed_at' AS timestamptz), :received_at, t, e->'snapshot'->>'sha256', e
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(t integer, e jsonb)
ON CONFLICT (event_id) DO NOTHING RETURNING event_id""")


def _insert_events(session: Session, events: list[tuple[Event, int | None]], received_at: datetime) -> set[str]:
    """Store (event, ticket id) pairs whose event_id is new; return the event ids this call stored."""
    if not events:
        return set()
    if session.get_bind().dialect.name != "postgresql":
        return insert_absent(session, EventRecord, [_event_row(e, t, received_at) for e, t in events], "event_id")
    # The Rust encoder writes each payload exactly as Event.to_json (by alias), datetimes with their offset.
    document = pydantic_core.to_json([{"t": t, "e": e} for e, t in events], by_alias=True).decode()
    return set(session.scalars(INSERT_EVENTS_PG, {"rows": document, "received_at": received_at}).all())


def _event_row(event: Event, ticket_id: int | None, received_at: datetime) -> dict[str, Any]:
    return {
        "event_id": event.event_id, "incident_id": event.incident_id, "type": event.type.value,
        "phase": event.phase.value, "site_id": event.site_id, "node_id": event.node_id,
        "camera_id": event.camera_id, "zone_id": event.zone_id, "observed_at": event.observed_at,
        "received_at": received_at, "ticket_id": ticket_id,
        "snapshot_sha256": event.snapshot.sha256 if event.snapshot else None, "payload": event.to_dict(),
    }


def _apply(ticket: _TicketRow, event: Event, received_at: datetime) -> None:
    """Fold one new event into its ticket's summary; events may arrive out of order."""
    snapshot = event.snapshot.sha256 if event.snapshot else None
    ticket.event_count += 1
    ticket.updated_at = received_at
    if event.phase is Phase.START and event.incident_id == ticket.incident_id:
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
    if event.phase is Phase.END and ticket.open_incidents == 0:
        ticket.ended_at = event.ended_at or event.observed_at
    if event.plate is not None and event.type is EventType.FIRE_LANE_BLOCKED:
        ticket.plate = better_plate(ticket.plate, event.plate.to_dict())


def better_plate(held: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The plate a ticket shows: a read number beats "unreadable", and of two reads the surer one."""
    if held is None:
        return new
    rank = (new["status"] == "read", new.get("confidence", 0.0))
    return new if rank > (held["status"] == "read", held.get("confidence", 0.0)) else held
