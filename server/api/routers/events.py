"""What ingest stored and refused: camera events (a page, per-hour counts, one by id) and dead letters.

A grid worker sees only the events of tickets in their grids (:func:`~gridwatch.server.api.auth.visible_grids`).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from starlette.exceptions import HTTPException

from gridwatch.server.api import auth
from gridwatch.server.api.deps import Limit, Offset, SessionDep, page
from gridwatch.server.api.schemas import DeadLetterOut, ErrorResponse, EventOut, HourlyCount, Page, RowIdQuery
from gridwatch.server.models import DeadLetter, EventRecord, Ticket

router = APIRouter(prefix="/api")


@router.get("/events", response_model=Page[EventOut])
def list_events(
    session: SessionDep,
    principal: auth.CurrentPrincipal,
    event_type: Annotated[str | None, Query(alias="type")] = None,
    site_id: str | None = None,
    camera_id: str | None = None,
    ticket_id: RowIdQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[EventOut]:
    query = sa.select(EventRecord).order_by(EventRecord.observed_at.desc(), EventRecord.id.desc())
    if event_type:
        query = query.where(EventRecord.type == event_type)
    if site_id:
        query = query.where(EventRecord.site_id == site_id)
    if camera_id:
        query = query.where(EventRecord.camera_id == camera_id)
    if ticket_id is not None:
        query = query.where(EventRecord.ticket_id == ticket_id)
    grids = auth.visible_grids(session, principal)
    if grids is not None:
        query = query.join(Ticket, EventRecord.ticket_id == Ticket.id).where(Ticket.grid_id.in_(grids))
    rows, total = page(session, query, limit, offset)
    return Page[EventOut](items=[EventOut.model_validate(r) for r in rows], total=total,
                          limit=limit, offset=offset)


@router.get("/events/hourly", response_model=list[HourlyCount])
def events_per_hour(request: Request, session: SessionDep, principal: auth.CurrentPrincipal,
                    hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24) -> list[HourlyCount]:
    """Events per hour (UTC hour starts) over the last ``hours``, every hour listed, for the charts."""
    now = request.app.state.clock.now().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=hours - 1)
    query = sa.select(EventRecord.observed_at).where(EventRecord.observed_at >= start)
    grids = auth.visible_grids(session, principal)
    if grids is not None:
        query = query.join(Ticket, EventRecord.ticket_id == Ticket.id).where(Ticket.grid_id.in_(grids))
    counts = Counter(at.replace(minute=0, second=0, microsecond=0) for at in session.scalars(query))
    return [HourlyCount(hour=start + timedelta(hours=n), events=counts.get(start + timedelta(hours=n), 0))
            for n in range(hours)]


@router.get("/events/{event_id}", response_model=EventOut, responses={404: {"model": ErrorResponse}})
def get_event(event_id: str, session: SessionDep, principal: auth.CurrentPrincipal) -> EventOut:
    row = session.scalar(sa.select(EventRecord).where(EventRecord.event_id == event_id))
    grids = auth.visible_grids(session, principal)
    if row is not None and grids is not None:
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
        row = row if ticket is not None and ticket.grid_id in grids else None
    if row is None:
        raise HTTPException(404, f"no event {event_id}")
    return EventOut.model_validate(row)


@router.get("/dead-letters", response_model=Page[DeadLetterOut], dependencies=[auth.require_roles(*auth.MANAGERS)])
def list_dead_letters(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> Page[DeadLetterOut]:
    query = sa.select(DeadLetter).order_by(DeadLetter.id.desc())
    rows, total = page(session, query, limit, offset)
    return Page[DeadLetterOut](items=[DeadLetterOut.from_row(r) for r in rows], total=total,
                               limit=limit, offset=offset)
