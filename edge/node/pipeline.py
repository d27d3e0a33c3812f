"""One camera's pipeline: motion gate -> detect -> track -> zones -> rules -> evidence -> events.

The pipeline works on the source clock (``source_time_s``) and turns it into wall-clock
timestamps only when it builds the contract's ``Event``; replay and live share every line of it.
Detection is split from the rest (``wants_detection`` / ``update``) so the scheduler can run one
detector for many cameras; between detections the last tracks stand, so dwell keeps counting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import numpy as np

from gridwatch.broker.contract import DetectedObject, Event, EventType, Phase, PlateReading, PlateStatus, SnapshotRef
from gridwatch.broker.zones import CourierRule, FireLaneRule, LoiteringRule, Rule, Zone, detector_classes
from gridwatch.edge.capture.source import Frame
from gridwatch.edge.config import Camera, Uniform, catalogue
from gridwatch.edge.delivery.gate import GateClient
from gridwatch.edge.delivery.publish import EventSink
from gridwatch.edge.evidence.clips import Clip, ClipRecorder
from gridwatch.edge.evidence.plates import VEHICLE_CLASSES
from gridwatch.edge.evidence.privacy import Redactor, black_out
from gridwatch.edge.evidence.snapshots import EvidenceStore, annotate, crop_box
from gridwatch.edge.node.plate_watch import PlateWatch
from gridwatch.edge.perception.appearance import AppearanceEmbedder
from gridwatch.edge.perception.detect import Detections, OnnxDetector
from gridwatch.edge.perception.motion import MotionGate
from gridwatch.edge.perception.tamper import TamperCheck
from gridwatch.edge.perception.track import ObjectTracker, Track
from gridwatch.edge.perception.uniforms import UniformMatcher
from gridwatch.edge.reading.engine import TextEngine
from gridwatch.edge.reading.plates import PlateReader
from gridwatch.edge.reading.worker import PlateResult, ReadingWorker
from gridwatch.edge.rules.courier import CourierDetector, CourierLog
from gridwatch.edge.rules.fire_lane import FireLaneDetector
from gridwatch.edge.rules.gate_policy import ALLOWED
from gridwatch.edge.rules.incident import RuleEvent
from gridwatch.edge.rules.loitering import LoiteringDetector
from gridwatch.edge.rules.zones import ZoneArea, ZoneMembership
from gridwatch.models.faces import FaceDetector

ZoneRule = LoiteringDetector | CourierDetector | FireLaneDetector

CAMERA_ZONE = "camera"  # zone_id of events about the camera itself (offline, tamper)
PLATE_DRAIN_S = 120.0   # at the source's end, how long the plates still being read are waited for


def plate_classes(rules: Iterable[Rule]) -> frozenset[str]:
    """The classes whose boxes have a plate to blur: the vehicle classes, and whatever the given fire lanes
    count as a vehicle (an overhead lane's "cell phone" is a car). Snapshots and clips ask the same question."""
    lanes = (detector_classes(rule) for rule in rules if isinstance(rule, FireLaneRule))
    return frozenset(VEHICLE_CLASSES).union(*lanes)


class CameraPipeline:
    def __init__(
        self,
        site_id: str,
        node_id: str,
        camera: Camera,
        detector: OnnxDetector,
        evidence: EvidenceStore,
        sinks: list[EventSink],
        clock_origin: datetime,
        uniforms: dict[str, Uniform] | None = None,
        gate_client: GateClient | None = None,
        courier_log: CourierLog | None = None,
        redactor: Redactor | None = None,
        clip_ready: Callable[[Clip], None] | None = None,
    ) -> None:
        self.site_id, self.node_id, self.camera = site_id, node_id, camera
        self.detector, self.evidence, self.sinks = detector, evidence, sinks
        self.clock_origin = clock_origin
        self.uniforms = uniforms if uniforms is not None else catalogue()
        self.gate_client = gate_client
        self.courier_log = courier_log or CourierLog()  # shared by a node's cameras: entry here, exit there
        # The camera's own YuNet, loaded now: a node without the face model must fail at start, not at its
        # first incident (and cv2.FaceDetectorYN is not shared between camera threads).
        self.redactor = redactor or Redactor(FaceDetector())
        tracked = {obj for zone in camera.zones for rule in zone.rules for obj in detector_classes(rule)}
        self.tracker = ObjectTracker(detector.class_names, tracked, camera.detect_fps)
        self.gate = MotionGate(camera.motion)
        self.tamper = TamperCheck(camera.tamper)
        self.embedder: AppearanceEmbedder | None = None
        self.plates: PlateWatch | None = None
        self.rules: list[tuple[Zone, Rule, ZoneRule]] = [
            (zone, rule, self._rule(zone, rule)) for zone in camera.zones for rule in zone.rules]
        self.thresholds = detector.thresholds_for(rule for _, rule, _ in self.rules)
        self.membership = {zone.id: ZoneMembership(zone.inertia) for zone in camera.zones}
        self.inside: dict[str, list[Track]] = {zone.id: [] for zone in camera.zones}
        self.tracks: list[Track] = []
        self.areas: dict[str, ZoneArea] = {}
        self.frame_size: tuple[int, int] = (0, 0)
        self.last_time_s = 0.0
        self.last_image: np.ndarray | None = None
        self.frames_in = 0
        self.frames_detected = 0
        self.events: list[Event] = []
        self.clip_ready = clip_ready
        self.clips = self._clip_recorder(camera)

    def _clip_recorder(self, camera: Camera) -> ClipRecorder | None:
        """The camera's clip recorder, when its config asks for clips."""
        if not camera.clips.enabled:
            return None
        return ClipRecorder(camera.clips, camera.detect_fps, self.evidence.directory / "clips" / camera.id,
                            camera.privacy_masks, self.clip_ready)

    def _appearance(self) -> AppearanceEmbedder:
        """The camera's OSNet session, loaded only when a rule needs appearance (enrolled uniforms, rejoin)."""
        if self.embedder is None:
            self.embedder = AppearanceEmbedder()
        return self.embedder

    def _rule(self, zone: Zone, rule: Rule) -> ZoneRule:
        if isinstance(rule, LoiteringRule):
            return LoiteringDetector(zone.id, rule, self._at, self._appearance() if rule.rejoin_s else None)
        if isinstance(rule, FireLaneRule):
            if rule.read_plates and self.plates is None:
                # one reader per camera, loaded now: a node without the reading extra fails at start
                engine = TextEngine()
                engine.check()
                self.plates = PlateWatch(ReadingWorker(plates=PlateReader(engine)))
            return FireLaneDetector(zone.id, rule)
        chosen = [self.uniforms[u] for u in rule.uniforms]
        embedder = self._appearance() if any(u.enrolled for u in chosen) else None
        return CourierDetector(zone.id, rule, UniformMatcher(chosen, embedder), self._at, self.courier_log)

    def _area(self, zone_id: str, image: np.ndarray) -> ZoneArea:
        size = (image.shape[1], image.shape[0])
        if size != self.frame_size:
            self.frame_size = size
            self.areas = {z.id: ZoneArea(z, *size) for z in self.camera.zones}
            for zone, _, detector in self.rules:
                if isinstance(detector, FireLaneDetector):
                    detector.watch_background(self.areas[zone.id], size)
        return self.areas[zone_id]

    def wants_detection(self, frame: Frame) -> bool:
        """The motion gate's verdict for this frame (always True with gating off)."""
        return self.gate.needs_detection(frame.image, frame.source_time_s, [t.box for t in self.tracks],
                                         self.tracker.unconfirmed)

    def canvas(self, frame: Frame) -> tuple[int, int]:
        """The detector's canvas for this camera's frames: its own setting, else the node's."""
        own = self.camera.detector
        return self.detector.canvas_for(frame.image.shape[:2], own.input_size, own.pixels)

    def process(self, frame: Frame) -> list[Event]:
        """Gate, detect if needed, and run the rest of the chain: the single-camera path (replay)."""
        detections = (self.detector.detect(frame.image, self.canvas(frame), self.thresholds)
                      if self.wants_detection(frame) else None)
        return self.update(frame, detections)

    def update(self, frame: Frame, detections: Detections | None) -> list[Event]:
        """Run one sampled frame through tracking (if it was detected), zones, rules and tamper."""
        self.last_time_s, self.last_image = frame.source_time_s, frame.image
        self.frames_in += 1
        if detections is not None:
            self.gate.detected(frame.source_time_s)
            self.frames_detected += 1
            self.tracks = self.tracker.update(detections)
        if self.clips is not None:
            self.clips.observe(frame.source_time_s, frame.image, *self._clip_boxes(self.tracks))
        if detections is not None or self.gate.verified:  # verified: the tracks were confirmed on pixels
            for zone in self.camera.zones:
                area = self._area(zone.id, frame.image)
                self.inside[zone.id] = self.membership[zone.id].update(area, self.tracks)
        emitted = []
        for zone, rule, detector in self.rules:
            area = self._area(zone.id, frame.image)
            emitted += self._rule_events(detector.update(frame.source_time_s, self.inside[zone.id], frame.image),
                                         frame.image, area, rule)
            if self.plates is not None and isinstance(rule, FireLaneRule) and rule.read_plates:
                assert isinstance(detector, FireLaneDetector)
                # what a privacy mask hides is never recorded, in a plate crop neither
                self.plates.observe(frame.source_time_s, black_out(frame.image, self.camera.privacy_masks),
                                    detector.open_vehicles(frame.source_time_s))
        emitted += self._plate_events(frame.source_time_s, frame.image)
        change = self.tamper.update(frame.image, frame.source_time_s)
        if change is not None:
            emitted.append(self.camera_event(EventType.CAMERA_TAMPER, Phase(change.phase), change.incident_id,
                                             change.since_s, frame.source_time_s, frame.image,
                                             {"reason": change.reason} if change.reason else {}))
        return emitted

    def finish(self) -> list[Event]:
        """The source ended: close open incidents, with the last frame seen as their evidence (and the
        plates still being read, waited for here: the camera is done)."""
        events = [event for zone, rule, detector in self.rules for event in self._close(zone, rule, detector)]
        if self.plates is not None:
            self.plates.drain(PLATE_DRAIN_S)
            events += self._plate_events(self.last_time_s, self.last_image)
        if self.clips is not None:
            self.clips.close()
        return events

    def _clip_boxes(self, tracks: list[Track]) -> tuple[tuple, tuple]:
        """(person boxes, vehicle boxes) among ``tracks`` for a clip frame's head and plate blur; a clip spans
        every rule of the camera, so what any of its fire lanes counts as a vehicle has a plate too."""
        vehicles = plate_classes(rule for _, rule, _ in self.rules)
        return (tuple(tuple(float(v) for v in t.box) for t in tracks if t.class_name == "person"),
                tuple(tuple(float(v) for v in t.box) for t in tracks if t.class_name in vehicles))

    def _close(self, zone: Zone, rule: Rule, detector: ZoneRule) -> list[Event]:
        """End a rule's open incidents now, on the geometry they were raised with."""
        area = self._area(zone.id, self.last_image) if self.last_image is not None else None
        return self._rule_events(detector.finish(self.last_time_s), self.last_image, area, rule)

    def _reads_plates(self, rule: Rule | None, rule_event: RuleEvent) -> bool:
        return (self.plates is not None and isinstance(rule, FireLaneRule) and rule.read_plates
                and rule_event.type is EventType.FIRE_LANE_BLOCKED)

    def _rule_events(self, rule_events: list[RuleEvent], image: np.ndarray | None, area: ZoneArea | None,
                     rule: Rule) -> list[Event]:
        """Emit a rule's events; a fire-lane end whose plate is being read waits for it (see PlateWatch)."""
        emitted = []
        for rule_event in rule_events:
            if self._reads_plates(rule, rule_event):
                assert self.plates is not None
                if rule_event.phase is Phase.END and self.plates.ending(rule_event):
                    continue
                if rule_event.phase is Phase.START:
                    self.plates.started(rule_event)
            emitted.append(self._emit(rule_event, image, area, rule))
        return emitted

    def _plate_events(self, now_s: float, image: np.ndarray | None) -> list[Event]:
        """The incidents whose plate reading finished: an update after a start, the end that waited for it."""
        if self.plates is None:
            return []
        emitted = []
        for rule_event, result in self.plates.ready(now_s):
            zone, rule = next((z, r) for z, r, _ in self.rules
                              if z.id == rule_event.zone_id and isinstance(r, FireLaneRule))
            area = self._area(zone.id, image) if image is not None else None
            emitted.append(self._emit(rule_event, image, area, rule, self._plate_reading(result)))
        return emitted

    def _plate_reading(self, result: PlateResult | None) -> PlateReading | None:
        """The contract's plate from a reading (None: the reading came too late to tell)."""
        if result is None:
            return None
        if not result.read.readable:
            return PlateReading(status=PlateStatus.UNREADABLE, frames=result.frames)
        crop_sha256 = None
        if result.crop is not None:
            crop, manifest = self.redactor.redact(result.crop, [], [], True, False)
            crop_sha256 = self.evidence.save(crop, manifest).ref.sha256
        colour = result.read.colour.value if result.read.colour else None
        return PlateReading(status=PlateStatus.READ, text=result.read.plate, colour=colour,
                            confidence=min(1.0, max(0.0, result.read.confidence)), frames=result.frames,
                            crop_sha256=crop_sha256)

    def replace_zones(self, camera: Camera) -> tuple[int, int]:
        """Take the zones, rules and masks of ``camera`` (a hot reload); return (rules kept, rules rebuilt).

        An unchanged rule keeps its state and open incident; a changed or removed one ends its
        incident first. The caller makes sure no frame is in the pipeline meanwhile."""
        def key(zone: Zone, rule: Rule) -> str:
            return zone.model_dump_json(exclude={"rules", "name"}) + rule.model_dump_json()

        running = {key(zone, rule): (zone, rule, detector) for zone, rule, detector in self.rules}
        wanted = {key(zone, rule) for zone in camera.zones for rule in zone.rules}
        for k, (zone, rule, detector) in running.items():
            if k not in wanted:
                self._close(zone, rule, detector)
        rules = [(zone, rule, running[key(zone, rule)][2] if key(zone, rule) in running else self._rule(zone, rule))
                 for zone in camera.zones for rule in zone.rules]
        old_zones = {zone.id: zone for zone in self.camera.zones}
        self.membership = {z.id: self.membership[z.id] if old_zones.get(z.id) == z else ZoneMembership(z.inertia)
                           for z in camera.zones}
        if camera.motion != self.camera.motion:  # new motion masks: the gate learns its background again
            self.gate = MotionGate(camera.motion)
        self.inside = {z.id: self.inside.get(z.id, []) if old_zones.get(z.id) == z else [] for z in camera.zones}
        if camera.clips != self.camera.clips or camera.detect_fps != self.camera.detect_fps:
            if self.clips is not None:
                self.clips.close()  # the clips being gathered are encoded with what they have
            self.clips = self._clip_recorder(camera)
        elif self.clips is not None:  # new masks hold from the next kept frame on
            self.clips.privacy_masks = camera.privacy_masks
        self.camera, self.rules = camera, rules
        self.thresholds = self.detector.thresholds_for(rule for _, rule, _ in rules)
        self.frame_size = (0, 0)  # zone areas (and fire-lane backgrounds) are rebuilt on the next frame
        kept = sum(1 for zone, rule, _ in rules if key(zone, rule) in running)
        return kept, len(rules) - kept

    def camera_event(self, event_type: EventType, phase: Phase, incident_id: str, started_s: float, now_s: float,
                     image: np.ndarray | None = None, attributes: dict | None = None) -> Event:
        """An event about the camera itself (offline, tamper), on zone ``camera``."""
        return self._emit(RuleEvent(
            type=event_type, phase=phase, zone_id=CAMERA_ZONE, incident_id=incident_id, track=None,
            started_s=started_s, observed_s=now_s, ended_s=now_s if phase == Phase.END else None,
            attributes=attributes or {},
        ), image, None)

    def _emit(self, rule_event: RuleEvent, image: np.ndarray | None, area: ZoneArea | None,
              rule: Rule | None = None, plate: PlateReading | None = None) -> Event:
        snapshot, extra = None, {}
        if image is not None:
            # Every stored image is redacted: faces unless the rule turned it off, camera events (no rule) always.
            blur_faces = rule.blur_faces if rule is not None else True
            blur_plates = rule.blur_plates if rule is not None else True
            tracks = self.tracks + ([rule_event.track] if rule_event.track is not None else [])
            image = black_out(image, self.camera.privacy_masks)  # before anything is stored, the original too
            original = image
            vehicles = plate_classes([rule] if rule is not None else [])
            image, manifest = self.redactor.redact(
                image, [t.box for t in tracks if t.class_name == "person"],
                [t.box for t in tracks if t.class_name in vehicles], blur_faces, blur_plates)
            # An end's frame is the after-view: the object has left, so its stale box is not drawn.
            boxed = None if rule_event.phase is Phase.END else rule_event.track
            picture = annotate(image, area.polygon, boxed, rule_event.type.value) if area else image
            snapshot = self.evidence.save(picture, manifest, original)
            if boxed is not None:
                x1, y1, x2, y2 = crop_box(image, boxed)
                extra["crop_sha256"] = self.evidence.save(image[y1:y2, x1:x2],
                                                          manifest.cropped(x1, y1, x2, y2)).ref.sha256
        event = self._to_event(rule_event, snapshot.ref if snapshot else None)
        if self.clips is not None and rule is not None and rule_event.phase is not Phase.UPDATE:
            self.clips.request(event.event_id, rule_event.observed_s, rule.blur_faces, rule.blur_plates)
        if plate is not None:
            event = event.model_copy(update={"plate": plate})
        if isinstance(rule, CourierRule) and rule.gate and rule_event.attributes.get("gate_decision") == ALLOWED \
                and rule_event.phase is Phase.START and self.gate_client is not None:
            extra.update(self.gate_client.open_and_log(
                rule.gate.gate_id, event.event_id,
                f"courier_entry {rule_event.attributes['uniform_id']} ({rule_event.attributes['factors_passed']})",
                rule.gate.ack_timeout_s, rule.gate.command_ttl_s,
                tuple(str(rule_event.attributes["factors_passed"]).split(","))))
        if extra:
            event = event.model_copy(update={"attributes": {**event.attributes, **extra}})
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
