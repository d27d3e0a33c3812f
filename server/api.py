"""The HTTP face of the server: REST under ``/api``, live updates over SSE, and the console at ``/``.

:func:`create_app` builds everything from one :class:`ServerSettings`; its lifespan migrates the
database and starts MQTT ingest, so ``uvicorn``, ``gridwatch server``, ``gridwatch demo`` and the
tests all run the same server. Every error is JSON of one shape (``schemas.ErrorResponse``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path as FsPath
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gridwatch.broker.mqtt_url import parse_mqtt_url
from gridwatch.server import accounts, auth, evidence_log, open311, retention, webhooks
from gridwatch.server.camera_status import CameraStatusBoard
from gridwatch.server.cameras_api import router as cameras_router
from gridwatch.server.categories import CategoryStore
from gridwatch.server.clock import Clock, SystemClock
from gridwatch.server.consumer import IngestSource, create_ingest
from gridwatch.server.db import create_engine, session_factory, upgrade
from gridwatch.server.gates_api import router as gates_router
from gridwatch.server.ingest import Batch, IngestContext
from gridwatch.server.lifecycle import TransitionError
from gridwatch.server.live import Broadcaster, LiveFanout, LiveMessage, Notice
from gridwatch.server.models import DeadLetter, EventRecord, Ticket, TicketTransition
from gridwatch.server.publish import TransitionPublisher
from gridwatch.server.schemas import (
    DatabaseHealth,
    DeadLetterOut,
    ErrorResponse,
    EventOut,
    Health,
    HourlyCount,
    MqttHealth,
    Page,
    RowId,
    RowIdQuery,
    SnapshotStored,
    TicketDetail,
    TicketOut,
)
from gridwatch.server.sequence_api import router as sequence_router
from gridwatch.server.settings import ServerSettings
from gridwatch.server.sla import sweeper
from gridwatch.server.snapshots import MAX_SNAPSHOT_BYTES, SHA256_RE, SnapshotError, SnapshotStore
from gridwatch.server.tickets_api import router as tickets_router

log = logging.getLogger(__name__)

CONSOLE_DIR = FsPath(__file__).resolve().parent / "console"
SSE_KEEPALIVE_S = 15.0

Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
Sha256 = Annotated[str, Path(pattern=SHA256_RE.pattern, description="64 lowercase hex digits")]


def error_response(status: int, message: str, code: str | None = None,
                   details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The single error shape: ``{"error": {"status", "code", "message", "details"?}}``."""
    if code is None:
        try:
            code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
        except ValueError:
            code = "error"
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def _page(session: Session, query: sa.Select[Any], limit: int, offset: int) -> tuple[list[Any], int]:
    total = session.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())) or 0
    return list(session.scalars(query.limit(limit).offset(offset))), total


def create_app(settings: ServerSettings | None = None, start_ingest: bool = True,
               clock: Clock | None = None) -> FastAPI:
    """The server application; ``start_ingest=False`` serves the API without an MQTT consumer
    (and publishes no transitions). ``clock`` drives SLA clocks and audit times (tests pass a
    :class:`~gridwatch.server.clock.ManualClock`)."""
    settings = settings or ServerSettings()
    clock = clock or SystemClock()
    broadcaster = Broadcaster()
    snapshots = SnapshotStore(settings.snapshots_dir)
    categories = CategoryStore()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await run_in_threadpool(upgrade, settings.database_url)
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        app.state.engine = engine
        app.state.sessions = sessions
        if settings.admin_password:
            with sessions() as session:
                if accounts.ensure_admin(session, settings.admin_password, clock.now()):
                    log.info("created the initial admin account 'admin' from GRIDWATCH_ADMIN_PASSWORD")

        publisher: TransitionPublisher | None = None
        if start_ingest and settings.publish_transitions:
            publisher = TransitionPublisher(settings.mqtt_url, settings.mqtt_client_id, settings.mqtt_tls)
            publisher.start()
        app.state.publisher = publisher
        camera_status: CameraStatusBoard | None = None
        if start_ingest:
            camera_status = CameraStatusBoard(settings.mqtt_url, settings.mqtt_client_id, settings.mqtt_tls)
            camera_status.start()
        app.state.camera_status = camera_status

        # Live updates reach the consoles of every replica on PostgreSQL (LISTEN/NOTIFY), of this one on SQLite.
        live = LiveFanout(broadcaster, sessions, settings.database_url)
        await run_in_threadpool(live.start)
        app.state.live = live

        def publish_transitions(entries: list[TicketTransition]) -> None:
            """To MQTT integrators and webhook subscribers, once, by the replica that made the change."""
            webhooks.enqueue(sessions, entries, clock.now())
            if publisher is not None and entries:
                with sessions() as session:
                    publisher.publish(session, entries)

        def announce(entries: list[TicketTransition]) -> None:
            """After a commit: transitions to SSE clients and to MQTT integrators."""
            live.announce(Notice(transitions=[entry.id for entry in entries]))
            publish_transitions(entries)

        def on_batch(batch: Batch) -> None:
            stored = [o for o in batch.outcomes if o.status.value == "stored"]
            created: dict[int, bool] = {}
            for outcome in stored:
                if outcome.ticket_id is not None:
                    created[outcome.ticket_id] = created.get(outcome.ticket_id, False) or outcome.ticket_created
            live.announce(Notice(events=[o.event_id for o in stored if o.event_id is not None],
                                 tickets=list(created.items()),
                                 transitions=[entry.id for entry in batch.transitions]))
            publish_transitions(batch.transitions)

        app.state.on_batch = on_batch
        app.state.announce = announce
        context = IngestContext(categories=categories, clock=clock)
        app.state.ingest_context = context
        ingest: IngestSource | None = None
        if start_ingest:
            ingest = create_ingest(settings, session_factory=sessions, context=context, on_batch=on_batch)
            ingest.start()
        app.state.ingest = ingest
        jobs = [sweeper(sessions, categories, clock, settings.sla_sweep_interval_s, announce).start(),
                webhooks.delivery_worker(sessions, settings, clock).start(),
                retention.purger(sessions, snapshots, settings, clock).start()]
        try:
            yield
        finally:
            broadcaster.close()
            for job in jobs:
                await run_in_threadpool(job.stop)
            await run_in_threadpool(live.stop)
            if ingest is not None:
                await run_in_threadpool(ingest.stop)
            if publisher is not None:
                publisher.stop()
            if camera_status is not None:
                camera_status.stop()
            engine.dispose()

    app = FastAPI(
        title="GridWatch server",
        version="0.1.0",
        summary="Camera events in over MQTT, grid tickets (网格工单) out.",
        lifespan=lifespan,
        responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
        dependencies=[Depends(auth.authenticate)],
    )
    app.state.settings = settings
    app.state.broadcaster = broadcaster
    app.state.snapshots = snapshots
    app.state.categories = categories
    app.state.clock = clock
    app.state.login_limiter = auth.LoginLimiter(settings.login_attempts, settings.login_window_s)
    _install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(tickets_router)
    app.include_router(cameras_router)
    app.include_router(gates_router)
    app.include_router(sequence_router)
    app.include_router(open311.router)
    app.include_router(webhooks.router)
    app.include_router(evidence_log.router)

    # -- health ------------------------------------------------------------------------------

    @app.get("/api/health", response_model=Health, responses={503: {"model": Health}})
    def health(request: Request, response: Response) -> Health:
        backend = sa.engine.make_url(settings.database_url).get_backend_name()
        counts: dict[str, int] = {}
        try:
            with request.app.state.sessions() as session:
                for name, model in (("events", EventRecord), ("tickets", Ticket),
                                    ("dead_letters", DeadLetter)):
                    counts[name] = session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
            database = DatabaseHealth(ok=True, backend=backend)
        except Exception as exc:
            database = DatabaseHealth(ok=False, backend=backend, error=str(exc).splitlines()[0])
        ingest: IngestSource | None = request.app.state.ingest
        mqtt = MqttHealth(
            enabled=ingest is not None,
            connected=bool(ingest and ingest.connected),
            subscribed=bool(ingest and ingest.subscribed),
            url=ingest.url if ingest else parse_mqtt_url(settings.mqtt_url).redacted_url,
            subscription=ingest.subscription if ingest else settings.subscription,
            **(ingest.counts if ingest else {"stored": 0, "duplicates": 0, "dead_lettered": 0, "errors": 0}),
        )
        healthy = database.ok and (ingest is None or mqtt.connected)
        if not database.ok:
            response.status_code = 503
        return Health(status="ok" if healthy else "degraded", database=database, mqtt=mqtt, counts=counts)

    # Probes for an orchestrator (Kubernetes, compose healthchecks): outside /api, so no login, and
    # outside the OpenAPI document, which is the integrators' contract. Liveness asks only "is this
    # process serving?" (a database outage must not restart every replica); readiness asks "can it
    # answer requests?": the database answers and, on PostgreSQL, live updates from the other
    # replicas are heard.

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        problems: list[str] = []
        try:
            with request.app.state.sessions() as session:
                session.execute(sa.text("SELECT 1"))
        except Exception as exc:
            problems.append(f"database: {str(exc).splitlines()[0]}")
        live: LiveFanout | None = getattr(request.app.state, "live", None)
        if live is None or not live.listening:
            problems.append("live updates: not listening for other replicas")
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    # -- events ------------------------------------------------------------------------------

    @app.get("/api/events", response_model=Page[EventOut])
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
        rows, total = _page(session, query, limit, offset)
        return Page[EventOut](items=[EventOut.model_validate(r) for r in rows], total=total,
                              limit=limit, offset=offset)

    @app.get("/api/events/hourly", response_model=list[HourlyCount])
    def events_per_hour(session: SessionDep, principal: auth.CurrentPrincipal,
                        hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24) -> list[HourlyCount]:
        """Events per hour (UTC hour starts) over the last ``hours``, every hour listed, for the charts."""
        now = clock.now().replace(minute=0, second=0, microsecond=0)
        start = now - timedelta(hours=hours - 1)
        query = sa.select(EventRecord.observed_at).where(EventRecord.observed_at >= start)
        grids = auth.visible_grids(session, principal)
        if grids is not None:
            query = query.join(Ticket, EventRecord.ticket_id == Ticket.id).where(Ticket.grid_id.in_(grids))
        counts = Counter(at.replace(minute=0, second=0, microsecond=0) for at in session.scalars(query))
        return [HourlyCount(hour=start + timedelta(hours=n), events=counts.get(start + timedelta(hours=n), 0))
                for n in range(hours)]

    @app.get("/api/events/{event_id}", response_model=EventOut, responses={404: {"model": ErrorResponse}})
    def get_event(event_id: str, session: SessionDep, principal: auth.CurrentPrincipal) -> EventOut:
        row = session.scalar(sa.select(EventRecord).where(EventRecord.event_id == event_id))
        grids = auth.visible_grids(session, principal)
        if row is not None and grids is not None:
            ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
            row = row if ticket is not None and ticket.grid_id in grids else None
        if row is None:
            raise HTTPException(404, f"no event {event_id}")
        return EventOut.model_validate(row)

    # -- tickets -----------------------------------------------------------------------------

    @app.get("/api/tickets", response_model=Page[TicketOut])
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
        rows, total = _page(session, query, limit, offset)
        return Page[TicketOut](items=[TicketOut.model_validate(r) for r in rows], total=total,
                               limit=limit, offset=offset)

    @app.get("/api/tickets/{ticket_id}", response_model=TicketDetail,
             responses={404: {"model": ErrorResponse}})
    def get_ticket(ticket_id: RowId, session: SessionDep, principal: auth.CurrentPrincipal) -> TicketDetail:
        ticket = session.scalar(
            sa.select(Ticket).where(Ticket.id == ticket_id).options(selectinload(Ticket.events))
        )
        grids = auth.visible_grids(session, principal)
        if ticket is None or (grids is not None and ticket.grid_id not in grids):
            raise HTTPException(404, f"no ticket {ticket_id}")
        return TicketDetail.model_validate(ticket)

    # -- dead letters ------------------------------------------------------------------------

    @app.get("/api/dead-letters", response_model=Page[DeadLetterOut],
             dependencies=[auth.require_roles(*auth.MANAGERS)])
    def list_dead_letters(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> Page[DeadLetterOut]:
        query = sa.select(DeadLetter).order_by(DeadLetter.id.desc())
        rows, total = _page(session, query, limit, offset)
        return Page[DeadLetterOut](items=[DeadLetterOut.from_row(r) for r in rows], total=total,
                                   limit=limit, offset=offset)

    # -- snapshots ---------------------------------------------------------------------------

    @app.put(
        "/api/snapshots/{sha256}",
        response_model=SnapshotStored,
        status_code=201,
        responses={200: {"model": SnapshotStored}, 400: {"model": ErrorResponse},
                   413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}},
    )
    async def put_snapshot(sha256: Sha256, request: Request, response: Response) -> SnapshotStored:
        body = await _bounded_body(request)
        stored = await run_in_threadpool(snapshots.put, sha256, body)
        response.status_code = 201 if stored.created else 200
        return SnapshotStored(sha256=stored.sha256, size=stored.size, content_type=stored.media_type,
                              created=stored.created, url=f"/api/snapshots/{stored.sha256}")

    @app.post("/api/snapshots", response_model=SnapshotStored, status_code=201,
              responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}})
    async def post_snapshot(request: Request, response: Response) -> SnapshotStored:
        """Upload a photo whose hash the client cannot compute (a phone browser on plain HTTP has no
        WebCrypto): the server hashes it. Same limits and store as ``PUT /api/snapshots/{sha256}``."""
        body = await _bounded_body(request)
        stored = await run_in_threadpool(snapshots.put, hashlib.sha256(body).hexdigest(), body)
        response.status_code = 201 if stored.created else 200
        return SnapshotStored(sha256=stored.sha256, size=stored.size, content_type=stored.media_type,
                              created=stored.created, url=f"/api/snapshots/{stored.sha256}")

    @app.get("/api/snapshots/{sha256}", response_class=FileResponse,
             responses={200: {"content": {"image/jpeg": {}, "image/png": {}}},
                        404: {"model": ErrorResponse}})
    def get_snapshot(sha256: Sha256, request: Request, ticket_id: RowIdQuery = None) -> FileResponse:
        """The image; ``ticket_id`` names the ticket it is viewed as evidence of, for the access log."""
        found = snapshots.find(sha256)
        if found is None:
            raise HTTPException(404, f"no snapshot {sha256}")
        path, media_type = found
        evidence_log.record(request, sha256, ticket_id)  # every view is accountable, so no browser cache either
        headers = {"Cache-Control": evidence_log.CACHE_CONTROL, "ETag": f'"{sha256}"'}
        return FileResponse(path, media_type=media_type, headers=headers)

    # -- live stream -------------------------------------------------------------------------

    @app.get("/api/stream", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(request: Request, principal: auth.CurrentPrincipal) -> StreamingResponse:
        """Server-Sent Events: ``event`` for each stored camera event, ``ticket`` each time a ticket is
        created or updated, ``transition`` for each audit entry. A grid worker hears only ``ticket``
        messages of the grids they work in."""
        with request.app.state.sessions() as session:
            grids = auth.visible_grids(session, principal)

        def allowed(message: LiveMessage) -> bool:
            return grids is None or (message.event == "ticket" and message.data["ticket"]["grid_id"] in grids)

        async def messages() -> AsyncIterator[str]:
            sub = broadcaster.subscribe()
            try:
                # Sent at once so a client knows it is subscribed before anything happens.
                yield "retry: 3000\n: connected\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(sub.queue.get(), SSE_KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"  # also how a vanished client is noticed
                        continue
                    if message is None:
                        break
                    if allowed(message):
                        yield message.encode()
            finally:
                broadcaster.unsubscribe(sub)

        return StreamingResponse(messages(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- console -----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console")
    return app


async def _bounded_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes the snapshot limit (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(413, "too_large", f"snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(413, "too_large", f"snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")
    return bytes(body)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = jsonable_encoder(exc.errors(), exclude={"ctx", "url"})
        first = details[0] if details else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}"
        return error_response(422, message, "invalid_request", details)

    @app.exception_handler(TransitionError)
    async def transition_error(_request: Request, exc: TransitionError) -> JSONResponse:
        return error_response(exc.status, str(exc), exc.code)

    @app.exception_handler(SnapshotError)
    async def snapshot_error(_request: Request, exc: SnapshotError) -> JSONResponse:
        return error_response(exc.status, str(exc), exc.code)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return error_response(500, "internal server error")
