"""Camera zone configs edited in the console: validated with the edge's own ``Zone`` model, stored,
and published retained so an edge node (now, or whenever it reconnects) gets the newest one.

The config topic builder lives here until it moves to :mod:`gridwatch.broker.topics` (owned by the
contract): ``gridwatch/v1/<site>/<node>/<camera>/config``, retained, QoS 1, payload
``{"schema": "gridwatch.camera-config/1", "site_id", "node_id", "camera_id", "version", "zones"}``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from gridwatch.broker import topics
from gridwatch.edge.config import Zone
from gridwatch.server.models import CameraZones

CONFIG_SCHEMA = "gridwatch.camera-config/1"
ZONES = TypeAdapter(tuple[Zone, ...])


def camera_config_topic(site_id: str, node_id: str, camera_id: str) -> str:
    """Where a camera's zone config is published (retained). To move to ``broker/topics.py``."""
    for kind, value in (("site_id", site_id), ("node_id", node_id), ("camera_id", camera_id)):
        topics.check_id(kind, value)
    return f"{topics.PREFIX}/{site_id}/{node_id}/{camera_id}/config"


def validate(zones: Any) -> list[dict[str, Any]]:
    """The zones as the edge would load them (raises ``pydantic.ValidationError`` otherwise)."""
    return [zone.model_dump(mode="json", by_alias=True, exclude_none=True) for zone in ZONES.validate_python(zones)]


def save(session: Session, site_id: str, node_id: str, camera_id: str, zones: list[dict[str, Any]], author: str,
         now: datetime) -> CameraZones:
    """Store a new version (committed by the caller)."""
    row = session.get(CameraZones, (site_id, node_id, camera_id))
    if row is None:
        row = CameraZones(site_id=site_id, node_id=node_id, camera_id=camera_id, version=0)
        session.add(row)
    row.zones, row.version, row.updated_by, row.updated_at = zones, row.version + 1, author, now
    return row


def payload(row: CameraZones) -> str:
    return json.dumps({"schema": CONFIG_SCHEMA, "site_id": row.site_id, "node_id": row.node_id,
                       "camera_id": row.camera_id, "version": row.version, "zones": row.zones},
                      ensure_ascii=False, separators=(",", ":"))
