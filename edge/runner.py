"""Assemble pipelines from a config and drive them: ``replay`` (as fast as possible) and ``run`` (live).

Both paths build the same ``CameraPipeline``; they differ only in pacing and where events go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from gridwatch.broker.contract import CameraStatus, NodeState, now_utc
from gridwatch.edge.capture import FrameSource, Sampler, SourceError, paced
from gridwatch.edge.config import Camera, EdgeConfig
from gridwatch.edge.detect import YoloxDetector
from gridwatch.edge.evidence import EvidenceStore
from gridwatch.edge.pipeline import CameraPipeline
from gridwatch.edge.publish import EventSink, MqttPublisher
from gridwatch.models.resolver import resolve_model

log = logging.getLogger(__name__)


def build_detector(config: EdgeConfig) -> YoloxDetector:
    settings = config.detector
    model = resolve_model(settings.model, settings.model_path)
    return YoloxDetector(
        model.path, model.spec.classes, model.spec.input_size, settings.confidence,
        settings.class_confidence, settings.nms_iou, settings.threads,
    )


def evidence_store(config: EdgeConfig, base_dir: Path | None = None) -> EvidenceStore:
    directory = Path(config.evidence.dir)
    if not directory.is_absolute() and base_dir is not None:
        directory = base_dir / directory
    return EvidenceStore(directory, config.evidence.jpeg_quality)


def mqtt_publisher(config: EdgeConfig) -> MqttPublisher:
    return MqttPublisher(config.site_id, config.node_id, config.mqtt.url, config.mqtt.client_id,
                         config.mqtt.qos, config.server.url)


def replay(
    config: EdgeConfig,
    camera: Camera,
    sinks: list[EventSink],
    evidence: EvidenceStore,
    clock_origin: datetime | None = None,
    on_progress: Callable[[float, float], None] | None = None,
    detector: YoloxDetector | None = None,
) -> CameraPipeline:
    """Process a whole file on its own clock as fast as the machine allows; return the pipeline."""
    source = FrameSource(camera.source)
    pipeline = CameraPipeline(config.site_id, config.node_id, camera, detector or build_detector(config),
                              evidence, sinks, clock_origin or now_utc())
    try:
        for frame in source.frames(Sampler(camera.detect_fps)):
            pipeline.process(frame)
            if on_progress:
                on_progress(frame.source_time_s, source.duration_s)
        pipeline.finish()
    finally:
        source.close()
    return pipeline


STATUS_PERIOD_S = 10.0


class LiveNode:
    """Every camera of a node in its own thread, sharing one detector and one MQTT publisher."""

    def __init__(self, config: EdgeConfig, evidence: EvidenceStore, publisher: MqttPublisher) -> None:
        self.config, self.evidence, self.publisher = config, evidence, publisher
        self.detector = build_detector(config)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._camera_loop, args=(cam,), name=f"camera-{cam.id}",
                                         daemon=True) for cam in config.cameras]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout)

    def wait(self) -> None:
        for thread in self.threads:
            while thread.is_alive() and not self.stopping.is_set():
                thread.join(0.5)

    def _camera_loop(self, camera: Camera) -> None:
        try:
            source = FrameSource(camera.source, loop=camera.loop)
        except SourceError as exc:
            log.error("camera %s: %s", camera.id, exc)
            self._report(camera, None, None, NodeState.OFFLINE)
            return
        pipeline = CameraPipeline(self.config.site_id, self.config.node_id, camera, self.detector,
                                  self.evidence, [self.publisher], now_utc())
        log.info("camera %s: %s at %.1f detect-fps", camera.id, camera.source, camera.detect_fps)
        next_report = 0.0
        try:
            for frame in paced(source.frames(Sampler(camera.detect_fps))):
                if self.stopping.is_set():
                    break
                pipeline.process(frame)
                if time.monotonic() >= next_report:
                    self._report(camera, source, pipeline, NodeState.ONLINE)
                    next_report = time.monotonic() + STATUS_PERIOD_S
            pipeline.finish()
        except Exception:
            log.exception("camera %s stopped", camera.id)
        finally:
            source.close()
            self._report(camera, source, pipeline, NodeState.OFFLINE)

    def _report(self, camera: Camera, source: FrameSource | None, pipeline: CameraPipeline | None,
                state: NodeState) -> None:
        self.publisher.publish_camera_status(CameraStatus(
            site_id=self.config.site_id, node_id=self.config.node_id, camera_id=camera.id, state=state,
            at=now_utc(), frames_in=source.frames_read if source else 0,
            frames_detected=pipeline.frames_detected if pipeline else 0,
            inference_ms=round(self.detector.last_inference_ms, 2),
        ))
