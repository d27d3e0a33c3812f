"""JSON shapes of the REST API and the live stream, separate from the tables they are read from.

Keeping them apart lets the tables grow (or be renamed) without silently changing what the console
and integrators receive; the OpenAPI document at ``/docs`` is generated from these models.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TicketOut(_Out):
    id: int
    incident_id: str
    type: str
    site_id: str
    node_id: str
    camera_id: str
    zone_id: str
    stage: str
    opened_at: datetime
    last_event_at: datetime
    ended_at: datetime | None
    event_count: int
    snapshot_sha256: str | None
    latest_snapshot_sha256: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class EventOut(_Out):
    event_id: str
    incident_id: str
    type: str
    phase: str
    site_id: str
    node_id: str
    camera_id: str
    zone_id: str
    observed_at: datetime
    received_at: datetime
    ticket_id: int
    snapshot_sha256: str | None
    payload: dict[str, Any]


class TicketDetail(TicketOut):
    events: list[EventOut]


class DeadLetterOut(BaseModel):
    """A refused message; the payload is shown as text when it is UTF-8, else as base64."""

    id: int
    topic: str
    reason: str
    received_at: datetime
    size: int
    payload_text: str | None
    payload_base64: str | None

    @classmethod
    def from_row(cls, row: Any) -> DeadLetterOut:
        raw: bytes = row.payload
        try:
            text, b64 = raw.decode("utf-8"), None
        except UnicodeDecodeError:
            text, b64 = None, base64.b64encode(raw).decode("ascii")
        return cls(id=row.id, topic=row.topic, reason=row.reason, received_at=row.received_at,
                   size=len(raw), payload_text=text, payload_base64=b64)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class DatabaseHealth(BaseModel):
    ok: bool
    backend: str
    error: str | None = None


class MqttHealth(BaseModel):
    enabled: bool
    connected: bool
    subscribed: bool
    url: str
    subscription: str
    stored: int
    duplicates: int
    dead_lettered: int
    errors: int


class Health(BaseModel):
    status: str
    database: DatabaseHealth
    mqtt: MqttHealth
    counts: dict[str, int]


class SnapshotStored(BaseModel):
    sha256: str
    size: int
    content_type: str
    created: bool
    url: str


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody
