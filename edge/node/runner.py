"""Assemble pipelines from a config and drive them: ``replay`` (as fast as possible) and ``run`` (live).

Both paths build the same ``CameraPipeline``; they differ only in pacing and where events go. The
live node (and the benchmarks) add a reader thread per camera and one scheduler for all of them.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import cv2

from gridwatch.broker.contract import NodeState, now_utc
from gridwatch.broker.mqtt_url import TlsFiles, redact_url
from gridwatch.broker.zones import CourierRule
from gridwatch.edge.capture.reader import CameraReader
from gridwatch.edge.capture.source import FrameSource, Sampler
from gridwatch.edge.config import PROVIDERS, Camera, ConfigError, EdgeConfig, uniform_set
from gridwatch.edge.delivery.gate import GateClient
from gridwatch.edge.delivery.outbox import Outbox
from gridwatch.edge.delivery.publish import EventSink, MqttPublisher
from gridwatch.edge.evidence.clips import Clip
from gridwatch.edge.evidence.originals import OriginalsVault, load_or_create_key
from gridwatch.edge.evidence.snapshots import EvidenceStore
from gridwatch.edge.node.health import CameraHealth
from gridwatch.edge.node.pipeline import CameraPipeline
from gridwatch.edge.node.remote_config import RemoteZones
from gridwatch.edge.node.remote_uniforms import RemoteUniforms, courier_matchers
from gridwatch.edge.node.scheduler import Scheduler
from gridwatch.edge.perception.detect import DetectorError, OnnxDetector
from gridwatch.edge.rules.courier import CourierLog
from gridwatch.models.resolver import resolve_model

log = logging.getLogger(__name__)


def build_detector(config: EdgeConfig, as_exported: bool = False) -> OnnxDetector:
    """The node's one detector session; a setting that does not fit the model is a ConfigError naming it.
    ``as_exported``: the model file as exported rather than the node's derived copy (the bench's reference)."""
    settings = config.detector
    model = resolve_model(settings.model, settings.model_path)
    try:
        return OnnxDetector(
            model.path, settings.classes or model.spec.classes, settings.input_size,
            settings.confidence, settings.class_confidence, settings.nms_iou, settings.threads,
            tuple(PROVIDERS[p] for p in settings.providers), model.spec.layout, settings.pixels, as_exported,
        )
    except DetectorError as exc:
        raise ConfigError(str(exc)) from None


def _under(path: str, base_dir: Path | None) -> Path:
    return Path(path) if Path(path).is_absolute() or base_dir is None else base_dir / path


def originals_vault(config: EdgeConfig, base_dir: Path | None = None) -> OriginalsVault | None:
    """The node's encrypted originals, where the site keeps them."""
    settings = config.evidence.originals
    if not settings.enabled:
        return None
    return OriginalsVault(_under(settings.dir, base_dir), load_or_create_key(_under(settings.key_file, base_dir)),
                          settings.max_files)


def evidence_store(config: EdgeConfig, base_dir: Path | None = None) -> EvidenceStore:
    return EvidenceStore(_under(config.evidence.dir, base_dir), config.evidence.jpeg_quality,
                         config.evidence.max_files, originals_vault(config, base_dir))


def gate_client(config: EdgeConfig) -> GateClient | None:
    """A gate client when some courier rule may open a gate (live only: a replay never opens gates)."""
    gated = any(isinstance(rule, CourierRule) and rule.gate for cam in config.cameras for zone in cam.zones
                for rule in zone.rules)
    # Gate commands ride the preferred broker: the gate controller is wired to one.
    preferred = config.mqtt.broker_urls[0]
    return GateClient(config.site_id, config.node_id, preferred, tls=mqtt_tls(config)) if gated else None


def mqtt_tls(config: EdgeConfig) -> TlsFiles:
    """The config's TLS files (already resolved and checked by the config loader) for connect_client."""
    return TlsFiles(config.mqtt.tls.ca_file, config.mqtt.tls.cert_file, config.mqtt.tls.key_file)


def mqtt_publisher(config: EdgeConfig, base_dir: Path | None = None) -> MqttPublisher:
    """The node's publisher, with its durable outbox (relative paths are relative to ``base_dir``)."""
    path = Path(config.outbox.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    outbox = Outbox(path, config.outbox.max_bytes, config.outbox.max_age_s)
    # A camera status outlives three missed refreshes at most (MQTT 5 message expiry).
    status_expiry_s = max(30, round(3 * config.status_period_s))
    return MqttPublisher(config.site_id, config.node_id, config.mqtt.broker_urls, config.mqtt.client_id,
                         config.mqtt.qos, config.server.url, outbox, config.server.token,
                         config.mqtt.reconnect_max_s, mqtt_tls(config),
                         status_expiry_s, failback_check_s=config.mqtt.failback_check_s)


def clip_uploader(sinks: list[EventSink]) -> Callable[[Clip], None] | None:
    """Where finished event clips go: the publishers' uploads (the same server as the snapshots)."""
    publishers = [sink for sink in sinks if isinstance(sink, MqttPublisher)]
    if not publishers:
        return None

    def upload(clip: Clip) -> None:
        for publisher in publishers:
            publisher.emit_clip(clip)

    return upload


def replay(
    config: EdgeConfig,
    camera: Camera,
    sinks: list[EventSink],
    evidence: EvidenceStore,
    clock_origin: datetime | None = None,
    on_progress: Callable[[float, float], None] | None = None,
    detector: OnnxDetector | None = None,
) -> CameraPipeline:
    """Process a whole file on its own clock as fast as the machine allows; return the pipeline."""
    source = FrameSource(camera.source)
    pipeline = CameraPipeline(config.site_id, config.node_id, camera, detector or build_detector(config),
                              evidence, sinks, clock_origin or now_utc(), uniform_set(config.uniforms),
                              clip_ready=clip_uploader(sinks))
    try:
        for frame in source.frames(Sampler(camera.detect_fps)):
            pipeline.process(frame)
            if on_progress:
                on_progress(frame.source_time_s, source.duration_s)
        pipeline.finish()
    finally:
        source.close()
    return pipeline


GIL_SWITCH_INTERVAL_S = 0.0005


class Engine:
    """Readers, pipelines and the shared scheduler for a set of cameras: the live node and the benchmarks.

    ``realtime`` paces file sources at their own speed (live); ``block`` makes readers wait for the
    scheduler instead of dropping stale frames (as-fast-as-possible runs that must see every frame).
    """

    def __init__(self, config: EdgeConfig, sinks: list[EventSink], evidence: EvidenceStore,
                 realtime: bool = True, block: bool = False, reconnect: bool = True,
                 detector: OnnxDetector | None = None, gate: GateClient | None = None) -> None:
        cv2.setNumThreads(1)  # OpenCV's own pool would compete with the detector workers for the cores
        # Dozens of reader threads wake from C decoding many times a second; at the default 5 ms switch
        # interval each waits behind a busy worker for the GIL and frames go stale (measured: 16 cameras
        # dropped ~10 frames/s at 5 ms, none at 0.5 ms). Process-wide, so set where the engine starts.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.config = config
        self.detector = detector or build_detector(config)
        self.clock_start = time.monotonic()
        origin = now_utc()
        uniforms, couriers = uniform_set(config.uniforms), CourierLog()
        self.pipelines = [CameraPipeline(config.site_id, config.node_id, cam, self.detector, evidence, sinks, origin,
                                         uniforms, gate, couriers, clip_ready=clip_uploader(sinks))
                          for cam in config.cameras]
        self.scheduler = Scheduler(self.detector, self.pipelines, config.detector.workers, block=block)
        self.readers = [
            CameraReader(cam, functools.partial(self.scheduler.offer, i), functools.partial(self.scheduler.close, i),
                         self.clock_start, realtime=realtime, reconnect=reconnect)
            for i, cam in enumerate(config.cameras)
        ]

    def start(self) -> Engine:
        self.scheduler.start()
        for reader in self.readers:
            reader.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        for reader in self.readers:
            reader.stop()
        self.scheduler.stop(timeout)

    def finish(self) -> None:
        """Wait for every (file) source to end and its frames to be processed, then close incidents."""
        self.scheduler.join()
        for pipeline in self.pipelines:
            pipeline.finish()


class LiveNode:
    """Every camera of a node: a reader each, one shared detector, health published retained, and
    zones pushed from the console applied on the fly (over the publisher's connection)."""

    def __init__(self, config: EdgeConfig, evidence: EvidenceStore, publisher: MqttPublisher) -> None:
        self.config, self.publisher, self.status_period_s = config, publisher, config.status_period_s
        self.gate = gate_client(config)
        self.engine = Engine(config, [publisher], evidence, realtime=True, gate=self.gate)
        self.health = [CameraHealth(reader, pipeline, slot, self.engine.detector) for reader, pipeline, slot
                       in zip(self.engine.readers, self.engine.pipelines, self.engine.scheduler.slots, strict=True)]
        self.remote_zones = RemoteZones(publisher.client, config, self.engine.pipelines, self.engine.scheduler)
        pipelines = self.engine.pipelines
        self.remote_uniforms = RemoteUniforms(publisher.client, config.site_id, config.server.url, config.server.token,
                                              lambda: courier_matchers(pipelines))
        self.stopping = threading.Event()
        self.monitor = threading.Thread(target=self._monitor, name="camera-health", daemon=True)

    def start(self) -> None:
        for camera in self.config.cameras:
            log.info("camera %s: %s at %.1f detect-fps", camera.id, redact_url(camera.source), camera.detect_fps)
        self.engine.start()
        self.monitor.start()
        self.remote_zones.start()
        self.remote_uniforms.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.remote_zones.stop()
        self.remote_uniforms.stop()
        self.engine.stop(timeout)
        self.monitor.join(timeout)
        for pipeline in self.engine.pipelines:
            pipeline.finish()
        if self.gate is not None:
            self.gate.close()
        for health in self.health:
            health.state = NodeState.OFFLINE
            self.publisher.publish_camera_status(health.status(self.config.site_id, self.config.node_id,
                                                               time.monotonic()))

    def wait(self) -> None:
        """Until stopped, or until every camera's source has ended for good (files without loop)."""
        while not self.stopping.is_set() and any(r.thread.is_alive() for r in self.engine.readers):
            self.stopping.wait(0.5)

    def _monitor(self) -> None:
        """Check health a few times a second; publish on every change and every status period."""
        next_report = 0.0
        while not self.stopping.wait(min(0.5, self.status_period_s)):
            self.remote_uniforms.reapply()  # courier rules a zone reload rebuilt get the refitted profiles
            now = time.monotonic()
            changed = [h.check(now) for h in self.health]
            due = now >= next_report
            for health, did_change in zip(self.health, changed, strict=True):
                if due or did_change:
                    self.publisher.publish_camera_status(health.status(self.config.site_id, self.config.node_id, now))
            if due:
                next_report = now + self.status_period_s
