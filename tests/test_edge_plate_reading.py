"""A fire-lane incident reads the blocking car's plate off the camera's thread (issue 23).

The clip is derived at run time from car-detection.mp4 as in tests/test_rules_fire_lane.py (empty
lane, a real frame with a car held with sensor noise, empty lane again), with a plate rendered
onto the held car where its own (unreadably small) plate is. The start goes out at once; the
plate follows in an update (when its reading finishes while the car still stands) and on the end,
which waited for its reading.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.plate_render import paste, perspective, render_plate
from gridwatch.broker.contract import EventType, Phase, PlateStatus
from gridwatch.edge.perception.detect import OnnxDetector
from gridwatch.edge.reading.engine import TextEngine
from gridwatch.edge.reading.plate_format import PlateColour
from gridwatch.edge.reading.plates import PlateReader
from tests.test_rules_fire_lane import CAR_FRAME, EMPTY_FRAME, FPS, VEHICLES, frames_of, lane_config, run_pipeline

pytest.importorskip("rapidocr_onnxruntime")

PLATE = "苏E7K352"
PLATE_CENTRE = (366, 300)  # the held car's own plate, read off the frame (bench/privacy_plates.csv, frame 80)
PLATE_HEIGHT_PX = 30


def plated_car_frame(samples: Path, plate: str = PLATE) -> np.ndarray:
    """Frame CAR_FRAME with a blue plate ``plate`` rendered over the car's own, slightly turned."""
    image = frames_of(samples, (CAR_FRAME,))[CAR_FRAME].copy()
    warped, corners = perspective(render_plate(plate, PlateColour.BLUE, 90), 10.0, 2.0)
    scale = PLATE_HEIGHT_PX / (corners[:, 1].max() - corners[:, 1].min())
    paste(image, cv2.resize(warped, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), PLATE_CENTRE)
    return image


def held_plated_clip(samples: Path, hold_s: float, plate: str = PLATE):
    """(time, image): 6 s empty lane, the plated car held for ``hold_s``, 12 s empty, with sensor noise."""
    empty = frames_of(samples, (EMPTY_FRAME,))[EMPTY_FRAME]
    car = plated_car_frame(samples, plate)
    rng = np.random.default_rng(4)
    t = 0.0
    for duration, image in [(6.0, empty), (hold_s, car), (12.0, empty)]:
        for _ in range(round(duration * FPS)):
            yield t, np.clip(image.astype(np.float32) + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)
            t += 1 / FPS


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    from gridwatch.edge.node import runner

    return runner.build_detector(lane_config(Path("unused"), 10))


def plate_config(samples: Path, read_plates: bool = True):
    config = lane_config(samples / "car-detection.mp4", 10.0, [*VEHICLES, "cell phone"])
    data = config.model_dump(mode="json", by_alias=True)
    data["cameras"][0]["zones"][0]["rules"][0].update(read_plates=read_plates, clutter=False)
    return type(config).model_validate(data)


def test_the_blocking_car_s_plate_goes_on_an_update_and_on_the_end(tmp_path: Path, samples: Path,
                                                                   detector: OnnxDetector) -> None:
    events = [e for e in run_pipeline(plate_config(samples), detector, held_plated_clip(samples, 18.0), tmp_path)
              if e.zone_id == "lane"]
    assert [e.type for e in events] == [EventType.FIRE_LANE_BLOCKED] * len(events)
    phases = [e.phase for e in events]
    assert phases[0] is Phase.START and phases[-1] is Phase.END and phases.count(Phase.END) == 1, phases
    assert events[0].plate is None, "the start goes out at once, before any reading"
    read = [e for e in events if e.plate is not None]
    # the end waited for its own reading; the start's comes as an update unless the end was faster (replay speed)
    assert read[-1].phase is Phase.END and [e.phase for e in read[:-1]] in ([], [Phase.UPDATE]), events
    for event in read:
        assert event.plate.status is PlateStatus.READ and event.plate.text == PLATE, event.plate
        assert event.plate.colour == "blue" and event.plate.frames == 3
        assert (tmp_path / f"{event.plate.crop_sha256}.jpg").exists()
    assert len({e.incident_id for e in events}) == 1


def test_stored_frames_keep_the_plate_blurred_and_only_the_crop_shows_it(tmp_path: Path, samples: Path,
                                                                          detector: OnnxDetector) -> None:
    """blur_plates (the default) holds for the blocking car too: its number is in the plate crop on the
    event, never in the stored scene, where the reader finds nothing to read."""
    events = [e for e in run_pipeline(plate_config(samples), detector, held_plated_clip(samples, 14.0), tmp_path)
              if e.zone_id == "lane"]
    start = events[0]
    scene = cv2.imread(str(tmp_path / f"{start.snapshot.sha256}.jpg"))
    height, width = scene.shape[:2]
    box = np.array(start.object.box, np.float32) * [width, height, width, height]
    reader = PlateReader(TextEngine())
    assert not reader.read(scene, box).readable
    crop_sha256 = next(e.plate.crop_sha256 for e in events if e.plate is not None)
    crop = cv2.imread(str(tmp_path / f"{crop_sha256}.jpg"))
    assert crop is not None and crop.shape[0] >= PLATE_HEIGHT_PX


def test_without_read_plates_no_plate_is_read(tmp_path: Path, samples: Path, detector: OnnxDetector) -> None:
    events = run_pipeline(plate_config(samples, read_plates=False), detector, held_plated_clip(samples, 14.0), tmp_path)
    lane = [e for e in events if e.zone_id == "lane"]
    assert [e.phase for e in lane] == [Phase.START, Phase.END]
    assert all(e.plate is None for e in events)
