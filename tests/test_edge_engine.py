"""Units of the edge engine on real frames: layouts, providers, motion gate, zone inertia, tamper, drops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gridwatch.broker.zones import Zone
from gridwatch.edge.capture.source import Frame, FrameSource, Sampler
from gridwatch.edge.config import ConfigError, Motion, Tamper, parse_config
from gridwatch.edge.node.runner import Engine, build_detector, evidence_store
from gridwatch.edge.node.scheduler import Scheduler
from gridwatch.edge.perception.layouts import Yolov8Layout, detect_layout
from gridwatch.edge.perception.motion import CHEAP_REFRESHES, MotionDetector, MotionGate
from gridwatch.edge.perception.tamper import TamperCheck
from gridwatch.edge.perception.track import Track
from gridwatch.edge.rules.zones import ZoneArea, ZoneMembership

CLIP = "one-by-one-person-detection.mp4"


def frames_at(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    found = {}
    for index in range(max(indices) + 1):
        ok, image = capture.read()
        assert ok
        if index in indices:
            found[index] = image
    capture.release()
    return found


def config(**detector) -> dict:
    return {"site_id": "s", "node_id": "n", "detector": detector, "cameras": [{"id": "c", "source": "0"}]}


def test_layout_is_read_from_the_output_shape() -> None:
    assert detect_layout([1, 3549, 85], 80) == "yolox"
    assert detect_layout([1, 84, 8400], 80) == "yolov8"
    assert detect_layout(["batch", 84, "anchors"], 80) == "yolov8"
    assert detect_layout([1, 100, 7], 80) is None


def test_yolov8_layout_decodes_centre_size_boxes() -> None:
    raw = np.zeros((4 + 3, 5), np.float32)
    raw[:4, 2] = [100, 200, 40, 80]  # cx, cy, w, h in input pixels
    raw[4 + 1, 2] = 0.9              # class 1
    raw[4 + 0, 4] = 0.1              # below threshold
    boxes, scores, classes = Yolov8Layout((640, 640)).candidates(raw, np.full(3, 0.25, np.float32))
    assert boxes.tolist() == [[80, 160, 120, 240]] and classes.tolist() == [1]
    assert scores.tolist() == pytest.approx([0.9])


def test_missing_execution_provider_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"detector\.providers: CUDAExecutionProvider not available"):
        build_detector(parse_config(config(providers=["cuda"])))


def test_input_size_that_the_model_does_not_take_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"detector\.input_size"):
        build_detector(parse_config(config(input_size=[300, 300])))


def test_unknown_class_in_class_confidence_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"detector\.class_confidence\.persn"):
        build_detector(parse_config(config(class_confidence={"persn": 0.5})))


def test_motion_sees_a_person_walking_in_but_not_a_still_room_or_a_masked_one(samples: Path) -> None:
    frames = frames_at(samples / CLIP, [0, 2, 60, 62])  # empty room at 0 s; p1 walks in around 6 s
    still = MotionDetector(Motion())
    assert still.regions(frames[0]) == [] and still.regions(frames[2]) == []
    moving = MotionDetector(Motion())
    moving.regions(frames[0])
    regions = moving.regions(frames[60])
    assert regions, "a person entering the empty room is motion"
    masked = MotionDetector(Motion(masks=(((0, 0), (1, 0), (1, 1), (0, 1)),)))
    masked.regions(frames[0])
    assert masked.regions(frames[60]) == []


def test_gate_skips_a_still_camera_with_nothing_tracked(samples: Path) -> None:
    frames = frames_at(samples / CLIP, [0, 2, 4, 60])
    gate = MotionGate(Motion())
    assert gate.needs_detection(frames[0], 0.0, [], False)  # first frame: always
    gate.detected(0.0)
    assert not gate.needs_detection(frames[2], 0.2, [], False)
    assert not gate.needs_detection(frames[4], 0.4, [], False)
    assert gate.needs_detection(frames[60], 6.0, [], False)


def test_gate_refreshes_a_still_tracked_object_cheaply_then_with_the_detector(samples: Path) -> None:
    frames = frames_at(samples / CLIP, [0, 2, 4])  # the room is still for the first seconds
    gate = MotionGate(Motion(refresh_s=2.0))
    still_object = [np.array([300, 200, 400, 430], np.float32)]
    assert gate.needs_detection(frames[0], 0.0, still_object, False)
    gate.detected(0.0)
    assert not gate.needs_detection(frames[2], 1.0, still_object, False)
    for n in range(1, CHEAP_REFRESHES + 1):
        assert not gate.needs_detection(frames[4], 2.0 * n, still_object, False), "unchanged box: pixel check passes"
        assert not gate.needs_detection(frames[4], 2.0 * n + 1.0, still_object, False), "and holds for refresh_s"
    assert gate.needs_detection(frames[4], 2.0 * (CHEAP_REFRESHES + 1), still_object, False), "then the detector"
    assert gate.needs_detection(frames[4], 2.2 * (CHEAP_REFRESHES + 1), still_object, True), "unconfirmed: detect"
    assert MotionGate(Motion(enabled=False)).needs_detection(frames[2], 0.2, [], False)


def test_a_tracked_box_whose_pixels_changed_since_its_detection_is_not_unchanged(samples: Path) -> None:
    frames = frames_at(samples / CLIP, [0, 60])  # empty room at 0 s; p1 has walked in by 6 s
    motion = MotionDetector(Motion())
    motion.regions(frames[0])
    reference = motion.grey
    walker = motion.regions(frames[60])
    assert walker and not motion.unchanged(reference, walker), "where the walker now is, the view changed"
    wall = [np.array([0, 0, 60, 60], np.float32)]  # top-left corner: nobody there at 0 s or 6 s
    assert motion.unchanged(reference, wall)
    # Someone appears so slowly that the background absorbs it and the motion stage never fires: the
    # refresh's pixel check still sees the box differ from the detection-time view and calls the detector.
    gate = MotionGate(Motion(refresh_s=2.0))
    assert gate.needs_detection(frames[0], 0.0, walker, False)
    gate.detected(0.0)
    steps = [cv2.addWeighted(frames[0], 1 - k / 30, frames[60], k / 30, 0) for k in range(1, 11)]  # 2 s
    shadow = MotionDetector(Motion())  # sees what the gate's motion stage sees
    shadow.regions(frames[0])
    assert all(shadow.regions(image) == [] for image in steps), "too slow for the motion stage"
    verdicts = [gate.needs_detection(image, 0.2 * k, walker, False) for k, image in enumerate(steps, 1)]
    assert verdicts == [False] * 9 + [True], "the first refresh (2 s) finds the box changed"


def test_zone_membership_has_inertia_and_a_minimum_size() -> None:
    zone = Zone(id="z", polygon=((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)), inertia=3, min_area=0.01,
                rules=({"type": "loitering", "min_dwell_s": 5},))
    area = ZoneArea(zone, 100, 100)
    inside = Track(1, np.array([60, 10, 80, 50], np.float32), "person", 0.9)
    outside = Track(1, np.array([10, 10, 30, 50], np.float32), "person", 0.9)
    tiny = Track(2, np.array([70, 10, 72, 12], np.float32), "person", 0.9)
    membership = ZoneMembership(zone.inertia)
    assert [len(membership.update(area, [inside, tiny])) for _ in range(4)] == [0, 0, 1, 1]  # tiny never
    flicker = [len(membership.update(area, [track])) for track in (outside, inside, outside, outside, outside)]
    assert flicker == [1, 1, 1, 1, 0]  # out only after 3 updates in a row outside


def test_tamper_reports_a_covered_camera_and_its_recovery(samples: Path) -> None:
    frames = frames_at(samples / CLIP, [0, 10])
    check = TamperCheck(Tamper(check_every_s=1.0, after_s=3.0, reference_after_s=1.0))
    covered = np.full_like(frames[0], 30)
    changes = [check.update(frames[0], t) for t in (0.0, 1.0, 2.0)]
    changes += [check.update(covered, t) for t in (3.0, 4.0, 5.0, 6.0, 7.0)]
    changes += [check.update(frames[10], t) for t in (8.0, 9.0)]
    reported = [c for c in changes if c is not None]
    assert [(c.phase, c.reason) for c in reported] == [("start", "covered"), ("end", "")]
    assert reported[0].since_s == 3.0 and reported[0].incident_id == reported[1].incident_id
    blurred = TamperCheck(Tamper(check_every_s=1.0, after_s=0.0, reference_after_s=0.0))
    blurred.update(frames[0], 0.0)
    change = blurred.update(cv2.GaussianBlur(frames[0], (0, 0), 6), 1.0)
    assert change is not None and change.reason == "defocused"
    turned = TamperCheck(Tamper(check_every_s=1.0, after_s=0.0, reference_after_s=0.0))
    turned.update(frames[0], 0.0)
    height, width = frames[0].shape[:2]
    rotated = cv2.warpAffine(frames[0], cv2.getRotationMatrix2D((width / 2, height / 2), 25, 1.3), (width, height))
    change = turned.update(rotated, 1.0)
    assert change is not None and change.reason == "moved"


def test_a_stale_frame_is_replaced_and_counted_not_queued() -> None:
    cfg = parse_config(config())
    scheduler = Scheduler(build_detector(cfg), [object(), object()], workers=1)  # workers not started
    image = np.zeros((4, 4, 3), np.uint8)
    for t in (0.0, 0.2, 0.4):
        scheduler.offer(0, Frame(image, t, 0))
    scheduler.offer(1, Frame(image, 0.0, 0))
    assert scheduler.slots[0].dropped == 2 and scheduler.slots[0].frame.source_time_s == 0.4
    assert scheduler.slots[1].dropped == 0
    assert [i for i, _ in scheduler._take()] == [0]  # the one that has waited longest goes first


def test_gate_detects_sustained_motion_once_per_motion_period_but_a_new_object_at_once(samples: Path) -> None:
    frames = frames_at(samples / CLIP, [0, 60, 62, 64, 66, 68, 70])  # p1 walks in around 6 s
    gate = MotionGate(Motion())
    assert gate.needs_detection(frames[0], 0.0, [], False)
    gate.detected(0.0)
    elsewhere = [np.array([0, 0, 20, 20], np.float32)]  # something tracked that does not explain the walker
    assert gate.needs_detection(frames[60], 6.0, elsewhere, False), "new motion is detected"
    gate.detected(6.0)
    assert not gate.needs_detection(frames[62], 6.2, elsewhere, False), "the tracks stand for one frame"
    assert gate.needs_detection(frames[64], 6.4, elsewhere, False), "then the walker is detected again"
    gate.detected(6.4)
    assert gate.needs_detection(frames[66], 6.6, elsewhere, True), "an unconfirmed object: the very next frame"
    gate.detected(6.6)
    assert not gate.needs_detection(frames[68], 6.8, [], False), "nothing tracked: motion waits longer"
    assert gate.needs_detection(frames[70], 7.2, [], False)


def test_blocking_engine_processes_every_frame_of_every_camera_once_in_order(samples: Path, tmp_path: Path) -> None:
    """Readers wait on their own slot and workers are woken one at a time: nothing may be lost or stuck."""
    clip = str(samples / "car-detection.mp4")
    cfg = parse_config({"site_id": "s", "node_id": "n", "detector": {"workers": 2}, "evidence": {"dir": str(tmp_path)},
                        "cameras": [{"id": f"c{n}", "source": clip, "tamper": {"enabled": False}}
                                    for n in range(3)]})
    source = FrameSource(clip)
    expected = [frame.source_time_s for frame in source.frames(Sampler(cfg.cameras[0].detect_fps))]
    source.close()
    engine = Engine(cfg, [], evidence_store(cfg), realtime=False, block=True, reconnect=False)
    seen: list[list[float]] = [[] for _ in engine.pipelines]
    for pipeline, times in zip(engine.pipelines, seen, strict=True):
        def recording(frame: Frame, detections: object, update=pipeline.update, times=times) -> list:
            times.append(frame.source_time_s)
            return update(frame, detections)
        pipeline.update = recording
    engine.start()
    engine.finish()
    engine.stop()
    assert all(times == expected for times in seen)
    assert sum(slot.dropped for slot in engine.scheduler.slots) == 0
