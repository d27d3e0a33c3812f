"""Camera zone configs edited in the console: validated as the contract's ``CameraConfig`` zones and
masks (the edge's own ``Zone`` and ``Masks`` models), stored, and published retained on
:func:`gridwatch.broker.topics.camera_config_topic` so an edge node (now, or whenever it reconnects)
gets the newest one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from gridwatch.broker.contract import CameraConfig, ZoneList
from gridwatch.broker.zones import Masks
from gridwatch.server.models import CameraZones


class Layout(BaseModel):
    """What the zone editor saves for one camera: its zones and masks (a ``CameraConfig`` without its ids
    and version), checked by the edge's own models."""

    model_config = ConfigDict(extra="forbid")

    zones: ZoneList = Field(description="The camera's zones, as under cameras[].zones in the edge config.")
    masks: Masks = Masks()


SCHEMA = Layout.model_json_schema()  # what the console's zone editor builds its forms from and checks against


def validate(body: Any) -> Layout:
    """The body as the edge would load it (raises ``pydantic.ValidationError`` naming the field otherwise)."""
    return Layout.model_validate(body)


def save(session: Session, site_id: str, node_id: str, camera_id: str, layout: Layout, author: str,
         now: datetime) -> CameraZones:
    """Store a new version (committed by the caller)."""
    zones = [zone.model_dump(mode="json", by_alias=True, exclude_none=True) for zone in layout.zones]
    row = session.get(CameraZones, (site_id, node_id, camera_id))
    if row is None:
        row = CameraZones(site_id=site_id, node_id=node_id, camera_id=camera_id, version=0)
        session.add(row)
    row.zones, row.masks = zones, layout.masks.model_dump(mode="json")
    row.version, row.updated_by, row.updated_at = row.version + 1, author, now
    return row


def payload(row: CameraZones) -> str:
    """The retained message for the edge: a ``CameraConfig`` (validated again, so the wire form is the contract's)."""
    return CameraConfig(site_id=row.site_id, node_id=row.node_id, camera_id=row.camera_id, version=row.version,
                        zones=row.zones, masks=row.masks or {}).to_json()
