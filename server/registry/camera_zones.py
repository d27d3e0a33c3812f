"""Camera zone configs edited in the console: validated as the contract's ``CameraConfig`` zones (the
edge's own ``Zone`` model), stored, and published retained on
:func:`gridwatch.broker.topics.camera_config_topic` so an edge node (now, or whenever it reconnects)
gets the newest one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from gridwatch.broker.contract import CameraConfig, ZoneList
from gridwatch.server.models import CameraZones

ZONES = TypeAdapter(ZoneList)
SCHEMA = ZONES.json_schema()  # what the console's zone editor builds its forms from and checks against


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
    """The retained message for the edge: a ``CameraConfig`` (validated again, so the wire form is the contract's)."""
    return CameraConfig(site_id=row.site_id, node_id=row.node_id, camera_id=row.camera_id, version=row.version,
                        zones=row.zones).to_json()
