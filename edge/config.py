"""The edge node's YAML configuration, validated so that every error names the offending field.

Installers write these files by hand, so a mistake must come back as
``cameras[0].zones[1].polygon: a polygon needs at least 3 points`` and never as a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gridwatch.broker.contract import Id

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class ConfigError(ValueError):
    """A config that cannot run; the message names each bad field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoiteringRule(_Section):
    """A tracked object that stays in the zone for ``min_dwell_s`` starts an incident."""

    type: Literal["loitering"]
    min_dwell_s: float = Field(gt=0)
    update_every_s: float = Field(10.0, gt=0, description="How often an open incident reports its dwell.")
    exit_grace_s: float = Field(
        2.0, ge=0, description="How long an object may be out of sight or out of the zone before it has left."
    )
    objects: tuple[str, ...] = ("person",)


Rule = Annotated[LoiteringRule, Field(discriminator="type")]
RULE_TYPES = ("loitering",)


def _at_least_a_triangle(polygon: tuple[Point, ...]) -> tuple[Point, ...]:
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}")
    return polygon


class Zone(_Section):
    id: Id
    name: str | None = None
    polygon: tuple[Point, ...] = Field(description="Vertices in normalised image coordinates (0..1).")
    inertia: int = Field(
        2, ge=1, le=30, description="Detector updates an object must be in (or out) before it counts as in (out)."
    )
    min_area: float = Field(
        0.0, ge=0, lt=1, description="Smallest box area, as a fraction of the frame, that can be in the zone."
    )
    rules: tuple[Rule, ...] = Field(min_length=1)

    _polygon = field_validator("polygon")(_at_least_a_triangle)


class Motion(_Section):
    """Motion gating: the detector runs only where something moves or something tracked needs a refresh."""

    enabled: bool = True
    width: int = Field(160, ge=32, le=640, description="Width of the downscaled grey frame the motion stage uses.")
    threshold: int = Field(25, ge=1, le=255, description="Grey-level change that counts as motion.")
    min_area: float = Field(
        0.0005, ge=0, lt=1, description="Smallest moving blob, as a fraction of the frame, that counts."
    )
    refresh_s: float = Field(
        2.0, gt=0, description="How often tracked objects are re-detected while nothing new moves."
    )
    masks: tuple[tuple[Point, ...], ...] = Field(
        (), description="Polygons (normalised) where motion is ignored: trees, timestamp overlays."
    )

    @field_validator("masks")
    @classmethod
    def _masks_are_polygons(cls, masks: tuple[tuple[Point, ...], ...]) -> tuple[tuple[Point, ...], ...]:
        for mask in masks:
            _at_least_a_triangle(mask)
        return masks


class Tamper(_Section):
    """Covered, defocused or turned-away camera, judged against the camera's own reference view."""

    enabled: bool = True
    check_every_s: float = Field(1.0, gt=0)
    after_s: float = Field(5.0, ge=0, description="How long the view must stay wrong before it is reported.")
    reference_after_s: float = Field(3.0, ge=0, description="Seconds of footage before the reference view is taken.")


class Camera(_Section):
    id: Id
    source: str = Field(min_length=1, description="File path, rtsp:// or http(s):// URL, or a USB index.")
    detect_fps: float = Field(5.0, gt=0, le=30)
    loop: bool = Field(False, description="Start a file source again at its end (demos).")
    stall_s: float = Field(5.0, gt=0, description="No frame for this long: the stream is stalled and reopened.")
    offline_event_s: float = Field(30.0, gt=0, description="Lost for this long: a camera_offline event starts.")
    motion: Motion = Motion()
    tamper: Tamper = Tamper()
    zones: tuple[Zone, ...] = ()

    @model_validator(mode="after")
    def _unique_zone_ids(self) -> Camera:
        ids = [z.id for z in self.zones]
        if len(ids) != len(set(ids)):
            raise ValueError(f"zone ids must be unique within a camera: {ids}")
        return self


class Mqtt(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = None
    qos: Literal[0, 1, 2] = 1


class Server(_Section):
    url: str | None = Field(None, description="Base URL of the GridWatch server, for snapshot upload.")


PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class Detector(_Section):
    model: str = "yolox_nano"
    model_path: str | None = None
    input_size: tuple[int, int] | None = Field(None, description="(height, width); default: the manifest's.")
    classes: tuple[str, ...] | None = Field(None, description="Class names by output index; default: the manifest's.")
    confidence: float = Field(0.3, gt=0, lt=1)
    class_confidence: dict[str, float] = Field(default_factory=dict)
    nms_iou: float = Field(0.45, gt=0, lt=1)
    providers: tuple[Literal["cpu", "cuda", "openvino", "tensorrt"], ...] = Field(
        ("cpu",), min_length=1, description="onnxruntime execution providers, in order of preference."
    )
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads per inference.")
    workers: int = Field(
        2, ge=1, le=16, description="Inferences run at once on the shared session; small models scale by workers."
    )


class Evidence(_Section):
    dir: str = "evidence"
    jpeg_quality: int = Field(85, ge=30, le=100)


class EdgeConfig(_Section):
    site_id: Id
    node_id: Id
    mqtt: Mqtt = Mqtt()
    server: Server = Server()
    detector: Detector = Detector()
    evidence: Evidence = Evidence()
    status_period_s: float = Field(10.0, gt=0, description="How often each camera's retained status is refreshed.")
    cameras: tuple[Camera, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> EdgeConfig:
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError(f"camera ids must be unique: {ids}")
        return self


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _readable(error: ValidationError) -> str:
    """One line per root cause; 'too short' echoes of an item that already failed are dropped."""
    items = error.errors(include_url=False)
    failed = [tuple(i["loc"]) for i in items]
    lines = []
    for item in items:
        location = tuple(p for p in item["loc"] if p not in RULE_TYPES)
        if item["type"] == "too_short" and any(
            len(other) > len(item["loc"]) and other[: len(item["loc"])] == tuple(item["loc"]) for other in failed
        ):
            continue
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "union_tag_invalid":
            message = f"unknown rule type {item['input'].get('type')!r} (known: {', '.join(RULE_TYPES)})"
            location = (*location, "type")
        lines.append(f"{_field_path(location)}: {message}")
    return "\n".join(lines)


def parse_config(data: object, base_dir: Path | None = None) -> EdgeConfig:
    """Validate already-loaded YAML; file sources are made absolute relative to ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError("(top level): the config must be a mapping of keys to values")
    try:
        config = EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_readable(exc)) from None
    if base_dir is None:
        return config
    cameras = tuple(
        cam.model_copy(update={"source": resolve_source(cam.source, base_dir)}) for cam in config.cameras
    )
    return config.model_copy(update={"cameras": cameras})


def resolve_source(source: str, base_dir: Path) -> str:
    if "://" in source or source.isdigit() or Path(source).is_absolute():
        return source
    return str((base_dir / source).resolve())


def load_config(path: Path) -> EdgeConfig:
    """Read and validate a config file; every failure is a ConfigError with a readable message."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, base_dir=path.parent)
