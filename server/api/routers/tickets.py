"""REST for the ticket engine: tickets (list, one with its events), transitions and audit trail,
silences, registry, category table, indicators and the weekly false-alarm rates. Mounted by
:func:`gridwatch.server.api.app.create_app`.

The acting person and role are the logged-in account's (:mod:`~gridwatch.server.api.auth`), never the
request body's; the rules in :mod:`~gridwatch.server.tickets.lifecycle` check them. A grid worker sees and
acts on the tickets of their own grids only: another grid's ticket answers 404, as if absent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gridwatch.server.api import auth
from gridwatch.server.api.deps import Limit, Offset, SessionDep, page
from gridwatch.server.api.schemas import (
    NOT_FOUND,
    CategoryTableOut,
    ErrorResponse,
    OwnerOut,
    Page,
    RowId,
    SilenceIn,
    SilenceOut,
    TicketDetail,
    TicketOut,
    TransitionOut,
    TransitionResult,
)
from gridwatch.server.integrations import webhooks
from gridwatch.server.integrations.webhooks import NOTIFY_OWNER
from gridwatch.server.models import Silence, Ticket, TicketTransition
from gridwatch.server.registry import grids, vehicles
from gridwatch.server.tickets import false_alarms, indicators, lifecycle
from gridwatch.server.tickets.categories import CategoryTable

router = APIRouter(prefix="/api")


async def _document(request: Request) -> Any:
    """A request body as YAML, JSON (YAML's subset) or, for ``text/csv``, the raw text."""
    body = (await request.body()).decode("utf-8")
    if request.headers.get("content-type", "").startswith("text/csv"):
        return body
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise HTTPException(422, f"body is neither JSON nor YAML: {exc}") from None


def _invalid(exc: ValidationError | ValueError) -> HTTPException:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return HTTPException(422, f"{where}: {first['msg']}" if where else first["msg"])
    return HTTPException(422, str(exc))


# -- tickets ------------------------------------------------------------------------------------


@router.get("/tickets", response_model=Page[TicketOut])
def list_tickets(
    session: SessionDep,
    principal: auth.CurrentPrincipal,
    stage: str | None = None,
    ticket_type: Annotated[str | None, Query(alias="type")] = None,
    grid_id: str | None = None,
    community_id: str | None = None,
    street_id: str | None = None,
    assignee_id: str | None = None,
    overdue: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TicketOut]:
    query = sa.select(Ticket).order_by(Ticket.opened_at.desc(), Ticket.id.desc())
    if stage:
        query = query.where(Ticket.stage == stage)
    if ticket_type:
        query = query.where(Ticket.type == ticket_type)
    for column, value in ((Ticket.grid_id, grid_id), (Ticket.community_id, community_id),
                          (Ticket.street_id, street_id), (Ticket.assignee_id, assignee_id),
                          (Ticket.overdue, overdue)):
        if value is not None:
            query = query.where(column == value)
    grids = auth.visible_grids(session, principal)
    if grids is not None:
        query = query.where(Ticket.grid_id.in_(grids))
    rows, total = page(session, query, limit, offset)
    return Page[TicketOut](items=[TicketOut.model_validate(r) for r in rows], total=total,
                           limit=limit, offset=offset)


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, responses={404: {"model": ErrorResponse}})
def get_ticket(ticket_id: RowId, session: SessionDep, principal: auth.CurrentPrincipal) -> TicketDetail:
    ticket = session.scalar(
        sa.select(Ticket).where(Ticket.id == ticket_id).options(selectinload(Ticket.events))
    )
    grids = auth.visible_grids(session, principal)
    if ticket is None or (grids is not None and ticket.grid_id not in grids):
        raise HTTPException(404, f"no ticket {ticket_id}")
    owner = vehicles.owner_of_ticket(session, ticket.id)
    notified = session.scalar(sa.select(sa.func.count()).select_from(TicketTransition).where(
        TicketTransition.ticket_id == ticket.id, TicketTransition.action == NOTIFY_OWNER)) > 0
    return TicketDetail.model_validate(ticket).model_copy(update={
        "owner": OwnerOut(**owner.model_dump(exclude={"plate"})) if owner else None, "owner_notified": notified})


# -- lifecycle ----------------------------------------------------------------------------------

# Every operation from here on names a ticket, silence or registry that may not exist.


def _visible_ticket(session: Session, ticket_id: int, principal: auth.Principal) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    grids = auth.visible_grids(session, principal)
    if ticket is None or (grids is not None and ticket.grid_id not in grids):
        raise HTTPException(404, f"no ticket {ticket_id}")
    return ticket


@router.post("/tickets/{ticket_id}/transitions", response_model=TransitionResult, responses=NOT_FOUND)
def transition(ticket_id: RowId, body: lifecycle.TransitionBody, request: Request, session: SessionDep,
               principal: auth.CurrentPrincipal) -> TransitionResult:
    """Act on a ticket as the logged-in person (register, void, dispatch, claim, accept, feedback,
    verify, reject, close, evaluate, return, request/approve/deny_extension, park, unpark). 403 role
    or assignee, 404 not visible, 409 stage or version (someone acted first), 422 missing data."""
    if principal.kind != "user":
        raise HTTPException(403, "tickets are acted on by people: log in to the console")
    _visible_ticket(session, ticket_id, principal)
    session.rollback()
    req = lifecycle.TransitionRequest(**body.model_dump(), actor=principal.person_id,
                                      role=principal.role, unit=principal.unit)
    state = request.app.state
    _, table = state.categories.current(session)
    entry = lifecycle.apply(session, ticket_id, req, table, state.clock.now())
    state.announce([entry])
    ticket = session.get(Ticket, ticket_id, populate_existing=True)
    return TransitionResult(ticket=TicketOut.model_validate(ticket), transition=TransitionOut.model_validate(entry))


@router.post("/tickets/{ticket_id}/notify-owner", response_model=TransitionOut, responses=NOT_FOUND,
             dependencies=[auth.require_roles("admin", "supervisor", "security")])
def notify_owner(ticket_id: RowId, request: Request, session: SessionDep,
                 principal: auth.CurrentPrincipal) -> TransitionOut:
    """Ask the owner of the vehicle blocking the fire lane to move it (挪车): an audit entry ``notify_owner``
    naming the unit, delivered to the webhooks subscribed to it with the plate, person and phone added (the
    site wires one to its SMS or WeChat gateway; the audit trail, kept for years, holds no plate or phone).
    Once per ticket: 409 when already sent or when someone acted first; 422 without a read plate, an
    owner in the residents' vehicle list, or a webhook that would carry the notice."""
    ticket = _visible_ticket(session, ticket_id, principal)
    owner = vehicles.owner_of_ticket(session, ticket_id)
    if owner is None:
        plate = (ticket.plate or {}).get("text")
        raise HTTPException(422, f"ticket {ticket_id}: plate {plate} is not in the residents' vehicle list"
                            if plate else f"ticket {ticket_id}: no plate was read for it")
    if not webhooks.anyone_wants(session, NOTIFY_OWNER):
        raise HTTPException(422, "no webhook is subscribed to notify_owner: an admin wires one to the site's SMS or "
                            "WeChat gateway (POST /api/webhooks) before owners can be notified")
    already = session.scalar(sa.select(sa.func.count()).select_from(TicketTransition).where(
        TicketTransition.ticket_id == ticket_id, TicketTransition.action == NOTIFY_OWNER))
    if already:
        raise HTTPException(409, f"ticket {ticket_id}: the owner was already notified")
    version, stage = ticket.version, ticket.stage
    bumped = session.execute(sa.update(Ticket).where(Ticket.id == ticket_id, Ticket.version == version)
                             .values(version=version + 1)).rowcount
    if bumped != 1:
        session.rollback()
        raise HTTPException(409, f"ticket {ticket_id} changed meanwhile; reload it")
    entry = TicketTransition(ticket_id=ticket_id, action=NOTIFY_OWNER, from_stage=stage, to_stage=stage,
                             actor=principal.person_id, role=principal.role, at=request.app.state.clock.now(),
                             version=version + 1, details={"incident_id": ticket.incident_id, "unit": owner.unit})
    session.add(entry)
    session.commit()
    request.app.state.announce([entry])
    return TransitionOut.model_validate(entry)


@router.get("/tickets/{ticket_id}/actions", responses=NOT_FOUND)
def ticket_actions(ticket_id: RowId, session: SessionDep, principal: auth.CurrentPrincipal) -> list[dict[str, Any]]:
    """What the logged-in person may do with this ticket at its stage: ``[{action, needs}]``."""
    ticket = _visible_ticket(session, ticket_id, principal)
    if principal.kind != "user":
        return []
    return lifecycle.available(session, ticket, principal.person_id, principal.role, principal.unit)


@router.get("/tickets/{ticket_id}/transitions", response_model=list[TransitionOut], responses=NOT_FOUND)
def audit_trail(ticket_id: RowId, session: SessionDep, principal: auth.CurrentPrincipal) -> list[TransitionOut]:
    _visible_ticket(session, ticket_id, principal)
    rows = session.scalars(sa.select(TicketTransition).where(TicketTransition.ticket_id == ticket_id)
                           .order_by(TicketTransition.id))
    return [TransitionOut.model_validate(r) for r in rows]


# -- silences -----------------------------------------------------------------------------------


@router.get("/silences", response_model=list[SilenceOut], responses=NOT_FOUND)
def list_silences(request: Request, session: SessionDep, active: bool = False) -> list[SilenceOut]:
    query = sa.select(Silence).order_by(Silence.id.desc())
    if active:
        now = request.app.state.clock.now()
        query = query.where(Silence.starts_at <= now, Silence.ends_at > now)
    return [SilenceOut.model_validate(s) for s in session.scalars(query)]


@router.post("/silences", response_model=SilenceOut, status_code=201,
             dependencies=[auth.require_roles(*auth.MANAGERS)], responses=NOT_FOUND)
def create_silence(body: SilenceIn, request: Request, session: SessionDep,
                   principal: auth.CurrentPrincipal) -> SilenceOut:
    now = request.app.state.clock.now()
    starts = body.starts_at or now
    if body.ends_at <= starts:
        raise HTTPException(422, "ends_at must be after starts_at: a silence is time-boxed")
    row = Silence(**body.model_dump(exclude={"starts_at"}), starts_at=starts, created_at=now,
                  author=principal.person_id)
    session.add(row)
    session.commit()
    return SilenceOut.model_validate(row)


@router.post("/silences/{silence_id}/expire", response_model=SilenceOut,
             dependencies=[auth.require_roles(*auth.MANAGERS)], responses=NOT_FOUND)
def expire_silence(silence_id: RowId, request: Request, session: SessionDep) -> SilenceOut:
    row = session.get(Silence, silence_id)
    if row is None:
        raise HTTPException(404, f"no silence {silence_id}")
    row.ends_at = min(row.ends_at, request.app.state.clock.now())
    session.commit()
    return SilenceOut.model_validate(row)


# -- registry -----------------------------------------------------------------------------------


def _registry(session: Session) -> grids.RegistryDoc:
    doc = grids.export(session)
    if doc is None:
        raise HTTPException(404, "no registry imported yet: PUT /api/registry")
    return doc


@router.get("/registry", response_model=grids.RegistryDoc, responses=NOT_FOUND)
def get_registry(session: SessionDep) -> grids.RegistryDoc:
    return _registry(session)


@router.get("/registry.yaml", response_class=PlainTextResponse, responses=NOT_FOUND)
def get_registry_yaml(session: SessionDep) -> PlainTextResponse:
    text = yaml.safe_dump(_registry(session).model_dump(mode="json", exclude_none=True), allow_unicode=True,
                          sort_keys=False)
    return PlainTextResponse(text, media_type="application/yaml")


@router.get("/registry.csv", response_class=PlainTextResponse,
            responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}})
def get_registry_csv(session: SessionDep) -> PlainTextResponse:
    return PlainTextResponse(grids.to_csv(_registry(session)), media_type="text/csv; charset=utf-8")


@router.put("/registry", response_model=grids.RegistryDoc, dependencies=[auth.require_roles("admin")],
            responses=NOT_FOUND)
async def put_registry(request: Request) -> grids.RegistryDoc:
    """Replace the registry with a YAML or JSON document, or CSV (``Content-Type: text/csv``)."""
    data = await _document(request)
    try:
        doc = grids.from_csv(data) if isinstance(data, str) else grids.RegistryDoc.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise _invalid(exc) from None

    def store() -> None:
        with request.app.state.sessions() as session:
            grids.replace(session, doc)
            session.commit()

    await run_in_threadpool(store)
    return doc


@router.get("/registry/vehicles.csv", response_class=PlainTextResponse,
            responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}},
            dependencies=[auth.require_roles("admin", "supervisor", "security")])
def get_vehicles_csv(session: SessionDep) -> PlainTextResponse:
    """The residents' vehicle list as CSV (plate, unit, person, phone)."""
    return PlainTextResponse(vehicles.to_csv(vehicles.export(session)), media_type="text/csv; charset=utf-8")


@router.put("/registry/vehicles", dependencies=[auth.require_roles("admin")], responses=NOT_FOUND)
async def put_vehicles(request: Request) -> dict[str, int]:
    """Replace the residents' vehicle list with a CSV body (columns plate, unit, person, phone)."""
    text = (await request.body()).decode("utf-8")
    try:
        rows = vehicles.from_csv(text)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None

    def store() -> None:
        with request.app.state.sessions() as session:
            vehicles.replace(session, rows)
            session.commit()

    await run_in_threadpool(store)
    return {"vehicles": len(rows)}


# -- category table -----------------------------------------------------------------------------


@router.get("/categories", response_model=CategoryTableOut, responses=NOT_FOUND)
def get_categories(request: Request, session: SessionDep) -> CategoryTableOut:
    version, table = request.app.state.categories.current(session)
    return CategoryTableOut(version=version, table=table.model_dump(mode="json"))


@router.put("/categories", response_model=CategoryTableOut, dependencies=[auth.require_roles("admin")],
            responses=NOT_FOUND)
async def put_categories(request: Request, principal: auth.CurrentPrincipal) -> CategoryTableOut:
    """Save a new version of the category table (YAML or JSON); tickets opened before keep theirs."""
    data = await _document(request)
    try:
        table = CategoryTable.model_validate(data)
    except (ValidationError, ValueError) as exc:
        raise _invalid(exc) from None

    def store() -> int:
        with request.app.state.sessions() as session:
            return request.app.state.categories.save(session, table, principal.person_id,
                                                     request.app.state.clock.now())

    version = await run_in_threadpool(store)
    return CategoryTableOut(version=version, table=table.model_dump(mode="json"))


# -- indicators ---------------------------------------------------------------------------------


def _indicators(session: Session, by: indicators.GroupBy, period: indicators.Period, since: datetime | None,
                until: datetime | None, grid_id: str | None, community_id: str | None, street_id: str | None,
                event_type: str | None) -> list[dict[str, Any]]:
    return indicators.compute(session, group_by=by, period=period, since=since, until=until, grid_id=grid_id,
                              community_id=community_id, street_id=street_id, type=event_type)


@router.get("/indicators", responses=NOT_FOUND)
def get_indicators(session: SessionDep, by: indicators.GroupBy = "none", period: indicators.Period = "none",
                   since: datetime | None = None, until: datetime | None = None, grid_id: str | None = None,
                   community_id: str | None = None, street_id: str | None = None,
                   event_type: Annotated[str | None, Query(alias="type")] = None) -> list[dict[str, Any]]:
    """结案率, 按期处置率, 返工率, 延期率, 满意度 and mean time per stage, per group and period."""
    return _indicators(session, by, period, since, until, grid_id, community_id, street_id, event_type)


@router.get("/indicators.csv", response_class=PlainTextResponse,
            responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}})
def get_indicators_csv(session: SessionDep, by: indicators.GroupBy = "none", period: indicators.Period = "none",
                       since: datetime | None = None, until: datetime | None = None, grid_id: str | None = None,
                       community_id: str | None = None, street_id: str | None = None,
                       event_type: Annotated[str | None, Query(alias="type")] = None) -> PlainTextResponse:
    rows = _indicators(session, by, period, since, until, grid_id, community_id, street_id, event_type)
    return PlainTextResponse(indicators.to_csv(rows), media_type="text/csv; charset=utf-8")




@router.get("/indicators/false-alarms", responses=NOT_FOUND)
def get_false_alarm_rates(session: SessionDep, by: false_alarms.GroupBy = "camera", since: datetime | None = None,
                          until: datetime | None = None) -> list[dict[str, Any]]:
    """误报率: per rule (event type), camera or zone (``camera/zone``) and local week (its Monday), the
    camera tickets opened, how many a person marked a false alarm, the rate and the count per reason."""
    return false_alarms.rates(session, by=by, since=since, until=until)
