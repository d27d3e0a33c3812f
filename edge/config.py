"""The edge node's YAML configuration, validated so that every error names the offending field.

Installers write these files by hand, so a mistake must come back as
``cameras[0].zones[1].polygon: a polygon needs at least 3 points`` and never as a traceback.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from gridwatch.broker.mqtt_url import parse_mqtt_url, redact_url
from gridwatch.broker.topics import Id
from gridwatch.broker.zones import RULE_TYPES, CourierRule, Polygons, StrictModel, ZoneList


class ConfigError(ValueError):
    """A config that cannot run; the message names each bad field."""


HexColour = Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$", description="An sRGB colour, #RRGGBB.")]

# A reference colour this close to the neutral axis, this dark or this light has no hue a camera can
# keep at dusk: a black jacket and a resident's black coat are the same colour.
NEUTRAL_CHROMA = 25.0
NEAR_BLACK_L, NEAR_WHITE_L = 25.0, 90.0


def reference_lab(hex_colour: str) -> tuple[float, float, float]:
    """CIE Lab hue angle (degrees), chroma and lightness of an sRGB ``#RRGGBB`` colour (D65)."""
    linear = []
    for i in (1, 3, 5):
        c = int(hex_colour[i:i + 2], 16) / 255.0
        linear.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = linear
    xyz = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047, 0.2126 * r + 0.7152 * g + 0.0722 * b, \
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    lightness, a, b_ = 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)
    return math.degrees(math.atan2(b_, a)) % 360.0, math.hypot(a, b_), lightness


def colourless(hex_colour: str) -> str | None:
    """Why a reference colour cannot identify a uniform on its own (near-black, near-white, grey), or None."""
    _, chroma, lightness = reference_lab(hex_colour)
    if lightness < NEAR_BLACK_L:
        return "near-black"
    if lightness > NEAR_WHITE_L:
        return "near-white"
    if chroma < NEUTRAL_CHROMA:
        return "grey"
    return None


class Uniform(StrictModel):
    """A uniform: colour-only (reference ``colours``, a coarse catalogue cue) or an enrolled ``profile``.

    A colour-only uniform is accepted when ``min_fraction`` of the torso has a reference colour's
    hue (lightness-free, after the frame's illuminant is removed). An enrolled profile (``gridwatch
    edge enroll-uniform``) is a classifier learned from photos of the uniform against the site's
    own ordinary people, with a calibrated threshold; it is the only way to recognise a dark or
    colourless uniform (``needs_enrolment``), because colour cannot tell it from everyday clothes.
    """

    id: Id
    name: dict[Literal["zh-CN", "en"], str] = Field(min_length=1)
    colours: tuple[HexColour, ...] = Field((), description="Reference torso colours for colour-only matching.")
    hue_tolerance: float = Field(15.0, gt=0, le=45, description="Lab hue angle (degrees) around a reference colour.")
    min_fraction: float = Field(0.25, gt=0, le=1, description="Share of torso pixels with a reference colour.")
    needs_enrolment: bool = Field(False, description="Colour cannot identify it: only an enrolled profile may.")
    profile: str | None = Field(None, description="Enrolled profile file (JSON from enroll-uniform), relative path.")

    @model_validator(mode="after")
    def _one_way_to_recognise(self) -> Uniform:
        if self.profile is not None and self.colours:
            raise ValueError("give colours (colour-only) or a profile (enrolled), not both")
        if self.profile is None and not self.colours and not self.needs_enrolment:
            raise ValueError("a uniform needs reference colours or an enrolled profile")
        if self.profile is None and self.colours and self.needs_enrolment:
            raise ValueError("needs_enrolment: the colours cannot be used alone; enrol photos (profile)")
        if self.profile is None:
            for colour in self.colours:
                reason = colourless(colour)
                if reason:
                    raise ValueError(f"colour {colour} is {reason}: a colour-only profile would accept anyone "
                                     "dressed like that; enrol photos with `gridwatch edge enroll-uniform`")
        return self

    @property
    def enrolled(self) -> bool:
        return self.profile is not None


CATALOGUE = Path(__file__).with_name("uniforms.yaml")


@functools.cache
def catalogue() -> dict[str, Uniform]:
    """The uniforms that ship with GridWatch, by id."""
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    return {u["id"]: Uniform.model_validate(u) for u in data["uniforms"]}


def uniform_set(configured: tuple[Uniform, ...]) -> dict[str, Uniform]:
    """The catalogue with the config's uniforms added; a config entry replaces a catalogue one by id."""
    return {**catalogue(), **{u.id: u for u in configured}}


class Motion(StrictModel):
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
    masks: Polygons = Field((), description="Polygons (normalised) where motion is ignored: trees, timestamp overlays.")


class Tamper(StrictModel):
    """Covered, defocused or turned-away camera, judged against the camera's own reference view."""

    enabled: bool = True
    check_every_s: float = Field(1.0, gt=0)
    after_s: float = Field(5.0, ge=0, description="How long the view must stay wrong before it is reported.")
    reference_after_s: float = Field(3.0, ge=0, description="Seconds of footage before the reference view is taken.")


class Clips(StrictModel):
    """A short video of each incident's start and end, cut from a ring buffer of the camera's recent frames."""

    enabled: bool = Field(False, description="Record an H.264 MP4 clip around each incident's start and end.")
    before_s: float = Field(5.0, ge=0, le=60, description="Seconds of footage kept from before the event.")
    after_s: float = Field(5.0, ge=0, le=60, description="Seconds of footage recorded after the event.")
    fps: float | None = Field(None, gt=0, le=30, description="Frames per second kept for clips; unset: the "
                              "camera's detect_fps (a clip never holds more frames than the pipeline sees).")
    jpeg_quality: int = Field(80, ge=30, le=100, description="JPEG quality of the frames held in memory.")
    max_buffer_mb: float = Field(32.0, gt=0, description="Memory bound of the ring buffer (JPEG bytes); the "
                                 "oldest frames go first when a large scene would exceed it.")
    max_files: int = Field(200, ge=1, description="Clips kept on the node's disk per camera (oldest go first); "
                           "the server keeps its own copy of each one uploaded.")
CANVAS_STRIDE = 32  # the detector's coarsest stride: a canvas side is a multiple of it
# The default canvas budget, 384x672 for a 16:9 camera: chosen by ``python -m bench accuracy`` (README).
DEFAULT_CANVAS_PIXELS = 384 * 672
CanvasSize = Annotated[tuple[int, int], Field(description="(height, width), multiples of 32.")]
CanvasPixels = Annotated[int, Field(ge=CANVAS_STRIDE * CANVAS_STRIDE, le=4096 * 4096, description=(
    "Pixel budget of the detector's canvas, which follows the camera's aspect in multiples of 32: "
    "258048 is 384x672 for a 16:9 camera."))]


def multiples_of_stride(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is not None and any(side < CANVAS_STRIDE or side % CANVAS_STRIDE for side in size):
        raise ValueError(f"{tuple(size)} is not (height, width) in multiples of {CANVAS_STRIDE}")
    return size


class CameraDetector(StrictModel):
    """This camera's detector canvas, when it should differ from the node's: a wide gate view may
    spend more pixels than a lobby. ``input_size`` pins an exact canvas; otherwise ``pixels``."""

    pixels: CanvasPixels | None = None
    input_size: CanvasSize | None = None

    _stride = field_validator("input_size")(multiples_of_stride)


class Camera(StrictModel):
    id: Id
    source: str = Field(min_length=1, description="File path, rtsp:// or http(s):// URL, or a USB index.")
    detect_fps: float = Field(5.0, gt=0, le=30)
    loop: bool = Field(False, description="Start a file source again at its end (demos).")
    stall_s: float = Field(5.0, gt=0, description="No frame for this long: the stream is stalled and reopened.")
    offline_event_s: float = Field(30.0, gt=0, description="Lost for this long: a camera_offline event starts.")
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="rtsp:// sources only: RTP inside the RTSP connection (tcp: passes NAT and firewalls, no "
        "loss) or RTP over UDP (lower latency on a clean LAN; some older cameras and NVR channels offer only this)."
    )
    motion: Motion = Motion()
    tamper: Tamper = Tamper()
    zones: ZoneList = ()
    privacy_masks: Polygons = Field((), description="Polygons (normalised) blacked out on every image the node "
                                    "stores, originals included: a neighbour's window, a changing-room door.")
    clips: Clips = Clips()
    detector: CameraDetector = CameraDetector()

    @field_validator("source")
    @classmethod
    def _credentials_inside_the_address(cls, source: str) -> str:
        """NVR passwords often hold ``#``, ``?``, ``/`` or ``@``; unencoded, they end the host part early, so
        the camera is unreachable and the rest of the password lands where it would be logged. The message
        never repeats the URL."""
        if "://" not in source:
            return source
        parts = urlsplit(source)
        if "@" in parts.path + parts.query + parts.fragment or (parts.netloc.count("@") > 1):
            raise ValueError("the URL's user or password holds a character that ends the address (#, ?, / or @): "
                             "percent-encode it (# is %23, ? is %3F, / is %2F, @ is %40)")
        if not parts.hostname:
            raise ValueError("the URL has no host (expected rtsp://user:password@host:554/path)")
        return source


class MqttTls(StrictModel):
    """Files for an ``mqtts://`` broker with a private CA and/or client certificates (relative to the config)."""

    ca_file: str | None = Field(None, description="PEM CA bundle that signed the broker's certificate.")
    cert_file: str | None = Field(None, description="PEM client certificate (Mosquitto require_certificate).")
    key_file: str | None = Field(None, description="PEM private key of cert_file, unless cert_file holds it.")

    @model_validator(mode="after")
    def _key_needs_cert(self) -> MqttTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


def _check_broker_url(url: str) -> str:
    """A broker URL the edge can connect to, checked when the config loads (the message never shows a password)."""
    try:
        parse_mqtt_url(url)
    except ValueError as exc:
        raise ValueError(str(exc).replace(url, redact_url(url))) from None
    return url


BrokerUrl = Annotated[str, AfterValidator(_check_broker_url)]
DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"


class Mqtt(StrictModel):
    url: BrokerUrl | None = Field(None, description=f"One broker (default {DEFAULT_BROKER_URL}); or set urls.")
    urls: tuple[BrokerUrl, ...] = Field(
        (), description="Brokers in order of preference (a site's broker pair): the node publishes to the first "
        "that answers, moves to the next when its broker fails, and comes back to the first once it answers again.",
    )
    failback_check_s: float = Field(
        10.0, gt=0, le=3600, description="While on a fallback broker, how often the first one is tried again."
    )
    client_id: str | None = None
    qos: Literal[0, 1, 2] = 1
    reconnect_max_s: float = Field(
        30.0, ge=1, le=600, description="Longest wait between reconnect attempts (backoff doubles from 1 s)."
    )
    tls: MqttTls = MqttTls()

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """The brokers in order of preference, however the config named them."""
        return self.urls or (self.url or DEFAULT_BROKER_URL,)

    @model_validator(mode="after")
    def _one_list_of_brokers(self) -> Mqtt:
        if self.url is not None and self.urls:
            raise ValueError("set url (one broker) or urls (a list of brokers), not both")
        schemes = {url.split("://", 1)[0].lower() for url in self.broker_urls}
        if len(schemes) > 1:
            raise ValueError("urls mixes mqtt:// and mqtts://: a node's brokers share one TLS setting")
        return self

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> Mqtt:
        if self.tls != MqttTls() and not self.broker_urls[0].startswith("mqtts://"):
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


class Server(StrictModel):
    url: str | None = Field(None, description="Base URL of the GridWatch server, for snapshot upload.")
    token: str | None = Field(None, description="API token with scope snapshots:write (and read, to fetch the "
                              "uniform examples added in the console), sent as a Bearer token.")


class OutboxSettings(StrictModel):
    """The on-disk outbox that keeps events until the broker acknowledges them (see edge/delivery/outbox.py)."""

    path: str = Field("outbox.db", description="SQLite file, relative to the config file.")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    max_age_s: float = Field(7 * 24 * 3600.0, gt=0)


class MetricsSettings(StrictModel):
    """Prometheus text at /metrics and a liveness check at /healthz (see edge/node/metrics.py)."""

    host: str = Field("127.0.0.1", description="Listen address; 0.0.0.0 exposes it to the LAN.")
    port: int = Field(9108, ge=0, le=65535, description="0 turns the endpoint off.")


PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class Detector(StrictModel):
    model: str = "yolox_nano"
    model_path: str | None = None
    input_size: CanvasSize | None = Field(None, description="Pins one (height, width) canvas for every camera "
                                          "(multiples of 32); default: each camera's aspect at ``pixels``.")
    pixels: CanvasPixels = DEFAULT_CANVAS_PIXELS
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

    _stride = field_validator("input_size")(multiples_of_stride)


class Originals(StrictModel):
    """Unblurred originals kept on the node, encrypted, for police requests (edge/evidence/originals.py)."""

    enabled: bool = Field(False, description="Keep the unblurred frame of each snapshot, encrypted at rest.")
    dir: str = Field("originals", description="Where, relative to the config file.")
    key_file: str = Field("originals.key", description="The Fernet key (created 0600 on first use); never "
                                                       "sent anywhere. Relative to the config file.")
    max_files: int = Field(500, ge=1, description="Originals kept; the oldest are deleted beyond this.")


class Evidence(StrictModel):
    dir: str = "evidence"
    jpeg_quality: int = Field(85, ge=30, le=100)
    max_files: int = Field(
        5000, ge=10, description="Snapshots kept on the node; the oldest are deleted beyond this (bounded retention)."
    )
    originals: Originals = Originals()


class EdgeConfig(StrictModel):
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
                    uniforms = uniform_set(self.uniforms)
                    unenrolled = sorted(u for u in rule.uniforms if uniforms[u].needs_enrolment
                                        and not uniforms[u].enrolled)
                    if unenrolled:
                        raise ValueError(f"cameras[{c}].zones[{z}].rules[{r}]: uniform(s) {unenrolled} need "
                                         "enrolment photos (dark or colourless: colour alone would accept anyone "
                                         "in dark clothes); enrol them with `gridwatch edge enroll-uniform`")
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
        u.model_copy(update={"profile": str((base_dir / u.profile).resolve())}) if u.profile else u
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
