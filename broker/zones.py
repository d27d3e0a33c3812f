"""Zones and their rules: the shapes that the edge runs and the server validates and publishes.

They are part of the MQTT contract: a camera-config payload (``camera-config.v1.json``) carries a
camera's zones, so the console's save, the server's check and the edge's loader use these models and
nothing else. The edge's own YAML config embeds them under ``cameras[].zones``. This module needs
pydantic only (no OpenCV, no database), so an integrator can validate a config with the contract alone.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from gridwatch.broker.topics import Id

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


BLUR_FACES = ("Blur every face found on this rule's stored images (snapshots, crops, after-views), and the "
              "head of every person whose face was not found. Off only where the site's policy allows sharp "
              "faces: a server that requires blur refuses such images.")
BLUR_PLATES = ("Blur the licence-plate band of every vehicle on this rule's stored images (a site may keep "
               "plates for fire-lane tickets by turning this off on that rule).")


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not be silently ignored); values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def time_windows(windows: tuple[str, ...]) -> tuple[str, ...]:
    """Check 'HH:MM-HH:MM' windows, so a typo is named at load time rather than silently never matching."""
    for window in windows:
        try:
            start, end = window.split("-")
            for part in (start, end):
                hours, minutes = part.split(":")
                if not (0 <= int(hours) <= 24 and 0 <= int(minutes) < 60):
                    raise ValueError
        except ValueError:
            raise ValueError(f"time window {window!r} is not 'HH:MM-HH:MM'") from None
    return windows


class LoiteringRule(StrictModel):
    """A tracked object that stays in the zone for ``min_dwell_s`` starts an incident."""

    type: Literal["loitering"]
    min_dwell_s: float = Field(gt=0)
    update_every_s: float = Field(10.0, gt=0, description="How often an open incident reports its dwell.")
    exit_grace_s: float = Field(
        2.0, ge=0, description="How long an object may be out of sight or out of the zone before it has left."
    )
    objects: tuple[str, ...] = ("person",)
    max_alerts_per_track: int = Field(
        0, ge=0, description="Incidents one tracked person may raise in this zone (0: no cap)."
    )
    schedule: tuple[str, ...] = Field(
        (), description="Local time windows 'HH:MM-HH:MM' when the rule is armed (empty: always); may cross midnight."
    )
    blur_faces: bool = Field(True, description=BLUR_FACES)
    blur_plates: bool = Field(True, description=BLUR_PLATES)
    rejoin_s: float = Field(
        0.0, ge=0, description="A person who left may come back within this long and keep the incident, if the "
        "tracker or the appearance model (OSNet) says it is the same person; the end waits this long. 0: off."
    )
    rejoin_similarity: float = Field(
        0.9, gt=0, le=1, description="Appearance similarity (cosine, OSNet) that counts as the same person."
    )

    _schedule = field_validator("schedule")(time_windows)


class GatePolicy(StrictModel):
    """Which uniforms open which gate, and when; the command goes to the node's commands topic."""

    gate_id: Id
    allowed: tuple[Id, ...] = Field(min_length=1, description="Uniform ids allowed through this gate.")
    windows: tuple[str, ...] = Field((), description="Local time windows 'HH:MM-HH:MM' when entry is allowed.")
    ack_timeout_s: float = Field(5.0, gt=0, description="How long to wait for the gate controller's ack.")
    command_ttl_s: float = Field(
        5.0, gt=0, le=60, description="How long an open command stays valid (its expires_at); a controller "
        "refuses it after that, so a gate never opens after the courier has gone.")
    factors: tuple[Literal["uniform", "code", "words"], ...] = Field(
        ("uniform",), min_length=1, max_length=3, description="What must pass for the gate to open, all of them: "
        "the uniform (an allowed company), the rider's QR code (signed by an allowed platform, unexpired, unused), "
        "the company's words printed on the person's jacket or box (美团外卖, 饿了么, 顺丰速运, 京东物流: an allowed "
        "company; the node needs the reading extra).")
    code_secret_env: str = Field(
        "GRIDWATCH_GATE_CODE_SECRET", pattern=r"^[A-Z_][A-Z0-9_]*$", description="Environment variable on the "
        "edge holding the HMAC secret rider codes are signed with (the secret itself is never in the config).")

    _windows = field_validator("windows")(time_windows)

    @field_validator("factors")
    @classmethod
    def _distinct_factors(cls, factors: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(factors)) != len(factors):
            raise ValueError("each factor once, e.g. [uniform], [code], [words, code] or [uniform, code]")
        return factors


class CourierRule(StrictModel):
    """A person whose torso matches a uniform, by consensus over several detections: a courier entry."""

    type: Literal["courier"]
    uniforms: tuple[Id, ...] = Field(min_length=1, description="Uniform ids (catalogue or config) to recognise.")
    objects: tuple[str, ...] = ("person",)
    min_votes: int = Field(3, ge=1, le=50, description="Detections of a person needed before deciding.")
    max_votes: int = Field(10, ge=1, le=200, description="After this many without agreement, the person is no courier.")
    agreement: float = Field(0.6, gt=0, le=1, description="Share of the votes the winning uniform needs.")
    gate: GatePolicy | None = None
    direction: Literal["entry", "exit"] = Field(
        "entry", description="entry: couriers come in here; exit: couriers seen here have left the compound."
    )
    overstay_s: float | None = Field(
        None, gt=0, description="An entered courier not seen at an exit rule within this time: courier_overstay."
    )
    blur_faces: bool = Field(True, description=BLUR_FACES)
    blur_plates: bool = Field(True, description=BLUR_PLATES)

    @model_validator(mode="after")
    def _entry_only_settings(self) -> CourierRule:
        if self.direction == "exit" and (self.gate is not None or self.overstay_s is not None):
            raise ValueError("gate and overstay_s belong to an entry rule, not to direction: exit")
        return self


# The classes YOLOX-nano gives a car seen from straight above, besides the vehicle classes: mostly
# "cell phone", also "suitcase" and "toilet" (measured on the hand-labelled overhead frames of
# bench/vehicle_labels.csv by ``python -m bench accuracy``). A fire lane has no phones, suitcases or
# toilets of a car's size; a suitcase left there is an obstruction anyway.
OVERHEAD_VEHICLE_ALIASES = ("cell phone", "suitcase", "toilet")


class FireLaneRule(StrictModel):
    """A vehicle stationary in the lane, or unexplained clutter on it, for ``min_stationary_s``."""

    type: Literal["fire_lane"]
    min_stationary_s: float = Field(gt=0)
    objects: tuple[str, ...] = ("car", "truck", "bus", "motorcycle")
    view: Literal["side", "overhead"] = Field("side", description=(
        "overhead: the camera looks straight down, where the detector often names a car 'cell phone', "
        "'suitcase' or 'toilet'; those classes then count as vehicles too."))
    same_place_iou: float = Field(
        0.6, gt=0, lt=1, description="Box overlap with where the vehicle stopped that still counts as the same place."
    )
    clear_after_s: float = Field(
        5.0, gt=0, description="Unseen for this long (occlusion, detector flicker) before the spot counts as clear."
    )
    clutter: bool = Field(True, description="Also watch the lane's background for objects the detector misses.")
    clutter_min_area: float = Field(
        0.02, gt=0, lt=1, description="Smallest changed area, as a fraction of the lane, that counts as clutter."
    )
    blur_faces: bool = Field(True, description=BLUR_FACES)
    blur_plates: bool = Field(True, description=BLUR_PLATES)
    read_plates: bool = Field(
        False, description="Read the blocking vehicle's plate at the incident's start and before its end (the "
        "node needs the reading extra); the number goes on the event and the ticket, nowhere else.")


Rule = Annotated[LoiteringRule | CourierRule | FireLaneRule, Field(discriminator="type")]


def detector_classes(rule: LoiteringRule | CourierRule | FireLaneRule) -> tuple[str, ...]:
    """The detector classes a rule watches: its objects, and for an overhead fire lane their aliases."""
    if isinstance(rule, FireLaneRule) and rule.view == "overhead":
        return rule.objects + tuple(a for a in OVERHEAD_VEHICLE_ALIASES if a not in rule.objects)
    return rule.objects
RULE_TYPES = ("loitering", "courier", "fire_lane")


def at_least_a_triangle(polygon: tuple[Point, ...]) -> tuple[Point, ...]:
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}")
    return polygon


# A polygon of one camera's view and the rules that watch it (no docstring: it would change the published
# camera-config JSON Schema, whose descriptions come from the models).
class Zone(StrictModel):
    id: Id
    name: str | None = None
    # minItems: the published camera-config JSON Schema is as strict as the validator below.
    polygon: tuple[Point, ...] = Field(description="Vertices in normalised image coordinates (0..1).",
                                       json_schema_extra={"minItems": 3})
    inertia: int = Field(
        2, ge=1, le=30, description="Detector updates an object must be in (or out) before it counts as in (out)."
    )
    min_area: float = Field(
        0.0, ge=0, lt=1, description="Smallest box area, as a fraction of the frame, that can be in the zone."
    )
    rules: tuple[Rule, ...] = Field(min_length=1)

    _polygon = field_validator("polygon")(at_least_a_triangle)


def _unique_zone_ids(zones: tuple[Zone, ...]) -> tuple[Zone, ...]:
    ids = [zone.id for zone in zones]
    if len(ids) != len(set(ids)):
        raise ValueError(f"zone ids must be unique within a camera: {ids}")
    return zones


# One camera's zones, checked as the edge checks them (the console validates a save with this too).
ZoneList = Annotated[tuple[Zone, ...], AfterValidator(_unique_zone_ids)]


# A mask: a polygon without rules (the error of a bad one names its index, e.g. ``privacy.1``).
Polygon = Annotated[tuple[Point, ...], AfterValidator(at_least_a_triangle), Field(json_schema_extra={"minItems": 3})]
Polygons = tuple[Polygon, ...]


class Masks(StrictModel):
    """Areas of a camera's view drawn like zones, without rules."""

    privacy: Polygons = Field(
        (), description="Blacked out on every image the node stores, originals included (a neighbour's window, a "
        "changing-room door): what is there is never recorded.")
    motion: Polygons = Field(
        (), description="Where movement does not wake the detector (trees, flags, a timestamp overlay).")
