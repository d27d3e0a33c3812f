"""What ingest stored and refused: camera events (a page, per-hour counts, one by id) and dead letters.

A grid worker sees only the events of tickets in their grids (:func:`~gridwatch.server.api.auth.visible_grids`).

An event's person crop can be added as a uniform example (supervisors and admins): the examples live
here, next to the events they are taken from, rather than in a router of their own.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from gridwatch.broker import topics
from gridwatch.broker.topics import ID_PATTERN
from gridwatch.server.api import auth
from gridwatch.server.api.deps import Limit, Offset, SessionDep, page
from gridwatch.server.api.schemas import (
    DeadLetterOut,
    ErrorResponse,
    EventOut,
    HourlyCount,
    Page,
    RowIdQuery,
    TopicId,
)
from gridwatch.server.models import DeadLetter, EventRecord, Ticket, UniformExample
from gridwatch.server.registry import uniform_examples

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


def _visible_event(session: SessionDep, principal: auth.Principal, event_id: str) -> EventRecord:
    row = session.scalar(sa.select(EventRecord).where(EventRecord.event_id == event_id))
    grids = auth.visible_grids(session, principal)
    if row is not None and grids is not None:
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
        row = row if ticket is not None and ticket.grid_id in grids else None
    if row is None:
        raise HTTPException(404, f"no event {event_id}")
    return row


@router.get("/events/{event_id}", response_model=EventOut, responses={404: {"model": ErrorResponse}})
def get_event(event_id: str, session: SessionDep, principal: auth.CurrentPrincipal) -> EventOut:
    return EventOut.model_validate(_visible_event(session, principal, event_id))


class UniformExampleIn(BaseModel):
    uniform_id: str = Field(pattern=ID_PATTERN, description="The uniform (its id in the edge's uniform catalogue).")
    label: Literal["positive", "negative"]


class UniformExampleOut(BaseModel):
    id: int
    site_id: str
    uniform_id: str
    crop_sha256: str
    label: str
    event_id: str
    added_by: str
    added_at: datetime
    topic: str
    published: bool = False


def _example_out(row: UniformExample, published: bool = False) -> UniformExampleOut:
    return UniformExampleOut(id=row.id, site_id=row.site_id, uniform_id=row.uniform_id, crop_sha256=row.crop_sha256,
                             label=row.label, event_id=row.event_id, added_by=row.added_by, added_at=row.added_at,
                             topic=topics.uniform_examples_topic(row.site_id, row.uniform_id), published=published)


EXAMPLE_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (403, 404, 409, 422)}


@router.post("/events/{event_id}/uniform-examples", response_model=UniformExampleOut, status_code=201,
             dependencies=[auth.require_roles(*auth.MANAGERS)], responses=EXAMPLE_ERRORS)
def add_uniform_example(event_id: str, body: UniformExampleIn, request: Request, session: SessionDep,
                        principal: auth.CurrentPrincipal) -> UniformExampleOut:
    """Add the event's person crop as an example of a uniform, and publish the uniform's examples at the
    event's site (retained) so its edge nodes refit the profile."""
    event = _visible_event(session, principal, event_id)
    try:
        row = uniform_examples.add(session, event, body.uniform_id, body.label, principal.person_id,
                                   request.app.state.clock.now())
    except uniform_examples.ExampleError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    session.commit()
    publisher = request.app.state.publisher
    published = publisher is not None and publisher.send(
        topics.uniform_examples_topic(row.site_id, row.uniform_id),
        uniform_examples.payload(session, row.site_id, row.uniform_id), retain=True)
    return _example_out(row, published)


@router.get("/uniforms", response_model=list[str], dependencies=[auth.require_roles(*auth.MANAGERS)],
            responses={403: {"model": ErrorResponse}})
def list_uniforms(session: SessionDep) -> list[str]:
    """Uniform ids to offer when adding an example: those with examples or seen in courier events."""
    return uniform_examples.known_uniforms(session)


@router.get("/uniforms/{uniform_id}/examples", response_model=list[UniformExampleOut],
            dependencies=[auth.require_roles(*auth.MANAGERS)], responses={403: {"model": ErrorResponse}})
def list_uniform_examples(uniform_id: TopicId, session: SessionDep,
                          site_id: str | None = None) -> list[UniformExampleOut]:
    """A uniform's examples, oldest first, at every site or at ``site_id``."""
    return [_example_out(row) for row in uniform_examples.examples(session, uniform_id, site_id)]


@router.get("/dead-letters", response_model=Page[DeadLetterOut], dependencies=[auth.require_roles(*auth.MANAGERS)])
def list_dead_letters(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> Page[DeadLetterOut]:
    query = sa.select(DeadLetter).order_by(DeadLetter.id.desc())
    rows, total = page(session, query, limit, offset)
    return Page[DeadLetterOut](items=[DeadLetterOut.from_row(r) for r in rows], total=total,
                               limit=limit, offset=offset)
