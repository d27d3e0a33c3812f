"""JSON shapes of the REST API and the live stream, separate from the tables they are read from.

Keeping them apart lets the tables grow (or be renamed) without silently changing what the console
and integrators receive; the OpenAPI document at ``/docs`` is generated from these models.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.broker.contract import PlateReading
from gridwatch.broker.topics import ID_PATTERN

T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TicketOut(_Out):
    id: int
    incident_id: str
    type: str
    site_id: str
    node_id: str | None  # None: reported by a person (source open311), not seen by a camera
    camera_id: str | None
    zone_id: str | None
    source: str
    latitude: float | None
    longitude: float | None
    address: str | None
    description: str | None
    media_url: str | None
    stage: str
    opened_at: datetime
    last_event_at: datetime
    ended_at: datetime | None
    event_count: int
    snapshot_sha256: str | None
    latest_snapshot_sha256: str | None
    attributes: dict[str, Any]
    plate: PlateReading | None = None  # fire-lane tickets: the blocking vehicle's plate as the edge read it
    created_at: datetime
    updated_at: datetime
    fingerprint: str
    incident_count: int
    open_incidents: int
    previous_ticket_id: int | None
    category: str
    subcategory: str
    category_version: int
    responsible_unit: str | None
    grid_id: str | None
    community_id: str | None
    street_id: str | None
    district_id: str | None
    version: int
    assignee_kind: str | None
    assignee_id: str | None
    extension_request: dict[str, Any] | None
    rework_count: int
    false_alarm_reason: str | None
    false_alarm_at: datetime | None
    extension_count: int
    rating: int | None
    stage_entered_at: datetime
    due_at: datetime | None
    escalation_level: int
    overdue: bool


class TransitionOut(_Out):
    id: int
    ticket_id: int
    action: str
    from_stage: str | None
    to_stage: str
    actor: str
    role: str
    at: datetime
    version: int
    details: dict[str, Any]


class TransitionResult(BaseModel):
    ticket: TicketOut
    transition: TransitionOut


class SilenceIn(BaseModel):
    """A time-boxed mute; leave a matcher empty to match anything. Its author is the login."""

    model_config = ConfigDict(extra="forbid")

    site_id: str | None = None
    grid_id: str | None = None
    camera_id: str | None = None
    zone_id: str | None = None
    type: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime
    reason: str = Field(min_length=1, max_length=2000)


class SilenceOut(_Out):
    id: int
    site_id: str | None
    grid_id: str | None
    camera_id: str | None
    zone_id: str | None
    type: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    author: str
    created_at: datetime


class CategoryTableOut(BaseModel):
    version: int
    table: dict[str, Any]


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
    ticket_id: int | None
    snapshot_sha256: str | None
    payload: dict[str, Any]


class HourlyCount(BaseModel):
    hour: datetime
    events: int


class OwnerOut(BaseModel):
    """The resident whose vehicle blocks the lane, from the site's vehicle list (``/api/registry/vehicles``)."""

    unit: str
    person: str
    phone: str


class TicketDetail(TicketOut):
    events: list[EventOut]
    owner: OwnerOut | None = Field(None, description="Fire-lane tickets whose plate is in the residents' list.")
    owner_notified: bool = Field(False, description="The owner was notified for this ticket (once only).")


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


class ClipStored(BaseModel):
    event_id: str
    sha256: str
    size: int
    created: bool
    url: str


class ClipOut(BaseModel):
    event_id: str
    phase: str
    observed_at: datetime
    url: str


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


# Row ids are INTEGER (int4 on PostgreSQL): a larger number in a URL is a 422, not a database overflow.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RowIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)]
# Site, node, camera and gate ids in URLs follow the MQTT topic rule, so a bad id is a 422, not a TopicError.
TopicId = Annotated[str, Path(pattern=ID_PATTERN)]


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


# A 404 documented as JSON even on routes whose success body is text (registry.yaml, registry.csv):
# with ``model=`` FastAPI would file the error body under the route's own text media type.
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found", "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}}
