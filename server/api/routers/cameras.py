"""REST for cameras: their status and last event, and the zone editor's config (GET/PUT) and schema.

A saved zone config is stored, then published retained on the camera's config topic
(:func:`gridwatch.broker.topics.camera_config_topic`) for the edge to load.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from gridwatch.broker import topics
from gridwatch.server.api import auth
from gridwatch.server.api.deps import SessionDep
from gridwatch.server.api.schemas import NOT_FOUND, TopicId
from gridwatch.server.models import CameraBinding, CameraZones, EventRecord
from gridwatch.server.registry import camera_zones

router = APIRouter(prefix="/api", responses=NOT_FOUND)


class CameraOut(BaseModel):
    site_id: str
    node_id: str | None
    camera_id: str
    grid_id: str | None
    online: bool | None  # None: no status heard from the edge
    fps: float | None
    detail: str | None
    last_event_at: datetime | None
    last_event_type: str | None
    latest_snapshot_sha256: str | None
    snapshot_width: int | None
    snapshot_height: int | None
    zones_version: int | None


class ZonesOut(BaseModel):
    site_id: str
    node_id: str
    camera_id: str
    version: int
    zones: list[dict[str, Any]]
    masks: dict[str, Any]
    updated_by: str
    updated_at: datetime
    topic: str
    published: bool = False


@router.get("/cameras", response_model=list[CameraOut])
def list_cameras(request: Request, session: SessionDep) -> list[CameraOut]:
    """Every camera the registry, the events, the zone configs or the status messages know of."""
    cameras: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(site_id: str, camera_id: str) -> dict[str, Any]:
        return cameras.setdefault((site_id, camera_id), {
            "site_id": site_id, "camera_id": camera_id, "node_id": None, "grid_id": None, "online": None, "fps": None,
            "detail": None, "last_event_at": None, "last_event_type": None, "latest_snapshot_sha256": None,
            "snapshot_width": None, "snapshot_height": None, "zones_version": None})

    for binding in session.scalars(sa.select(CameraBinding)):
        entry(binding.site_id, binding.camera_id)["grid_id"] = binding.grid_id
    latest = sa.select(EventRecord.site_id, EventRecord.camera_id, sa.func.max(EventRecord.id).label("id")) \
        .group_by(EventRecord.site_id, EventRecord.camera_id).subquery()
    for event in session.scalars(sa.select(EventRecord).join(latest, EventRecord.id == latest.c.id)):
        item = entry(event.site_id, event.camera_id)
        item |= {"node_id": event.node_id, "last_event_at": event.observed_at, "last_event_type": event.type}
    with_snapshot = sa.select(EventRecord.site_id, EventRecord.camera_id, sa.func.max(EventRecord.id).label("id")) \
        .where(EventRecord.snapshot_sha256.is_not(None)).group_by(EventRecord.site_id, EventRecord.camera_id).subquery()
    for event in session.scalars(sa.select(EventRecord).join(with_snapshot, EventRecord.id == with_snapshot.c.id)):
        snapshot = event.payload.get("snapshot") or {}
        entry(event.site_id, event.camera_id).update({"latest_snapshot_sha256": event.snapshot_sha256,
                                                      "snapshot_width": snapshot.get("width"),
                                                      "snapshot_height": snapshot.get("height")})
    for row in session.scalars(sa.select(CameraZones)):
        entry(row.site_id, row.camera_id).update({"node_id": row.node_id, "zones_version": row.version})
    board = request.app.state.camera_status
    if board is not None:
        for (site_id, node_id, camera_id), status in board.snapshot().items():
            known = {k: status[k] for k in ("online", "fps", "detail")}
            entry(site_id, camera_id).update({"node_id": node_id, **known})
    return [CameraOut(**cameras[key]) for key in sorted(cameras)]


def _zones_out(row: CameraZones, published: bool = False) -> ZonesOut:
    return ZonesOut(site_id=row.site_id, node_id=row.node_id, camera_id=row.camera_id, version=row.version,
                    zones=row.zones, masks=row.masks or {}, updated_by=row.updated_by, updated_at=row.updated_at,
                    published=published,
                    topic=topics.camera_config_topic(row.site_id, row.node_id, row.camera_id))


@router.get("/cameras/zone-schema")
def get_zone_schema() -> dict[str, Any]:
    """The JSON Schema of what the zone editor saves (zones and masks) as the edge validates it (the
    contract's zone, rule and mask models): the console builds its rule forms from it, so a new rule
    setting needs no console change."""
    return camera_zones.SCHEMA


@router.get("/cameras/{site_id}/{node_id}/{camera_id}/zones", response_model=ZonesOut)
def get_zones(site_id: TopicId, node_id: TopicId, camera_id: TopicId, session: SessionDep) -> ZonesOut:
    row = session.get(CameraZones, (site_id, node_id, camera_id))
    if row is None:
        raise HTTPException(404, f"no zone config saved for camera {site_id}/{node_id}/{camera_id}")
    return _zones_out(row)


@router.put("/cameras/{site_id}/{node_id}/{camera_id}/zones", response_model=ZonesOut,
            dependencies=[auth.require_roles(*auth.MANAGERS)])
def put_zones(site_id: TopicId, node_id: TopicId, camera_id: TopicId, request: Request, session: SessionDep,
              principal: auth.CurrentPrincipal, body: Annotated[dict[str, Any], Body()]) -> ZonesOut:
    """Save a camera's zones (the edge config's ``zones`` list) and masks (``{privacy, motion}``, optional)
    and publish them retained to the edge."""
    try:
        topic = topics.camera_config_topic(site_id, node_id, camera_id)
        checked = camera_zones.validate(body)
    except (ValidationError, ValueError) as exc:
        message = exc.errors(include_url=False)[0] if isinstance(exc, ValidationError) else None
        where = ".".join(str(p) for p in message["loc"]) if message else ""
        raise HTTPException(422, f"{where}: {message['msg']}" if message else str(exc)) from None
    row = camera_zones.save(session, site_id, node_id, camera_id, checked, principal.person_id,
                     request.app.state.clock.now())
    session.commit()
    publisher = request.app.state.publisher
    published = publisher is not None and publisher.send(topic, camera_zones.payload(row), retain=True)
    return _zones_out(row, published)
