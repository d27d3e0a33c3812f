"""The evidence access log: who viewed or downloaded which snapshot or event clip, when, from where.

Snapshots show people; every read of one is a processing of personal data that must be
accountable. ``GET /api/snapshots/{sha256}`` calls :func:`record` before it sends the bytes, and
answers ``Cache-Control: private, no-cache`` so a browser asks again (and is logged again) on each
view instead of showing a cached copy silently. Admins read the log at ``GET /api/evidence-access``.

Unblurred originals never reach the server: they stay encrypted on the edge node. Opening one there
is logged here too (:func:`record_original`, from ``POST /api/evidence-access`` by the node's token,
before the node decrypts), with the person who asked and the purpose they gave.

Event clips are video of the same people: ``GET /api/clips/{event_id}`` calls :func:`record_clip` once
per view (its first byte range; a browser's seeks within the view ask for later ranges), filed under
the clip's sha256 and its event's ticket.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.orm import Session

from gridwatch.server.models import EventRecord, EvidenceAccess, Ticket

CACHE_CONTROL = "private, no-cache"


def evidence_of(session: Session, sha256: str, ticket_id: int | None) -> int | None:
    """``ticket_id`` when the snapshot really is that ticket's evidence (its own snapshots or one of its
    events'), else None.

    The viewer names the ticket it shows (the console does, ``?ticket_id=``) and the server checks it
    by the ticket's key and the events' ticket index: searching every ticket and event for a hash would
    be a full scan at a million tickets, on every image a console draws."""
    if ticket_id is None:
        return None
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    if sha256 in (ticket.snapshot_sha256, ticket.latest_snapshot_sha256):
        return ticket_id
    return session.scalar(sa.select(EventRecord.ticket_id).where(
        EventRecord.ticket_id == ticket_id, EventRecord.snapshot_sha256 == sha256).limit(1))


def record(request: Request, sha256: str, ticket_id: int | None = None) -> None:
    """Log one read of snapshot ``sha256`` by the request's principal (committed before the bytes go),
    with the ticket it was viewed as evidence of when the viewer named one and it checks out."""
    _add(request, sha256, lambda session: evidence_of(session, sha256, ticket_id))


def is_first_range(request: Request) -> bool:
    """Whether a media request starts a view: no ``Range``, or one from byte 0 (a browser's <video>
    asks ``bytes=0-`` first, then later ranges as it plays and seeks)."""
    asked = request.headers.get("range", "").replace(" ", "")
    return not asked or asked.startswith("bytes=0-")


def record_clip(request: Request, sha256: str, event_id: str) -> None:
    """Log one view of event ``event_id``'s clip (sha256 ``sha256``), filed under the event's ticket."""
    _add(request, sha256, lambda session: session.scalar(
        sa.select(EventRecord.ticket_id).where(EventRecord.event_id == event_id).limit(1)))


def _add(request: Request, sha256: str, ticket_of: Callable[[Session], int | None]) -> None:
    principal = request.state.principal  # set by the API's authentication; None when anonymous
    state = request.app.state
    with state.sessions() as session:
        session.add(EvidenceAccess(
            sha256=sha256, ticket_id=ticket_of(session),
            actor=principal.name if principal else "anonymous", role=principal.role if principal else "",
            principal_kind=principal.kind if principal else "anonymous",
            client=(request.client.host if request.client else "?")[:64],
            user_agent=request.headers.get("user-agent", "")[:200], at=state.clock.now()))
        session.commit()


def record_original(request: Request, sha256: str, actor: str, purpose: str) -> None:
    """Log that ``actor`` is opening the unblurred original of snapshot ``sha256`` on the calling edge node."""
    principal = request.state.principal  # the node's API token (scope evidence:log)
    state = request.app.state
    with state.sessions() as session:
        session.add(EvidenceAccess(
            sha256=sha256, ticket_id=None, actor=actor, role="edge-original", principal_kind=principal.kind,
            client=f"{principal.name}@{request.client.host if request.client else '?'}"[:64],
            user_agent=request.headers.get("user-agent", "")[:200], at=state.clock.now(), purpose=purpose[:200]))
        session.commit()
