"""Typed payload models of the MQTT contract, imported by both edge and server.

These pydantic models are the single source of the payload shapes: the JSON Schemas in
``broker/schemas/`` are generated from them (``gridwatch broker schemas --write``) and a test keeps
the two identical, so integrators who never read our code validate against the same rules we do.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gridwatch.broker.topics import Id
from gridwatch.broker.zones import Masks, ZoneList

EVENT_SCHEMA = "gridwatch.event/1"
NODE_STATUS_SCHEMA = "gridwatch.node-status/1"
CAMERA_STATUS_SCHEMA = "gridwatch.camera-status/1"
TICKET_TRANSITION_SCHEMA = "gridwatch.ticket-transition/1"
GATE_COMMAND_SCHEMA = "gridwatch.gate-command/1"
GATE_ACK_SCHEMA = "gridwatch.gate-ack/1"
CAMERA_CONFIG_SCHEMA = "gridwatch.camera-config/1"
UNIFORM_EXAMPLES_SCHEMA = "gridwatch.uniform-examples/1"
# An event clip (PUT /api/clips/<event_id>) names its sha256 here: the event cannot (it is sent first).
CLIP_SHA256_HEADER = "X-GridWatch-Sha256"
# ... and says whether its faces were blurred (``true``/``false``): a site that requires blur refuses the rest.
CLIP_FACES_BLURRED_HEADER = "X-GridWatch-Faces-Blurred"

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
# ISO-8601 with a zone. The pattern makes the JSON Schema as strict as the model: validators that do
# not check `format: date-time` would otherwise accept naive or nonsense timestamps.
Timestamp = Annotated[
    AwareDatetime,
    Field(json_schema_extra={"pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"}),
]


class EventType(StrEnum):
    """What the edge recognised. The server opens one ticket per incident of any type."""

    LOITERING = "loitering"
    FIRE_LANE_BLOCKED = "fire_lane_blocked"
    FIRE_LANE_OBSTRUCTED = "fire_lane_obstructed"
    COURIER_ENTRY = "courier_entry"
    COURIER_OVERSTAY = "courier_overstay"
    CAMERA_OFFLINE = "camera_offline"
    CAMERA_TAMPER = "camera_tamper"
    # Raised by the node itself: its outbox dropped stored events to stay within its bounds.
    EDGE_OUTBOX_OVERFLOW = "edge_outbox_overflow"


# Where node-level events (not about one camera's view) are published: camera ``node``, zone ``outbox``.
NODE_CAMERA_ID = "node"
OUTBOX_ZONE_ID = "outbox"


class Phase(StrEnum):
    """An incident is reported as one ``start``, any number of ``update`` and one ``end``."""

    START = "start"
    UPDATE = "update"
    END = "end"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    def to_json(self) -> str:
        """The wire form: field aliases (``schema``, ``class``) as the JSON Schemas name them."""
        return self.model_dump_json(by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class DetectedObject(_Payload):
    """The tracked object the event is about; ``box`` is (x1, y1, x2, y2) normalised to 0..1."""

    class_name: str = Field(alias="class", min_length=1, max_length=64)
    track_id: int = Field(ge=0)
    box: tuple[Unit, Unit, Unit, Unit]
    confidence: Unit


class SnapshotRef(_Payload):
    """A claim-check for the JPEG evidence: the bytes travel over HTTP, keyed by their hash."""

    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    content_type: str = "image/jpeg"
    width: int = Field(gt=0)
    height: int = Field(gt=0)


# A mainland plate number without separators: province character, issuing letter (no I or O), then 5 letters and
# digits (the last may be a class character such as 警) or 6 on a new-energy plate. Edge reads and the server's
# vehicle list both hold numbers in this form.
PLATE_TEXT_PATTERN = r"^[\u4e00-\u9fff][A-HJ-NP-Z][A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9\u4e00-\u9fff][A-HJ-NP-Z0-9]?$"


class PlateStatus(StrEnum):
    READ = "read"
    UNREADABLE = "unreadable"


class PlateReading(_Payload):
    """The licence plate of the vehicle blocking a fire lane, read on the edge and voted over several frames.

    Only ``fire_lane_blocked`` events carry one, so plate numbers are stored on fire-lane tickets only.
    ``unreadable`` is an answer, not an error: the plate was too small, dark or blurred to read without
    guessing, and ``text`` is then absent.
    """

    status: PlateStatus
    text: str | None = Field(
        None, pattern=PLATE_TEXT_PATTERN,
        description="The plate number without separators, e.g. 京AD12345 (shown as 京A·D12345); set when read.")
    colour: Literal["blue", "yellow", "green", "white"] | None = Field(
        None, description="The plate's background: blue (cars), yellow (large vehicles), green (new-energy), white.")
    confidence: Unit = Field(0.0, description="The weakest character's probability, averaged over the agreeing frames.")
    frames: int = Field(ge=1, le=100, description="How many frames were read and voted on.")
    crop_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="The plate crop's snapshot hash (unblurred: the number is the point).")

    @model_validator(mode="after")
    def _text_when_read(self) -> PlateReading:
        if (self.status is PlateStatus.READ) != (self.text is not None):
            raise ValueError("text is set exactly when status is 'read'")
        return self


class Event(_Payload):
    """One observation of an incident, published on the camera's events topic at QoS 1."""

    schema_: str = Field(EVENT_SCHEMA, alias="schema", pattern=r"^gridwatch\.event/1$")
    event_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] = Field(
        default_factory=lambda: uuid.uuid4().hex,
        description="Globally unique, generated on the edge; the idempotency key.",
    )
    incident_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] = Field(
        description="Shared by the start, updates and end of one incident; one ticket per incident.",
    )
    type: EventType
    phase: Phase
    site_id: Id
    node_id: Id
    camera_id: Id
    zone_id: Id
    object: DetectedObject | None = None
    started_at: Timestamp
    observed_at: Timestamp
    ended_at: Timestamp | None = None
    attributes: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Rule-specific figures, e.g. dwell_s for loitering."
    )
    snapshot: SnapshotRef | None = None
    source_time_s: float | None = Field(
        None, ge=0, description="Seconds from the start of the source clip, when the source is a file."
    )
    seq: int | None = Field(
        None, ge=1, le=2**63 - 1,
        description="Per-node sequence number: every event a node publishes through its outbox takes the next "
        "one, kept on disk across restarts, so a gap tells the server an event was lost (or is late). Absent "
        "from replays written to a file.",
    )
    epoch: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$",
        description="The identity of the outbox that numbered this event, made when a node's outbox is created. "
        "A node whose outbox was wiped (new disk, reinstall) numbers from 1 again under a new epoch, so the "
        "server reports a reset rather than a gap. Present whenever seq is.",
    )
    plate: PlateReading | None = Field(
        None, description="The blocking vehicle's plate (fire_lane_blocked only): an update shortly after the "
        "start, and the end, carry what the edge read.")

    @model_validator(mode="after")
    def _plate_on_fire_lane_only(self) -> Event:
        if self.plate is not None and self.type is not EventType.FIRE_LANE_BLOCKED:
            raise ValueError("plate: only fire_lane_blocked events carry a plate")
        return self


class NodeState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class NodeStatus(_Payload):
    """Retained node availability; ``offline`` is also the node's MQTT last will."""

    schema_: str = Field(NODE_STATUS_SCHEMA, alias="schema", pattern=r"^gridwatch\.node-status/1$")
    site_id: Id
    node_id: Id
    state: NodeState
    at: Timestamp


class CameraStatus(_Payload):
    """Retained per-camera health, refreshed periodically by the edge."""

    schema_: str = Field(CAMERA_STATUS_SCHEMA, alias="schema", pattern=r"^gridwatch\.camera-status/1$")
    site_id: Id
    node_id: Id
    camera_id: Id
    state: NodeState
    at: Timestamp
    frames_in: int = Field(ge=0)
    frames_detected: int = Field(ge=0)
    inference_ms: float = Field(ge=0)
    fps_in: float = Field(0.0, ge=0, description="Frames decoded per second over the last status period.")
    fps_processed: float = Field(0.0, ge=0, description="Sampled frames processed per second (motion gate and rules).")
    fps_detected: float = Field(0.0, ge=0, description="Frames the detector ran on per second.")
    frames_dropped: int = Field(0, ge=0, description="Stale frames skipped to stay in real time, since start.")
    detail: str | None = Field(None, max_length=500, description="Why the camera is offline, when it is.")


class TicketTransition(_Payload):
    """One entry of a ticket's audit trail, published by the server on the ticket's transitions topic.

    ``action`` is a lifecycle action (``register``, ``dispatch``, ``verify``, …) or a system notice
    (``open``, ``merge``, ``sla_warning``, ``escalate``); ``version`` is the ticket's version after it.
    """

    schema_: str = Field(TICKET_TRANSITION_SCHEMA, alias="schema", pattern=r"^gridwatch\.ticket-transition/1$")
    transition_id: int = Field(ge=1)
    ticket_id: int = Field(ge=1)
    site_id: Id
    grid_id: Id | None = None
    type: EventType
    action: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
    from_stage: str | None = None
    to_stage: str
    actor: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=16)
    at: Timestamp
    version: int = Field(ge=1)
    details: dict[str, Any] = Field(default_factory=dict)


HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class GateAction(StrEnum):
    OPEN = "open"


# How long a gate command stays valid when the gate policy does not say (``GatePolicy.command_ttl_s``):
# long enough for a round trip over a healthy link, short enough that the courier is still there.
GATE_COMMAND_TTL_S = 5.0


class GateCommand(_Payload):
    """An order to a gate controller, e.g. open for a courier whose uniform the policy allows.

    ``event_id`` ties the opening to the ``courier_entry`` event that justified it, so the audit
    trail shows why every gate opened. A command is valid until ``expires_at`` only: a gate that
    opens minutes after the courier left is a hole in the fence, so controllers refuse an expired
    (or already seen) command, and senders never queue one while disconnected.
    """

    schema_: str = Field(GATE_COMMAND_SCHEMA, alias="schema", pattern=r"^gridwatch\.gate-command/1$")
    command_id: HexId = Field(default_factory=lambda: uuid.uuid4().hex,
                              description="Idempotency key; the ack echoes it.")
    command: GateAction
    gate_id: Id
    event_id: HexId | None = Field(None, description="The event that caused the command, if any.")
    reason: str = Field(min_length=1, max_length=200)
    factors: tuple[Literal["uniform", "code", "words"], ...] = Field(
        (), description="The gate policy's factors that passed for this opening (empty: a manual command).")
    issued_at: Timestamp
    expires_at: Timestamp = Field(
        description="The command is void from this instant on: a controller refuses it (ack refused, detail "
        "'expired'); a command without it, from a sender older than this field, counts as expired.")

    @model_validator(mode="after")
    def _expires_after_issue(self) -> GateCommand:
        if self.expires_at <= self.issued_at:
            raise ValueError("expires_at must be after issued_at")
        return self

    @classmethod
    def open_gate(cls, gate_id: str, reason: str, *, issued_at: datetime | None = None,
                  ttl_s: float = GATE_COMMAND_TTL_S, event_id: str | None = None,
                  factors: tuple[str, ...] = ()) -> GateCommand:
        """An ``open`` valid for ``ttl_s`` from ``issued_at`` (now): edge and console build it the same way."""
        issued = issued_at or now_utc()
        return cls(command=GateAction.OPEN, gate_id=gate_id, event_id=event_id, reason=reason, factors=factors,
                   issued_at=issued, expires_at=issued + timedelta(seconds=ttl_s))

    def expired(self, at: datetime | None = None) -> bool:
        """Past ``expires_at`` at ``at`` (now): the controller's clock decides, so keep it NTP-synced."""
        return (at or now_utc()) >= self.expires_at


class GateAckStatus(StrEnum):
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


class GateAck(_Payload):
    """The gate controller's answer to one ``GateCommand``."""

    schema_: str = Field(GATE_ACK_SCHEMA, alias="schema", pattern=r"^gridwatch\.gate-ack/1$")
    command_id: HexId
    gate_id: Id
    status: GateAckStatus
    detail: str | None = Field(None, max_length=200)
    at: Timestamp


class CameraConfig(_Payload):
    """A camera's zones, rules and masks as saved in the console, published retained by the server.

    The node applies a config whose ``version`` is newer than the one it runs, without restarting
    the stream; ``zones`` is the edge config's ``cameras[].zones`` list, validated by the same model.
    """

    schema_: str = Field(CAMERA_CONFIG_SCHEMA, alias="schema", pattern=r"^gridwatch\.camera-config/1$")
    site_id: Id
    node_id: Id
    camera_id: Id
    version: int = Field(ge=1, le=2**63 - 1, description="Increases with every save; the node ignores older ones.")
    zones: ZoneList = Field(description="The camera's zones, as under cameras[].zones in the edge config.")
    masks: Masks = Field(Masks(), description="The camera's privacy masks (cameras[].privacy_masks in the edge "
                         "config) and motion masks (cameras[].motion.masks).")


class UniformExample(_Payload):
    """One person crop a supervisor marked, in the console, as (not) wearing the uniform."""

    crop_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The crop's snapshot hash.")
    label: Literal["positive", "negative"] = Field(
        description="positive: the person wears the uniform; negative: an ordinary person of the site it was "
        "mistaken for (or might be).")
    url: str = Field(pattern=r"^/api/snapshots/[0-9a-f]{64}$",
                     description="Where the node fetches the crop, relative to its server.url (with its token).")
    event_id: HexId = Field(description="The event the crop was taken from.")
    added_at: Timestamp


class UniformExamples(_Payload):
    """Every example added in the console to one uniform at one site, published retained by the server.

    A node that knows the uniform refits its profile with the enrolment's own photos plus these, and
    swaps the matcher without restarting; a ``version`` no newer than the one it applied is ignored.
    """

    schema_: str = Field(UNIFORM_EXAMPLES_SCHEMA, alias="schema", pattern=r"^gridwatch\.uniform-examples/1$")
    site_id: Id
    uniform_id: Id
    version: int = Field(ge=1, le=2**63 - 1, description="Increases with every example added.")
    examples: list[UniformExample] = Field(max_length=2000)


PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    "event": Event,
    "node-status": NodeStatus,
    "camera-status": CameraStatus,
    "ticket-transition": TicketTransition,
    "gate-command": GateCommand,
    "gate-ack": GateAck,
    "camera-config": CameraConfig,
    "uniform-examples": UniformExamples,
}


def parse_event(raw: bytes | str) -> Event:
    """Validate a raw MQTT payload; raises pydantic.ValidationError with the reason."""
    return Event.model_validate_json(raw)


def now_utc() -> datetime:
    return datetime.now(UTC)
