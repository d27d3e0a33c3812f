"""Correlation: which ticket a new incident belongs to, or why it opens none.

In order: **inhibition** (a camera with an open ``camera_offline``/``camera_tamper`` incident
suppresses its own other alerts), **silences** (time-boxed mutes with reason and author), the
**fingerprint** (site, camera, zone, type, and the tracked object where the category says it
matters: a repeat joins the open ticket, a repeat after closing opens a new ticket linked to the
old one), and **grouping** (a burst of the same type across cameras of one grid joins the grid's
open ticket while its latest incident is younger than ``group_interval_s``, as Alertmanager groups
alerts by label within its group interval).

**Group wait** is Alertmanager's ``group_wait`` for tickets: what a ticket "notifies" is its
registration (立案: the published ``register`` transition, the start of its dispatch clock), so a
new group's ticket is held in ``reported`` for ``group_wait_s`` after it opened, even when its
registration condition is met, while the rest of a burst (other cameras of the grid) joins it; the
first event after the wait registers it with the whole burst in. A group whose incidents have all
ended has nothing left to wait for and is decided at once. Events, not a timer, end the wait: an
edge sends an ``update`` every ``update_every_s`` while a situation lasts, so registration comes at
most that long after the wait.

New incidents of one grid are correlated one at a time under a row lock (``correlation_locks``),
so two server replicas never open two tickets for one situation. Everything a batch's decisions
read (places, silences, inhibitors, the latest ticket per fingerprint, the open tickets that could
group) is fetched in a few set-based queries once the locks are held, not per incident: two
queries per new incident were a tenth of ingest's time at thousands of events a second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from gridwatch.broker.contract import Event, EventType
from gridwatch.server.db import insert_if_absent
from gridwatch.server.models import CameraBinding, CorrelationLock, Incident, Silence, Ticket, Unit
from gridwatch.server.registry.grids import GridPath
from gridwatch.server.tickets.categories import Category

INHIBITING_TYPES = (EventType.CAMERA_OFFLINE.value, EventType.CAMERA_TAMPER.value)


def fingerprint(event: Event, category: Category) -> str:
    parts = [event.site_id, event.camera_id, event.zone_id, event.type.value]
    if category.fingerprint_object and event.object is not None:
        parts.append(f"{event.object.class_name}:{event.object.track_id}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def locate_all(session: Session, cameras: set[tuple[str, str]]) -> dict[tuple[str, str], GridPath | None]:
    """:func:`gridwatch.server.registry.grids.locate` for many cameras: one query per registry level."""
    bindings = {(r.site_id, r.camera_id): r.grid_id for r in session.execute(
        sa.select(CameraBinding.site_id, CameraBinding.camera_id, CameraBinding.grid_id).where(
            CameraBinding.camera_id.in_(sorted({c for _, c in cameras}))))}
    chains = {camera: [bindings[camera]] for camera in cameras if camera in bindings}
    for _ in range(3):
        ends = {chain[-1] for chain in chains.values() if chain[-1] is not None}
        parents = dict(session.execute(sa.select(Unit.id, Unit.parent_id).where(Unit.id.in_(sorted(ends)))).all())
        for chain in chains.values():
            chain.append(parents.get(chain[-1]) if chain[-1] is not None else None)
    return {camera: GridPath(*chains[camera]) if camera in chains else None for camera in cameras}


def waiting(ticket: Any, category: Category, now: datetime) -> bool:
    """True while a grid group's ticket is held back from registration for the rest of its burst."""
    return (category.group_by_grid and category.group_wait_s > 0 and ticket.grid_id is not None
            and ticket.open_incidents > 0 and now < ticket.created_at + timedelta(seconds=category.group_wait_s))


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

    Reads what the batch's decisions need up front (see the module docstring); ``opened`` records
    the tickets this batch opens, so a later incident of the batch with the same fingerprint, or of
    the same grid and type, joins them exactly as if they had been read back from the database.
    """

    def __init__(self, session: Session, now: datetime, open_stages: tuple[str, ...],
                 incidents: list[tuple[Any, Category, GridPath | None]]) -> None:
        self.open_stages = open_stages
        self.silences = session.scalars(
            sa.select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now).order_by(Silence.id)).all()
        self.inhibitors: dict[tuple[str, str], str] = {}
        cameras = sorted({i.camera_id for i, _, _ in incidents})
        if cameras:
            for row in session.execute(
                sa.select(Incident.site_id, Incident.camera_id, Incident.incident_id).where(
                    Incident.camera_id.in_(cameras), Incident.type.in_(INHIBITING_TYPES),
                    Incident.ended_at.is_(None))):
                self.inhibitors.setdefault((row.site_id, row.camera_id), row.incident_id)
        self.previous = self._latest_by_fingerprint(session, sorted({i.fingerprint for i, _, _ in incidents}))
        self.groups = self._open_groups(session, incidents)
        self.opened: dict[str, int] = {}

    @staticmethod
    def _latest_by_fingerprint(session: Session, fingerprints: list[str]) -> dict[str, tuple[int, str]]:
        """fingerprint -> (ticket id, stage) of the newest incident with that fingerprint and a ticket."""
        if not fingerprints:
            return {}
        newest = (sa.select(Incident.fingerprint, Ticket.id, Ticket.stage,
                            sa.func.row_number().over(partition_by=Incident.fingerprint,
                                                      order_by=Incident.id.desc()).label("n"))
                  .join(Ticket, Incident.ticket_id == Ticket.id)
                  .where(Incident.fingerprint.in_(fingerprints)).subquery())
        rows = session.execute(sa.select(newest.c.fingerprint, newest.c.id, newest.c.stage).where(newest.c.n == 1))
        return {r.fingerprint: (r.id, r.stage) for r in rows}

    def _open_groups(self, session: Session,
                     incidents: list[tuple[Any, Category, GridPath | None]]) -> dict[tuple[str, str, str], list]:
        """(site, grid, type) -> [(last_incident_at, ticket id)] of open tickets recent enough to group."""
        since = {}
        for incident, category, place in incidents:
            if category.group_by_grid and place is not None and category.group_interval_s > 0:
                key = (incident.site_id, place.grid_id, incident.type)
                start = incident.started_at - timedelta(seconds=category.group_interval_s)
                since[key] = min(start, since.get(key, start))
        groups: dict[tuple[str, str, str], list] = {key: [] for key in since}
        if not since:
            return groups
        rows = session.execute(
            sa.select(Ticket.id, Ticket.site_id, Ticket.grid_id, Ticket.type, Ticket.last_incident_at).where(
                Ticket.grid_id.in_(sorted({g for _, g, _ in since})), Ticket.stage.in_(self.open_stages),
                Ticket.last_incident_at >= min(since.values())))
        for row in rows:
            key = (row.site_id, row.grid_id, row.type)
            if key in groups:
                groups[key].append((row.last_incident_at, row.id))
        return groups

    def record_open(self, incident: Any, place: GridPath | None, ticket_id: int) -> None:
        """A ticket this batch opened for ``incident``: later incidents may join it."""
        self.opened[incident.fingerprint] = ticket_id
        key = (incident.site_id, place.grid_id if place else None, incident.type)
        if key in self.groups:
            self.groups[key].append((incident.started_at, ticket_id))

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
        previous = self.previous.get(incident.fingerprint)
        if previous is not None and previous[1] in self.open_stages:
            return Decision(ticket_id=previous[0], via="fingerprint")
        if category.group_by_grid and grid is not None and category.group_interval_s > 0:
            since = incident.started_at - timedelta(seconds=category.group_interval_s)
            recent = [c for c in self.groups.get((incident.site_id, grid, incident.type), []) if c[0] >= since]
            if recent:
                return Decision(ticket_id=max(recent)[1], via="group")
        return Decision(previous_ticket_id=previous[0] if previous is not None else None)
