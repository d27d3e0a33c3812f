"""One camera's pipeline: detect -> track -> zones -> rules -> evidence -> events.

The pipeline works on the source clock (``source_time_s``) and turns it into wall-clock
timestamps only when it builds the contract's ``Event``; replay and live share every line of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from gridwatch.broker.contract import DetectedObject, Event, SnapshotRef
from gridwatch.edge.capture import Frame
from gridwatch.edge.config import Camera
from gridwatch.edge.detect import YoloxDetector
from gridwatch.edge.evidence import EvidenceStore, annotate
from gridwatch.edge.publish import EventSink
from gridwatch.edge.rules.incident import RuleEvent
from gridwatch.edge.rules.loitering import LoiteringDetector
from gridwatch.edge.track import ObjectTracker, Track
from gridwatch.edge.zones import ZoneArea


class CameraPipeline:
    def __init__(
        self,
        site_id: str,
        node_id: str,
        camera: Camera,
        detector: YoloxDetector,
        evidence: EvidenceStore,
        sinks: list[EventSink],
        clock_origin: datetime,
    ) -> None:
        self.site_id, self.node_id, self.camera = site_id, node_id, camera
        self.detector, self.evidence, self.sinks = detector, evidence, sinks
        self.clock_origin = clock_origin
        tracked = {obj for zone in camera.zones for rule in zone.rules for obj in rule.objects}
        self.tracker = ObjectTracker(detector.class_names, tracked, camera.detect_fps)
        self.rules = [(zone, LoiteringDetector(zone.id, rule)) for zone in camera.zones for rule in zone.rules]
        self.areas: dict[str, ZoneArea] = {}
        self.frame_size: tuple[int, int] = (0, 0)
        self.last_time_s = 0.0
        self.last_image: np.ndarray | None = None
        self.frames_detected = 0
        self.events: list[Event] = []

    def _area(self, zone_id: str, image: np.ndarray) -> ZoneArea:
        size = (image.shape[1], image.shape[0])
        if size != self.frame_size:
            self.frame_size = size
            self.areas = {z.id: ZoneArea(z, *size) for z in self.camera.zones}
        return self.areas[zone_id]

    def process(self, frame: Frame) -> list[Event]:
        """Run one sampled frame through the whole chain; emit and return the events it caused."""
        self.last_time_s, self.last_image = frame.source_time_s, frame.image
        tracks = self.tracker.update(self.detector.detect(frame.image))
        self.frames_detected += 1
        emitted = []
        for zone, rule in self.rules:
            area = self._area(zone.id, frame.image)
            inside = [t for t in tracks if area.contains(t.box)]
            for rule_event in rule.update(frame.source_time_s, inside):
                emitted.append(self._emit(rule_event, frame.image, area))
        return emitted

    def finish(self) -> list[Event]:
        """The source ended: close open incidents, with the last frame seen as their evidence."""
        emitted = []
        for zone, rule in self.rules:
            for rule_event in rule.finish(self.last_time_s):
                area = self._area(zone.id, self.last_image) if self.last_image is not None else None
                emitted.append(self._emit(rule_event, self.last_image, area))
        return emitted

    def _emit(self, rule_event: RuleEvent, image: np.ndarray | None, area: ZoneArea | None) -> Event:
        snapshot = None
        if image is not None and area is not None:
            snapshot = self.evidence.save(annotate(image, area.polygon, rule_event.track, rule_event.type.value))
        event = self._to_event(rule_event, snapshot.ref if snapshot else None)
        for sink in self.sinks:
            sink.emit(event, snapshot)
        self.events.append(event)
        return event

    def _at(self, source_time_s: float) -> datetime:
        return self.clock_origin + timedelta(seconds=source_time_s)

    def _to_event(self, rule_event: RuleEvent, snapshot: SnapshotRef | None) -> Event:
        return Event(
            incident_id=rule_event.incident_id,
            type=rule_event.type,
            phase=rule_event.phase,
            site_id=self.site_id,
            node_id=self.node_id,
            camera_id=self.camera.id,
            zone_id=rule_event.zone_id,
            object=self._object(rule_event.track),
            started_at=self._at(rule_event.started_s),
            observed_at=self._at(rule_event.observed_s),
            ended_at=self._at(rule_event.ended_s) if rule_event.ended_s is not None else None,
            attributes=rule_event.attributes,
            snapshot=snapshot,
            source_time_s=round(rule_event.observed_s, 3),
        )

    def _object(self, track: Track | None) -> DetectedObject | None:
        if track is None or self.frame_size == (0, 0):
            return None
        width, height = self.frame_size
        x1, y1, x2, y2 = (float(v) for v in track.box)
        box = (x1 / width, y1 / height, x2 / width, y2 / height)
        return DetectedObject(
            class_name=track.class_name, track_id=track.track_id,
            box=tuple(min(1.0, max(0.0, v)) for v in box), confidence=round(track.confidence, 4),
        )

