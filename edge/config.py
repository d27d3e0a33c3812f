"""The edge node's YAML configuration, validated so that every error names the offending field.

Installers write these files by hand, so a mistake must come back as
``cameras[0].zones[1].polygon: a polygon needs at least 3 points`` and never as a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gridwatch.broker.topics import Id

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class ConfigError(ValueError):
    """A config that cannot run; the message names each bad field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _time_windows(windows: tuple[str, ...]) -> tuple[str, ...]:
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


class LoiteringRule(_Section):
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
    blur_faces: bool = Field(True, description="Blur faces in this rule's stored snapshots.")
    rejoin_s: float = Field(
        0.0, ge=0, description="A person who left may come back within this long and keep the incident, if the "
        "tracker or the appearance model (OSNet) says it is the same person; the end waits this long. 0: off."
    )
    rejoin_similarity: float = Field(
        0.9, gt=0, le=1, description="Appearance similarity (cosine, OSNet) that counts as the same person."
    )

    _schedule = field_validator("schedule")(_time_windows)


class GatePolicy(_Section):
    """Which uniforms open which gate, and when; the command goes to the node's commands topic."""

    gate_id: Id
    allowed: tuple[Id, ...] = Field(min_length=1, description="Uniform ids allowed through this gate.")
    windows: tuple[str, ...] = Field((), description="Local time windows 'HH:MM-HH:MM' when entry is allowed.")
    ack_timeout_s: float = Field(5.0, gt=0, description="How long to wait for the gate controller's ack.")

    _windows = field_validator("windows")(_time_windows)


class CourierRule(_Section):
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
    blur_faces: bool = Field(False, description="Blur faces in this rule's stored snapshots.")

    @model_validator(mode="after")
    def _entry_only_settings(self) -> CourierRule:
        if self.direction == "exit" and (self.gate is not None or self.overstay_s is not None):
            raise ValueError("gate and overstay_s belong to an entry rule, not to direction: exit")
        return self


class FireLaneRule(_Section):
    """A vehicle stationary in the lane, or unexplained clutter on it, for ``min_stationary_s``."""

    type: Literal["fire_lane"]
    min_stationary_s: float = Field(gt=0)
    objects: tuple[str, ...] = ("car", "truck", "bus", "motorcycle")
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
    blur_faces: bool = Field(False, description="Blur faces in this rule's stored snapshots.")


Rule = Annotated[LoiteringRule | CourierRule | FireLaneRule, Field(discriminator="type")]
RULE_TYPES = ("loitering", "courier", "fire_lane")


class ColourRange(_Section):
    """An OpenCV HSV box (H 0-179, S and V 0-255); hue wraps when hsv_min's hue exceeds hsv_max's (reds)."""

    hsv_min: tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)],
                   Annotated[int, Field(ge=0, le=255)]]
    hsv_max: tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)],
                   Annotated[int, Field(ge=0, le=255)]]

    @model_validator(mode="after")
    def _hue_in_range(self) -> ColourRange:
        if self.hsv_min[0] > 179 or self.hsv_max[0] > 179:
            raise ValueError("hue is 0-179 in OpenCV HSV")
        return self


class Uniform(_Section):
    """A uniform by the colours of its torso; ``examples`` (photos) add an appearance prototype."""

    id: Id
    name: dict[Literal["zh-CN", "en"], str] = Field(min_length=1)
    colors: tuple[ColourRange, ...] = Field(min_length=1)
    min_fraction: float = Field(0.25, gt=0, le=1, description="Share of torso pixels inside the colour ranges.")
    min_similarity: float = Field(
        0.5, ge=-1, le=1, description="Appearance similarity to the examples' prototype needed (when examples exist)."
    )
    examples: tuple[str, ...] = Field((), description="Enrolment photos of people in the uniform (paths).")


def _at_least_a_triangle(polygon: tuple[Point, ...]) -> tuple[Point, ...]:
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}")
    return polygon


class Zone(_Section):
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
        2.0, gt=0, description="How often tracked objects are re-checked while nothing new moves (on pixels; "
        "by the detector when a box changed, and at least every 4th time)."
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


class MqttTls(_Section):
    """Files for an ``mqtts://`` broker with a private CA and/or client certificates (relative to the config)."""

    ca_file: str | None = Field(None, description="PEM CA bundle that signed the broker's certificate.")
    cert_file: str | None = Field(None, description="PEM client certificate (Mosquitto require_certificate).")
    key_file: str | None = Field(None, description="PEM private key of cert_file, unless cert_file holds it.")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class Mqtt(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = None
    qos: Literal[0, 1, 2] = 1
    reconnect_max_s: float = Field(
        30.0, ge=1, le=600, description="Longest wait between reconnect attempts (backoff doubles from 1 s)."
    )
    tls: MqttTls = MqttTls()

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> Mqtt:
        if self.tls != MqttTls() and not self.url.startswith("mqtts://"):
            raise ValueError("tls files are set, so the url must start with mqtts://")
        return self

    def resolved(self, base_dir: Path) -> Mqtt:
        """TLS paths made absolute relative to the config file, each checked to exist."""
        files = {}
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self.tls, name)
            if value is not None:
                path = (base_dir / value).resolve()
                if not path.is_file():
                    raise ConfigError(f"mqtt.tls.{name}: no such file {str(path)!r}")
                files[name] = str(path)
        return self.model_copy(update={"tls": self.tls.model_copy(update=files)})


class Server(_Section):
    url: str | None = Field(None, description="Base URL of the GridWatch server, for snapshot upload.")
    token: str | None = Field(None, description="API token with scope snapshots:write, sent as a Bearer token.")


class OutboxSettings(_Section):
    """The on-disk outbox that keeps events until the broker acknowledges them (see edge/outbox.py)."""

    path: str = Field("outbox.db", description="SQLite file, relative to the config file.")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    max_age_s: float = Field(7 * 24 * 3600.0, gt=0)


class MetricsSettings(_Section):
    """Prometheus text at /metrics and a liveness check at /healthz (see edge/metrics.py)."""

    host: str = Field("127.0.0.1", description="Listen address; 0.0.0.0 exposes it to the LAN.")
    port: int = Field(9108, ge=0, le=65535, description="0 turns the endpoint off.")


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
    max_files: int = Field(
        5000, ge=10, description="Snapshots kept on the node; the oldest are deleted beyond this (bounded retention)."
    )


class EdgeConfig(_Section):
    site_id: Id
    node_id: Id
    mqtt: Mqtt = Mqtt()
    server: Server = Server()
    detector: Detector = Detector()
    evidence: Evidence = Evidence()
    outbox: OutboxSettings = OutboxSettings()
    metrics: MetricsSettings = MetricsSettings()
    status_period_s: float = Field(10.0, gt=0, description="How often each camera's retained status is refreshed.")
    uniforms: tuple[Uniform, ...] = Field(
        (), description="Uniforms added to (or replacing, by id) the shipped catalogue."
    )
    cameras: tuple[Camera, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> EdgeConfig:
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError(f"camera ids must be unique: {ids}")
        return self

    @model_validator(mode="after")
    def _known_uniforms(self) -> EdgeConfig:
        from gridwatch.edge.uniforms import catalogue

        known = set(catalogue()) | {u.id for u in self.uniforms}
        for c, camera in enumerate(self.cameras):
            for z, zone in enumerate(camera.zones):
                for r, rule in enumerate(zone.rules):
                    if not isinstance(rule, CourierRule):
                        continue
                    wanted = set(rule.uniforms) | set(rule.gate.allowed if rule.gate else ())
                    if wanted - known:
                        raise ValueError(f"cameras[{c}].zones[{z}].rules[{r}]: unknown uniform(s) "
                                         f"{sorted(wanted - known)} (known: {', '.join(sorted(known))})")
        return self


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def readable_errors(error: ValidationError) -> str:
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
        raise ConfigError(readable_errors(exc)) from None
    if base_dir is None:
        return config
    cameras = tuple(
        cam.model_copy(update={"source": resolve_source(cam.source, base_dir)}) for cam in config.cameras
    )
    uniforms = tuple(
        u.model_copy(update={"examples": tuple(str((base_dir / e).resolve()) for e in u.examples)})
        for u in config.uniforms
    )
    return config.model_copy(update={"cameras": cameras, "uniforms": uniforms, "mqtt": config.mqtt.resolved(base_dir)})


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
