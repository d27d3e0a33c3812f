"""Correlation: which ticket a new incident belongs to, or why it opens none.

In order: **inhibition** (a camera with an open ``camera_offline``/``camera_tamper`` incident
suppresses its own other alerts), **silences** (time-boxed mutes with reason and author), the
**fingerprint** (site, camera, zone, type, and the tracked object where the category says it
matters: a repeat joins the open ticket, a repeat after closing opens a new ticket linked to the
old one), and **grouping** (a burst of the same type across cameras of one grid joins the grid's
open ticket while its latest incident is younger than ``group_interval_s``, as Alertmanager groups
alerts by label within its group interval).

New incidents of one grid are correlated one at a time under a row lock (``correlation_locks``),
so two server replicas never open two tickets for one situation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.broker.contract import Event, EventType
from gridwatch.server.categories import Category
from gridwatch.server.db import insert_if_absent
from gridwatch.server.models import CorrelationLock, Incident, Silence, Ticket
from gridwatch.server.registry import GridPath

INHIBITING_TYPES = (EventType.CAMERA_OFFLINE.value, EventType.CAMERA_TAMPER.value)


def fingerprint(event: Event, category: Category) -> str:
    parts = [event.site_id, event.camera_id, event.zone_id, event.type.value]
    if category.fingerprint_object and event.object is not None:
        parts.append(f"{event.object.class_name}:{event.object.track_id}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def lock_key(site_id: str, place: GridPath | None) -> str:
    return f"{site_id}/{place.grid_id if place else '-'}"


def lock(session: Session, key: str) -> None:
    """Hold the correlation lock of one (site, grid) until the transaction ends."""
    insert_if_absent(session, CorrelationLock, {"key": key}, "key")
    session.execute(sa.select(CorrelationLock.key).where(CorrelationLock.key == key).with_for_update())


@dataclass(frozen=True)
class Decision:
    """Where a new incident goes: ``ticket_id`` (existing), ``suppressed_by``, or a new ticket."""

    ticket_id: int | None = None
    via: str | None = None  # "fingerprint" or "group" when it joined an open ticket
    suppressed_by: str | None = None
    previous_ticket_id: int | None = None  # for a new ticket: the closed one it repeats


class Correlator:
    """Decides for the new incidents of one ingest batch (under their grids' locks).

    Silences and camera states are read once per batch; the fingerprint and group lookups are
    indexed queries. ``opened`` remembers tickets this batch opened, so a second incident with the
    same fingerprint in the same batch joins the first one's ticket.
    """

    def __init__(self, session: Session, now: datetime, open_stages: tuple[str, ...],
                 cameras: set[tuple[str, str]]) -> None:
        self.session = session
        self.open_stages = open_stages
        self.silences = session.scalars(
            sa.select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now).order_by(Silence.id)).all()
        self.inhibitors: dict[tuple[str, str], str] = {}
        if cameras:
            for row in session.execute(
                sa.select(Incident.site_id, Incident.camera_id, Incident.incident_id).where(
                    Incident.camera_id.in_(sorted({c for _, c in cameras})),
                    Incident.type.in_(INHIBITING_TYPES), Incident.ended_at.is_(None))):
                self.inhibitors.setdefault((row.site_id, row.camera_id), row.incident_id)
        self.opened: dict[str, int] = {}

    def decide(self, incident: Incident | Any, category: Category, place: GridPath | None) -> Decision:
        if incident.type not in INHIBITING_TYPES:
            inhibitor = self.inhibitors.get((incident.site_id, incident.camera_id))
            if inhibitor is not None:
                return Decision(suppressed_by=f"inhibited:{inhibitor}")
        grid = place.grid_id if place else None
        for silence in self.silences:
            matchers = ((silence.site_id, incident.site_id), (silence.camera_id, incident.camera_id),
                        (silence.zone_id, incident.zone_id), (silence.type, incident.type), (silence.grid_id, grid))
            if all(want is None or want == have for want, have in matchers):
                return Decision(suppressed_by=f"silence:{silence.id}")
        if incident.fingerprint in self.opened:
            return Decision(ticket_id=self.opened[incident.fingerprint], via="fingerprint")
        previous = self.session.execute(
            sa.select(Ticket.id, Ticket.stage).join(Incident, Incident.ticket_id == Ticket.id)
            .where(Incident.fingerprint == incident.fingerprint, Incident.id != incident.id)
            .order_by(Incident.id.desc()).limit(1)).first()
        if previous is not None and previous.stage in self.open_stages:
            return Decision(ticket_id=previous.id, via="fingerprint")
        if category.group_by_grid and grid is not None and category.group_interval_s > 0:
            since = incident.started_at - timedelta(seconds=category.group_interval_s)
            grouped = self.session.scalar(
                sa.select(Ticket.id).where(
                    Ticket.site_id == incident.site_id, Ticket.grid_id == grid, Ticket.type == incident.type,
                    Ticket.last_incident_at >= since, Ticket.stage.in_(self.open_stages))
                .order_by(Ticket.last_incident_at.desc()).limit(1))
            if grouped is not None:
                return Decision(ticket_id=grouped, via="group")
        return Decision(previous_ticket_id=previous.id if previous is not None else None)
