"""Open311 GeoReport v2: civic-issue tools read grid tickets and report new ones.

Services are the category table's entries (``service_code`` = the event type), requests are
tickets (``service_request_id`` = the ticket id). Every call answers JSON or XML by the path's
extension, and errors use the GeoReport shape (``[{"code", "description"}]`` /
``<errors><error>``) rather than the REST API's, because Open311 clients parse that one.

Reading needs ``api_key`` = an API token with scope ``read`` (401 without one, 403 with a bad one).
Nothing is public by default: a site may turn public reading on (``open311_public_read``, as
GeoReport intends for civic issues), and then anonymous readers see only the categories the table
marks ``public`` (never loitering, courier or camera types: their list would say where people
linger and which cameras are blind), with times coarsened to the hour so a public list cannot
track a person's or a patrol's minutes. No reader sees evidence, assignee or camera: only
category, stage, times and place. Creating a request needs
``api_key`` = an API token with scope ``open311:write``; the ticket starts ``reported`` with
``source`` open311 and no camera, and a supervisor registers and dispatches it like any other.
Personal data a client may send (email, names, phone, device and account ids) is not stored.
"""

from __future__ import annotations

import math
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, Form, Path, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from gridwatch.broker import topics
from gridwatch.server.models import NAME_LENGTH, Ticket, TicketTransition
from gridwatch.server.registry import accounts
from gridwatch.server.tickets.categories import CategoryTable
from gridwatch.server.tickets.stages import Stage

Format = Annotated[Literal["json", "xml"], Path(description="response format")]
CLOSED_STAGES = frozenset({Stage.CLOSED.value, Stage.EVALUATED.value, Stage.VOIDED.value})
DEFAULT_WINDOW = timedelta(days=90)  # GeoReport: no dates = the last 90 days, and no range over 90 days
MAX_REQUESTS = 1000  # GeoReport allows a server to cap a list at 1000
MAX_DESCRIPTION = 4000
MAX_IDS = 100
SCOPE = "open311:write"
MEDIA = {"json": "application/json", "xml": "text/xml; charset=utf-8"}


class Open311Error(Exception):
    """A refusal in GeoReport's error shape; ``status`` is also the HTTP status."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


# -- the JSON shapes (documented in OpenAPI; the XML carries the same fields) ----------------------


class ServiceOut(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class RequestOut(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


class CreatedOut(BaseModel):
    service_request_id: str
    service_notice: str
    account_id: str | None


class ErrorOut(BaseModel):
    code: int
    description: str


def _docs(model: Any, success: int = 200) -> dict[int | str, dict[str, Any]]:
    """Each status documented with its JSON schema and as XML text (same fields)."""
    xml = {"text/xml": {"schema": {"type": "string"}}}
    errors = {"model": list[ErrorOut], "content": xml}
    return {success: {"model": model, "content": xml}, 400: errors, 401: errors, 403: errors, 404: errors}


# -- rendering -----------------------------------------------------------------------------------


def _xml(root: str, item: str, rows: Sequence[BaseModel | dict[str, Any]]) -> bytes:
    top = ET.Element(root)
    for row in rows:
        element = ET.SubElement(top, item)
        values = row.model_dump() if isinstance(row, BaseModel) else row
        for key, value in values.items():
            child = ET.SubElement(element, key)
            if isinstance(value, bool):
                child.text = "true" if value else "false"
            elif value is not None:
                child.text = str(value)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True)


def render(fmt: str, root: str, item: str, rows: Sequence[BaseModel], status: int = 200) -> Response:
    """One list of GeoReport objects as JSON (an array) or XML (``<root><item>…``)."""
    if fmt == "xml":
        return Response(_xml(root, item, rows), status_code=status, media_type=MEDIA["xml"])
    body = "[" + ",".join(row.model_dump_json() for row in rows) + "]"
    return Response(body, status_code=status, media_type=MEDIA["json"])


def error_body(fmt: str, status: int, description: str) -> Response:
    return render(fmt, "errors", "error", [ErrorOut(code=status, description=description)], status)


def _when(value: datetime | None, coarse: bool = False) -> str | None:
    """W3C time in UTC; ``coarse`` (anonymous readers) drops minutes and seconds."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    if coarse:
        value = value.replace(minute=0, second=0, microsecond=0)
    return value.isoformat().replace("+00:00", "Z")


# -- parsing -------------------------------------------------------------------------------------


def _date(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name}: not a W3C date-time such as 2025-03-01T08:00:00Z: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _codes(name: str, value: str | None, allowed: set[str]) -> list[str]:
    codes = [c.strip() for c in (value or "").split(",") if c.strip()]
    unknown = sorted(set(codes) - allowed)
    if unknown:
        raise Open311Error(400, f"{name}: unknown value(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return codes


def _ids(value: str) -> list[int]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) > MAX_IDS or not all(p.isdigit() and 0 < int(p) < 2**31 for p in parts):
        raise Open311Error(400, f"service_request_id: up to {MAX_IDS} comma-separated ticket ids (1..2^31-1)")
    return [int(p) for p in parts]


def _coordinate(name: str, value: str | None, bound: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise Open311Error(400, f"{name}: not a number: {value!r}") from None
    if not math.isfinite(number) or abs(number) > bound:
        raise Open311Error(400, f"{name}: must be between -{bound:g} and {bound:g}")
    return number


def _text(name: str, value: str | None, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit or "\x00" in value:
        raise Open311Error(400, f"{name}: at most {limit} characters, no NUL")
    return value.strip()


def _site(value: str | None, default: str) -> str | None:
    site = value or default or None
    if site is not None:
        try:
            topics.check_id("jurisdiction_id", site)
        except ValueError as exc:
            raise Open311Error(400, str(exc)) from None
    return site


# -- mapping -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """Who reads: a token holder sees every category; an anonymous reader (public reading on) only
    the table's public ones, with coarse times."""

    anonymous: bool

    def codes(self, table: CategoryTable) -> set[str]:
        return {c.event_type.value for c in table.categories if c.public or not self.anonymous}


def services(table: CategoryTable, reader: Reader = Reader(anonymous=False)) -> list[ServiceOut]:
    visible = reader.codes(table)
    return [ServiceOut(service_code=c.event_type.value, service_name=f"{c.category} / {c.subcategory}",
                       description=c.subcategory, metadata=False, type="realtime", keywords=c.event_type.value,
                       group=c.category) for c in table.categories if c.event_type.value in visible]


def request_out(ticket: Ticket, coarse: bool = False) -> RequestOut:
    closed = ticket.stage in CLOSED_STAGES
    return RequestOut(
        service_request_id=str(ticket.id), status="closed" if closed else "open", status_notes=ticket.stage,
        service_name=f"{ticket.category} / {ticket.subcategory}", service_code=ticket.type,
        description=ticket.description, agency_responsible=ticket.responsible_unit, service_notice=None,
        requested_datetime=_when(ticket.opened_at, coarse) or "",
        updated_datetime=_when(ticket.updated_at, coarse) or "",
        expected_datetime=None if closed else _when(ticket.due_at, coarse), address=ticket.address, address_id=None,
        zipcode=None, lat=ticket.latitude, long=ticket.longitude, media_url=ticket.media_url)


def find_requests(session: Session, *, ids: list[int], codes: list[str], statuses: list[str], site: str | None,
                  start: datetime | None, end: datetime | None, now: datetime,
                  visible: set[str] | None = None) -> list[Ticket]:
    """Tickets as GeoReport's request filters select them (ids, when given, override the rest);
    ``visible``: only these types, whatever the filters say (an anonymous reader's public ones)."""
    query = sa.select(Ticket).order_by(Ticket.opened_at.desc(), Ticket.id.desc()).limit(MAX_REQUESTS)
    if visible is not None:
        query = query.where(Ticket.type.in_(visible))
    if site is not None:
        query = query.where(Ticket.site_id == site)
    if ids:
        return list(session.scalars(query.where(Ticket.id.in_(ids))))
    if start is not None and end is not None and end - start > DEFAULT_WINDOW:
        raise Open311Error(400, "end_date: the range from start_date may span at most 90 days")
    if start is None:
        start = (end or now) - DEFAULT_WINDOW
    query = query.where(Ticket.opened_at >= start)
    if end is not None:
        query = query.where(Ticket.opened_at <= end)
    if codes:
        query = query.where(Ticket.type.in_(codes))
    if set(statuses) == {"open"}:
        query = query.where(Ticket.stage.not_in(CLOSED_STAGES))
    elif set(statuses) == {"closed"}:
        query = query.where(Ticket.stage.in_(CLOSED_STAGES))
    return list(session.scalars(query))


def create_request(session: Session, table: CategoryTable, version: int, *, service_code: str, site: str,
                   reporter: str, latitude: float | None, longitude: float | None, address: str | None,
                   description: str | None, media_url: str | None, now: datetime) -> TicketTransition:
    """Insert the ticket and its ``open`` audit entry (not committed)."""
    category = table.for_type(service_code)
    values = dict(
        incident_id=uuid.uuid4().hex, type=service_code, site_id=site, node_id=None, camera_id=None, zone_id=None,
        stage=Stage.REPORTED.value, opened_at=now, last_event_at=now, event_count=0, attributes={},
        created_at=now, updated_at=now, fingerprint="", incident_count=0, open_incidents=0, last_incident_at=now,
        category=category.category, subcategory=category.subcategory, category_version=version,
        responsible_unit=category.responsible_unit, version=1, rework_count=0, extension_count=0,
        stage_entered_at=now, escalation_level=0, overdue=False, source="open311", latitude=latitude,
        longitude=longitude, address=address, description=description, media_url=media_url, reporter=reporter)
    ticket_id = session.scalar(sa.insert(Ticket).values(**values).returning(Ticket.id))
    entry = TicketTransition(ticket_id=ticket_id, action="open", from_stage=None, to_stage=Stage.REPORTED.value,
                             actor=reporter, role="integrator", at=now, version=1,
                             details={"source": "open311"})
    session.add(entry)
    session.flush()
    return entry


# -- routes --------------------------------------------------------------------------------------

router = APIRouter(prefix="/open311/v2", tags=["open311"])


def _check_read(request: Request, session: Session, api_key: str | None) -> Reader:
    """A given key must be a read token even when reading is public (a client that sends one expects
    its full view, and a typo should say so rather than silently show less)."""
    if api_key:
        token = accounts.find_token(session, api_key)
        if token is None or "read" not in token.scopes:
            raise Open311Error(403, "api_key: unknown or revoked API token, or it lacks the scope read")
        return Reader(anonymous=False)
    if request.app.state.settings.open311_public_read:
        return Reader(anonymous=True)
    raise Open311Error(401, "api_key: an API token with scope read is required (this site's reading is not public)")


def _guarded(fmt: str, call: Any) -> Response:
    try:
        return call()
    except Open311Error as exc:
        return error_body(fmt, exc.status, exc.description)


@router.get("/services.{fmt}", response_class=Response, responses=_docs(list[ServiceOut]))
def list_services(fmt: Format, request: Request, jurisdiction_id: str | None = None,
                  api_key: str | None = None) -> Response:
    """Every ticket category as a GeoReport service (``service_code`` = the event type)."""
    state = request.app.state

    def run() -> Response:
        _site(jurisdiction_id, "")
        with state.sessions() as session:
            reader = _check_read(request, session, api_key)
            _, table = state.categories.current(session)
        return render(fmt, "services", "service", services(table, reader))

    return _guarded(fmt, run)


@router.get("/services/{service_code}.{fmt}", response_class=Response, responses=_docs(dict[str, Any]))
def service_definition(service_code: Annotated[str, Path(max_length=64)], fmt: Format, request: Request,
                       api_key: str | None = None) -> Response:
    """No category asks for extra attributes (every service has ``metadata`` false), so GeoReport's
    answer for every code is 404."""
    state = request.app.state

    def run() -> Response:
        with state.sessions() as session:
            reader = _check_read(request, session, api_key)
            _, table = state.categories.current(session)
        known = reader.codes(table)
        if service_code not in known:
            raise Open311Error(404, f"service_code: no service {service_code!r}")
        raise Open311Error(404, f"service {service_code} has no attributes (metadata is false)")

    return _guarded(fmt, run)


@router.get("/requests.{fmt}", response_class=Response, responses=_docs(list[RequestOut]))
def list_requests(fmt: Format, request: Request, service_request_id: str | None = None,
                  service_code: str | None = None, start_date: str | None = None, end_date: str | None = None,
                  status: str | None = None, jurisdiction_id: str | None = None,
                  api_key: str | None = None) -> Response:
    """Tickets, newest first, at most 1000; by default those opened in the last 90 days."""
    state = request.app.state

    def run() -> Response:
        site = _site(jurisdiction_id, "")
        with state.sessions() as session:
            reader = _check_read(request, session, api_key)
            _, table = state.categories.current(session)
            visible = reader.codes(table)
            rows = find_requests(
                session, ids=_ids(service_request_id) if service_request_id else [],
                codes=_codes("service_code", service_code, visible),
                statuses=_codes("status", status, {"open", "closed"}), site=site,
                start=_date("start_date", start_date), end=_date("end_date", end_date), now=state.clock.now(),
                visible=visible if reader.anonymous else None)
            out = [request_out(t, coarse=reader.anonymous) for t in rows]
        return render(fmt, "service_requests", "request", out)

    return _guarded(fmt, run)


@router.get("/requests/{service_request_id}.{fmt}", response_class=Response, responses=_docs(list[RequestOut]))
def get_request(service_request_id: Annotated[str, Path(max_length=12)], fmt: Format, request: Request,
                jurisdiction_id: str | None = None, api_key: str | None = None) -> Response:
    """One ticket, as a one-element list (GeoReport's shape)."""
    state = request.app.state

    def run() -> Response:
        ids = _ids(service_request_id)
        site = _site(jurisdiction_id, "")
        with state.sessions() as session:
            reader = _check_read(request, session, api_key)
            _, table = state.categories.current(session)
            ticket = session.get(Ticket, ids[0]) if len(ids) == 1 else None
            if (ticket is None or (site is not None and ticket.site_id != site)
                    or ticket.type not in reader.codes(table)):
                raise Open311Error(404, f"service_request_id: no request {service_request_id}")
            out = [request_out(ticket, coarse=reader.anonymous)]
        return render(fmt, "service_requests", "request", out)

    return _guarded(fmt, run)


@router.post("/requests.{fmt}", response_class=Response, status_code=201, responses=_docs(list[CreatedOut], 201))
def post_request(
    fmt: Format,
    request: Request,
    api_key: Annotated[str | None, Form()] = None,
    service_code: Annotated[str | None, Form()] = None,
    jurisdiction_id: Annotated[str | None, Form()] = None,
    lat: Annotated[str | None, Form()] = None,
    long: Annotated[str | None, Form()] = None,
    address_string: Annotated[str | None, Form()] = None,
    description: Annotated[str | None, Form()] = None,
    media_url: Annotated[str | None, Form()] = None,
) -> Response:
    """Report a situation: a new ticket in stage ``reported`` with ``source`` open311.

    Needs ``api_key`` (an API token with scope ``open311:write``), ``service_code``, and a place:
    ``lat`` with ``long``, or ``address_string``. ``jurisdiction_id`` is the site id (default
    ``GRIDWATCH_OPEN311_JURISDICTION``)."""
    state = request.app.state

    def run() -> Response:
        latitude = _coordinate("lat", lat, 90)
        longitude = _coordinate("long", long, 180)
        if (latitude is None) != (longitude is None):
            raise Open311Error(400, "lat, long: give both or neither")
        address = _text("address_string", address_string, NAME_LENGTH)
        if latitude is None and address is None:
            raise Open311Error(400, "lat, long or address_string: a location is required")
        text = _text("description", description, MAX_DESCRIPTION)
        media = _text("media_url", media_url, 2000)
        if media is not None and (urlsplit(media).scheme not in ("http", "https") or not urlsplit(media).netloc):
            raise Open311Error(400, "media_url: an http(s) URL")
        site = _site(jurisdiction_id, state.settings.open311_jurisdiction)
        if site is None:
            raise Open311Error(400, "jurisdiction_id: required (this server has no default jurisdiction)")
        if not service_code:
            raise Open311Error(400, "service_code: required")
        with state.sessions() as session:
            token = accounts.find_token(session, api_key or "")
            if token is None:
                raise Open311Error(403, "api_key: unknown or revoked API token")
            if SCOPE not in token.scopes:
                raise Open311Error(403, f"api_key: this API token lacks the scope {SCOPE}")
            version, table = state.categories.current(session)
            _codes("service_code", service_code, {c.event_type.value for c in table.categories})
            entry = create_request(session, table, version, service_code=service_code, site=site,
                                   reporter=token.name, latitude=latitude, longitude=longitude, address=address,
                                   description=text, media_url=media, now=state.clock.now())
            session.commit()
        state.announce([entry])
        created = CreatedOut(service_request_id=str(entry.ticket_id), account_id=None,
                             service_notice="registered as a grid ticket; a supervisor will register and dispatch it")
        return render(fmt, "service_requests", "request", [created], 201)

    return _guarded(fmt, run)
