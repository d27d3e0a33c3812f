"""The HTTP face of the server: REST under ``/api``, live updates over SSE, and the console at ``/``.

:func:`create_app` builds everything from one :class:`ServerSettings`; its lifespan migrates the
database and starts MQTT ingest, so ``uvicorn``, ``gridwatch server``, ``gridwatch demo`` and the
tests all run the same server. The routes are the routers of :mod:`gridwatch.server.api.routers`,
one module per resource; they reach what the app made (settings, sessions, snapshot store,
broadcaster, clock, ...) through ``request.app.state``. Every error is JSON of one shape
(``schemas.ErrorResponse``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gridwatch.server.api import auth, docs, security
from gridwatch.server.api.live import Broadcaster, LiveFanout, Notice
from gridwatch.server.api.routers import accounts as accounts_api
from gridwatch.server.api.routers import (
    cameras,
    console,
    events,
    evidence_access,
    gates,
    health,
    sequence,
    snapshots,
    tickets,
)
from gridwatch.server.api.routers import webhooks as webhooks_api
from gridwatch.server.api.schemas import ErrorResponse
from gridwatch.server.clock import Clock, SystemClock
from gridwatch.server.db import create_engine, session_factory, upgrade
from gridwatch.server.ingest.camera_status import CameraStatusBoard
from gridwatch.server.ingest.snapshots import SnapshotError, SnapshotStore
from gridwatch.server.ingest.sources import create_ingest
from gridwatch.server.ingest.store import Batch, IngestContext
from gridwatch.server.ingest.worker import IngestSource
from gridwatch.server.integrations import open311, webhooks
from gridwatch.server.integrations.publish import TransitionPublisher
from gridwatch.server.models import TicketTransition
from gridwatch.server.privacy import retention
from gridwatch.server.registry import accounts
from gridwatch.server.settings import ServerSettings
from gridwatch.server.tickets.categories import CategoryStore
from gridwatch.server.tickets.lifecycle import TransitionError
from gridwatch.server.tickets.sla import sweeper

log = logging.getLogger(__name__)


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


def create_app(settings: ServerSettings | None = None, start_ingest: bool = True,
               clock: Clock | None = None) -> FastAPI:
    """The server application; ``start_ingest=False`` serves the API without an MQTT consumer
    (and publishes no transitions). ``clock`` drives SLA clocks and audit times (tests pass a
    :class:`~gridwatch.server.clock.ManualClock`)."""
    settings = settings or ServerSettings()
    clock = clock or SystemClock()
    broadcaster = Broadcaster()
    snapshot_store = SnapshotStore(settings.snapshots_dir)
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
                retention.purger(sessions, snapshot_store, settings, clock).start()]
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
        docs_url=None,  # served by docs.install, from the package and under their own policy
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.broadcaster = broadcaster
    app.state.snapshots = snapshot_store
    app.state.categories = categories
    app.state.clock = clock
    app.state.login_limiter = auth.LoginLimiter(settings.login_attempts, settings.login_window_s)
    _install_error_handlers(app)
    # In this order: a request goes to the first route whose path matches.
    for router in (accounts_api.router, tickets.router, cameras.router, gates.router, sequence.router,
                   open311.router, webhooks_api.router, evidence_access.router, health.router, events.router,
                   snapshots.router, console.router):
        app.include_router(router)

    app.mount("/console", StaticFiles(directory=console.CONSOLE_DIR), name="console")
    docs.install(app)
    app.add_middleware(security.SecurityHeaders)
    # Outermost: the client's scheme and address from X-Forwarded-* only when a listed proxy sent them.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    return app


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
