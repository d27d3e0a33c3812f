"""Is the server well: ``GET /api/health`` for people and monitoring, ``/healthz`` and ``/readyz``
for an orchestrator's probes."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gridwatch.broker.mqtt_url import parse_mqtt_url
from gridwatch.server.api.live import LiveFanout
from gridwatch.server.api.schemas import DatabaseHealth, Health, MqttHealth
from gridwatch.server.ingest.worker import IngestSource
from gridwatch.server.models import DeadLetter, EventRecord, Ticket

router = APIRouter()


@router.get("/api/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request, response: Response) -> Health:
    settings = request.app.state.settings
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


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
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
