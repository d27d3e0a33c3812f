"""Retention: personal data is kept only as long as its kind needs, then purged.

One policy per data kind (days in :class:`~gridwatch.server.settings.ServerSettings`, 0 = keep):
events, snapshot files and event clips (clips age with the snapshot limit), the audit trail of closed
tickets, dead letters, the evidence access log, finished webhook deliveries, and the plate numbers on
fire-lane tickets (the number, its crop and the plate in the ticket's events go; the ticket stays).
Nothing that is evidence of a ticket still being worked on goes, whatever its age: events of open
tickets, and the snapshots and clips an open ticket or its events point to. The same :func:`purge` runs
periodically in the server (:func:`purger`) and from ``gridwatch server purge [--dry-run]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from gridwatch.server.clock import Clock
from gridwatch.server.ingest.clips import ClipStore
from gridwatch.server.ingest.snapshots import SHA256_RE, SnapshotStore
from gridwatch.server.models import (
    DeadLetter,
    EventRecord,
    EvidenceAccess,
    Ticket,
    TicketTransition,
    WebhookDelivery,
)
from gridwatch.server.periodic import PeriodicJob
from gridwatch.server.settings import ServerSettings
from gridwatch.server.tickets.stages import Stage

log = logging.getLogger(__name__)

# A ticket in one of these is finished: its events and audit trail may age out.
FINISHED = (Stage.CLOSED.value, Stage.EVALUATED.value, Stage.VOIDED.value)
KINDS = ("events", "snapshots", "clips", "audit", "dead_letters", "evidence_log", "webhook_deliveries", "plates")


@dataclass(frozen=True)
class Policy:
    """Days to keep each kind (0 = forever)."""

    events: int
    snapshots: int
    audit: int
    dead_letters: int
    evidence_log: int
    webhook_deliveries: int
    plates: int = 0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Policy:
        return cls(events=settings.retention_events_days, snapshots=settings.retention_snapshots_days,
                   audit=settings.retention_audit_days, dead_letters=settings.retention_dead_letters_days,
                   evidence_log=settings.retention_evidence_log_days,
                   webhook_deliveries=settings.retention_webhook_deliveries_days,
                   plates=settings.retention_plates_days)


def _finished_tickets() -> sa.Select[tuple[int]]:
    return sa.select(Ticket.id).where(Ticket.stage.in_(FINISHED))


def _statements(policy: Policy, now: datetime) -> Iterator[tuple[str, sa.ColumnElement[bool], type]]:
    """(kind, which rows go, table) for every row-kind with a limit."""
    def cutoff(days: int) -> datetime:
        return now - timedelta(days=days)

    if policy.events:
        yield "events", sa.and_(EventRecord.received_at < cutoff(policy.events),
                                sa.or_(EventRecord.ticket_id.is_(None),
                                       EventRecord.ticket_id.in_(_finished_tickets()))), EventRecord
    if policy.audit:
        closed_long_ago = sa.select(Ticket.id).where(Ticket.stage.in_(FINISHED),
                                                     Ticket.updated_at < cutoff(policy.audit))
        yield "audit", TicketTransition.ticket_id.in_(closed_long_ago), TicketTransition
    if policy.dead_letters:
        yield "dead_letters", DeadLetter.received_at < cutoff(policy.dead_letters), DeadLetter
    if policy.evidence_log:
        yield "evidence_log", EvidenceAccess.at < cutoff(policy.evidence_log), EvidenceAccess
    if policy.webhook_deliveries:
        yield "webhook_deliveries", sa.and_(WebhookDelivery.status != "pending",
                                            WebhookDelivery.created_at < cutoff(policy.webhook_deliveries)), \
            WebhookDelivery


def _protected_snapshots(session: Session) -> set[str]:
    """Snapshots that are evidence of a ticket still open: its own, its events', its handler photos."""
    open_tickets = sa.select(Ticket.id).where(Ticket.stage.not_in(FINISHED))
    keep: set[str] = set()
    for first, latest in session.execute(sa.select(Ticket.snapshot_sha256, Ticket.latest_snapshot_sha256)
                                         .where(Ticket.id.in_(open_tickets))):
        keep.update(v for v in (first, latest) if v)
    keep.update(session.scalars(sa.select(EventRecord.snapshot_sha256).where(
        EventRecord.ticket_id.in_(open_tickets), EventRecord.snapshot_sha256.is_not(None))))
    for details in session.scalars(sa.select(TicketTransition.details).where(
            TicketTransition.ticket_id.in_(open_tickets), TicketTransition.action == "feedback")):
        photo = (details or {}).get("photo_sha256")
        if photo:
            keep.add(photo)
    return keep


def _old_snapshot_files(store: SnapshotStore, days: int, now: datetime, keep: set[str]) -> list[Path]:
    if not store.root.is_dir():
        return []
    # File times are wall-clock: a test's clock set in the future must not make fresh files look old.
    limit = min(now.timestamp(), time.time()) - days * 86400
    return [path for path in store.root.glob("??/*")
            if path.is_file() and SHA256_RE.match(path.stem) and path.stem not in keep
            and path.stat().st_mtime < limit]


def _old_clip_files(store: SnapshotStore, days: int, now: datetime, session: Session) -> list[Path]:
    """Clips past the snapshot limit, except those of events of a ticket still open (evidence in use)."""
    open_tickets = sa.select(Ticket.id).where(Ticket.stage.not_in(FINISHED))
    keep = set(session.scalars(sa.select(EventRecord.event_id).where(EventRecord.ticket_id.in_(open_tickets))))
    limit = min(now.timestamp(), time.time()) - days * 86400  # wall-clock file times, as for snapshots
    return [path for path in ClipStore.beside(store).files()
            if path.stem not in keep and path.stat().st_mtime < limit]


def _purge_plates(session: Session, store: SnapshotStore, cutoff: datetime, dry_run: bool) -> int:
    """Forget the plates of tickets finished before ``cutoff``: the ticket's plate, the plate in its events'
    payloads and the plate crops; returns the tickets. (The audit trail never holds the plate or the owner's
    name and phone: ``notify_owner`` records the unit, and only its webhook delivery carries the contact.)"""
    tickets = list(session.execute(sa.select(Ticket.id, Ticket.plate).where(
        Ticket.stage.in_(FINISHED), Ticket.updated_at < cutoff, Ticket.plate.is_not(None))))
    if dry_run or not tickets:
        return len(tickets)
    ids = [t.id for t in tickets]
    crops = {t.plate.get("crop_sha256") for t in tickets}
    for event in session.scalars(sa.select(EventRecord).where(EventRecord.ticket_id.in_(ids))):
        if "plate" in (event.payload or {}):
            crops.add((event.payload["plate"] or {}).get("crop_sha256"))
            event.payload = {k: v for k, v in event.payload.items() if k != "plate"}
    session.execute(sa.update(Ticket).where(Ticket.id.in_(ids)).values(plate=None))
    session.flush()
    for sha256 in filter(None, crops):
        found = store.find(sha256)
        if found is not None:
            found[0].unlink(missing_ok=True)
    return len(ids)


def purge(session: Session, store: SnapshotStore, policy: Policy, now: datetime, *,
          dry_run: bool = False) -> dict[str, int]:
    """Delete (or with ``dry_run`` only count) what is past its time; commits; count per kind."""
    counts = dict.fromkeys(KINDS, 0)
    for kind, condition, model in _statements(policy, now):
        if dry_run:
            counts[kind] = session.scalar(sa.select(sa.func.count()).select_from(model).where(condition)) or 0
        else:
            counts[kind] = session.execute(sa.delete(model).where(condition)).rowcount
    if policy.plates:
        counts["plates"] = _purge_plates(session, store, now - timedelta(days=policy.plates), dry_run)
    if not dry_run:
        session.commit()  # rows first: a crash after this leaves files, never rows pointing at nothing new
    if policy.snapshots:
        files = _old_snapshot_files(store, policy.snapshots, now, _protected_snapshots(session))
        counts["snapshots"] = len(files)
        clips = _old_clip_files(store, policy.snapshots, now, session)  # clips age like the snapshots
        counts["clips"] = len(clips)
        if not dry_run:
            for path in files + clips:
                path.unlink(missing_ok=True)
    session.rollback()
    return counts


def purger(sessions: sessionmaker[Session], store: SnapshotStore, settings: ServerSettings,
           clock: Clock) -> PeriodicJob:
    """The periodic purge inside the server: once at start, then every ``retention_purge_interval_s``."""
    policy = Policy.from_settings(settings)

    def run() -> None:
        with sessions() as session:
            counts = purge(session, store, policy, clock.now())
        if any(counts.values()):
            log.info("retention purge: %s", ", ".join(f"{k} {v}" for k, v in counts.items() if v))

    return PeriodicJob("retention-purge", run, settings.retention_purge_interval_s)
