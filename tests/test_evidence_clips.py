"""Event clips on real footage: a held car in a fire lane yields a start clip and an end clip (issue 18, item 3).

The footage is the fire-lane test's held car (car-detection.mp4: empty lane, a real car frame held with
sensor noise, empty lane again), with a real face pasted into a corner of every frame: the woman of
face-demographics-walking.gif frame 30, enlarged so YuNet finds it plainly on the unblurred frames. The
clips must be H.264 MP4 (ffprobe), last ``before_s + after_s``, show no face YuNet can find, and keep the
camera's privacy mask black. The ring buffer's memory bound is measured and printed.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from gridwatch.broker.contract import Phase
from gridwatch.edge.capture.source import Frame
from gridwatch.edge.config import parse_config
from gridwatch.edge.evidence.clips import BufferedFrame, FrameRing
from gridwatch.edge.evidence.snapshots import EvidenceStore
from gridwatch.edge.node import runner
from gridwatch.edge.node.pipeline import CameraPipeline
from gridwatch.models.faces import FaceDetector

CLIP = "car-detection.mp4"
EMPTY_FRAME, CAR_FRAME = 25, 80   # as in test_rules_fire_lane: empty lane, one white car wholly inside
FACE_CLIP, FACE_FRAME = "face-demographics-walking.gif", 30
FACE_AREA = (150, 85, 230, 175)   # x1, y1, x2, y2: around the woman's face (176, 113, 202, 145)
PATCH = 180                       # the face area pasted enlarged to this square, top-left of every frame
FPS, BEFORE_S, AFTER_S = 5.0, 4.0, 3.0
MASK = [[0.8, 0.8], [1.0, 0.8], [1.0, 1.0], [0.8, 1.0]]
DURATION_TOLERANCE_S = 1 / FPS + 0.05


def nth_frame(path: Path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, image = capture.read()
        assert ok, f"{path.name} ended before frame {index}"
    return image


def with_face(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[:PATCH, :PATCH] = face
    return out


def held_car(samples: Path, hold_s: float = 18.0):
    """(time, image): 6 s empty lane, the car held, 14 s empty (room for the end clip's after-seconds)."""
    x1, y1, x2, y2 = FACE_AREA
    face = cv2.resize(nth_frame(samples / FACE_CLIP, FACE_FRAME)[y1:y2, x1:x2], (PATCH, PATCH),
                      interpolation=cv2.INTER_CUBIC)
    empty = with_face(nth_frame(samples / CLIP, EMPTY_FRAME), face)
    car = with_face(nth_frame(samples / CLIP, CAR_FRAME), face)
    rng, t = np.random.default_rng(4), 0.0
    for duration, image in [(6.0, empty), (hold_s, car), (14.0, empty)]:
        for _ in range(round(duration * FPS)):
            yield t, np.clip(image.astype(np.float32) + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)
            t += 1 / FPS


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,pix_fmt,nb_frames:format=duration,format_name", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    return {**info["streams"][0], **info["format"]}


def decoded_frames(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(image)


def faces_in_patch(detector: FaceDetector, image: np.ndarray) -> int:
    return sum(1 for f in detector.detect(image) if (f.box[0] + f.box[2]) / 2 < PATCH and (f.box[1] + f.box[3]) / 2
               < PATCH)


def test_fire_lane_incident_yields_blurred_h264_start_and_end_clips(tmp_path: Path, samples: Path) -> None:
    config = parse_config({"site_id": "demo", "node_id": "n1", "cameras": [{
        "id": "cam-1", "source": str(samples / CLIP), "detect_fps": FPS, "privacy_masks": [MASK],
        "clips": {"enabled": True, "before_s": BEFORE_S, "after_s": AFTER_S},
        "zones": [{"id": "lane", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                   "rules": [{"type": "fire_lane", "min_stationary_s": 10.0}]}]}]})
    camera = config.cameras[0]
    pipeline = CameraPipeline("demo", "n1", camera, runner.build_detector(config), EvidenceStore(tmp_path), [],
                              datetime(2025, 5, 1, 12, tzinfo=UTC))
    source = list(held_car(samples))
    detector = FaceDetector()
    assert faces_in_patch(detector, source[0][1]) >= 1, "the pasted face must be findable unblurred"
    for index, (t, image) in enumerate(source):
        pipeline.process(Frame(image, t, index))
    pipeline.finish()
    assert pipeline.clips is not None and pipeline.clips.failures == 0
    events = [e for e in pipeline.events if e.zone_id == "lane"]
    assert [e.phase for e in events] == [Phase.START, Phase.END], events
    clips = {clip.event_id: clip for clip in pipeline.clips.clips}
    assert set(clips) == {e.event_id for e in events}

    ring = pipeline.clips.ring
    frame_kib = ring.peak_bytes / max(1, len(ring.frames)) / 1024
    height, width = source[0][1].shape[:2]
    print(f"\nring buffer: peak {ring.peak_bytes / 1024:.0f} KiB for {BEFORE_S:g} s at {FPS:g} fps ({len(ring.frames)} "
          f"frames of {width}x{height}, ~{frame_kib:.0f} KiB each; bound {camera.clips.max_buffer_mb:g} MiB)")
    assert len(ring.frames) <= BEFORE_S * FPS + 1
    assert ring.peak_bytes <= camera.clips.max_buffer_mb * 1024 * 1024

    for event in events:
        clip = clips[event.event_id]
        assert clip.path == tmp_path / "clips" / camera.id / f"{event.event_id}.mp4"
        info = ffprobe(clip.path)
        duration = float(info["duration"])
        print(f"{event.phase.value} clip: {info['codec_name']} {info['pix_fmt']} {duration:.2f} s, "
              f"{clip.frames} frames, {clip.path.stat().st_size / 1024:.0f} KiB")
        assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p" and "mp4" in info["format_name"]
        assert abs(duration - (BEFORE_S + AFTER_S)) <= DURATION_TOLERANCE_S, duration
        frames = decoded_frames(clip.path)
        assert abs(len(frames) - (BEFORE_S + AFTER_S) * FPS) <= 1, len(frames)
        found = [faces_in_patch(detector, frame) for frame in frames]
        print(f"  faces YuNet finds in the clip's face area: {sum(found)} over {len(frames)} frames")
        assert sum(found) == 0
        masked = np.stack([f[int(0.82 * height):, int(0.82 * width):] for f in frames])
        assert masked.mean() < 8, f"privacy mask not black in the clip (mean {masked.mean():.1f})"


def test_ring_drops_oldest_frames_beyond_its_byte_bound() -> None:
    ring = FrameRing(seconds=10.0, fps=5.0, max_bytes=5000)
    for i in range(50):
        ring.push(BufferedFrame(i / 5, bytes(1000), (), ()))
    assert ring.bytes <= 5000 and len(ring.frames) == 5 and ring.frames[0].time_s == pytest.approx(9.0)
    assert ring.peak_bytes <= 5000


def test_ring_keeps_frames_at_the_clip_fps() -> None:
    ring = FrameRing(seconds=2.0, fps=2.0, max_bytes=10**9)
    for i in range(100):  # a 10 fps pipeline
        if ring.due(i / 10):
            ring.push(BufferedFrame(i / 10, b"x", (), ()))
    assert [f.time_s for f in ring.frames] == pytest.approx([8.0, 8.5, 9.0, 9.5])


def test_a_hot_reload_starts_stops_and_re_masks_the_recorder(tmp_path: Path, samples: Path) -> None:
    def camera(clips: dict, masks: list) -> object:
        return parse_config({"site_id": "demo", "node_id": "n1", "cameras": [{
            "id": "cam-1", "source": str(samples / CLIP), "clips": clips, "privacy_masks": masks}]}).cameras[0]

    config = parse_config({"site_id": "demo", "node_id": "n1", "cameras": [{"id": "cam-1", "source": "x"}]})
    pipeline = CameraPipeline("demo", "n1", camera({}, []), runner.build_detector(config), EvidenceStore(tmp_path),
                              [], datetime(2025, 5, 1, 12, tzinfo=UTC))
    assert pipeline.clips is None
    pipeline.replace_zones(camera({"enabled": True}, []))
    recorder = pipeline.clips
    assert recorder is not None and recorder.privacy_masks == ()
    pipeline.replace_zones(camera({"enabled": True}, [MASK]))
    assert pipeline.clips is recorder and len(recorder.privacy_masks) == 1  # same ring, new mask
    pipeline.replace_zones(camera({"enabled": False}, [MASK]))
    assert pipeline.clips is None and not recorder._worker.is_alive()
