"""Real YOLOX inference on real images: letterbox, decoding and NMS are right."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gridwatch.edge.perception.detect import OnnxDetector
from gridwatch.edge.perception.layouts import YoloxLayout, letterbox
from gridwatch.models.resolver import resolve_model


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    model = resolve_model("yolox_nano", allow_download=False)
    return OnnxDetector(model.path, model.spec.classes, model.spec.input_size, confidence=0.3)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_letterbox_keeps_aspect_top_left_with_grey_pad() -> None:
    frame = np.zeros((432, 768, 3), np.uint8)
    canvas, placement = letterbox(frame, (416, 416))
    blob = YoloxLayout.blob([canvas])
    assert blob.shape == (1, 3, 416, 416) and blob.dtype == np.float32
    scale = placement.scale
    assert scale == pytest.approx(416 / 768) and (placement.pad_x, placement.pad_y) == (0, 0)
    content_rows = round(432 * scale)
    assert (blob[0, :, :content_rows] == 0).all()
    assert (blob[0, :, content_rows:] == 114).all()


def test_dog_image_boxes(detector: OnnxDetector, samples: Path) -> None:
    """dog.jpg holds a dog, a bicycle and a car; their boxes are known from the YOLOX demo."""
    image = cv2.imread(str(samples / "dog.jpg"))
    found = detector.detect(image)
    by_class = {detector.class_names[c]: (b, s) for b, s, c in zip(found.boxes, found.scores, found.class_ids,
                                                                      strict=True)}
    expected = {"dog": [133, 207, 326, 543], "bicycle": [52, 137, 572, 424], "car": [466, 78, 692, 171]}
    for name, box in expected.items():
        assert name in by_class, f"no {name} found"
        got, score = by_class[name]
        assert score > 0.6
        assert iou(got, np.array(box, np.float32)) > 0.85, (name, got)
    assert detector.last_inference_ms > 0


def test_person_in_real_clip_and_empty_frame(detector: OnnxDetector, samples: Path) -> None:
    capture = cv2.VideoCapture(str(samples / "one-by-one-person-detection.mp4"))
    frames = {}
    for index in range(160):
        ok, image = capture.read()
        assert ok
        if index in (0, 120):
            frames[index] = image
    capture.release()
    persons = lambda d: [s for s, c in zip(d.scores, d.class_ids, strict=True) if c == 0]  # noqa: E731
    assert persons(detector.detect(frames[0])) == []        # the empty room at the start
    assert len(persons(detector.detect(frames[120]))) == 1  # p1 standing at the table at 12 s


@pytest.mark.parametrize("threshold", [0.3, 0.05])
def test_yolox_candidates_equal_scoring_every_anchor(detector: OnnxDetector, samples: Path, threshold: float) -> None:
    """Dropping anchors by objectness first (a score never exceeds it) must keep exactly what scoring all keeps."""
    capture = cv2.VideoCapture(str(samples / "one-by-one-person-detection.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 120)
    ok, frame = capture.read()
    capture.release()
    assert ok
    canvas, _ = letterbox(frame, detector.input_size)
    raw = detector.session.run(None, {detector.input_name: detector.layout.blob([canvas])})[0][0]
    thresholds = np.full(len(detector.class_names), threshold, np.float32)
    scores_all = raw[:, 5:] * raw[:, 4:5]
    ids_all = scores_all.argmax(1)
    best = scores_all[np.arange(len(raw)), ids_all]
    keep = best >= threshold
    centres = (raw[keep, :2] + detector.layout.grids[keep]) * detector.layout.strides[keep]
    sizes = np.exp(raw[keep, 2:4]) * detector.layout.strides[keep]
    boxes, scores, class_ids = detector.layout.candidates(raw, thresholds)
    assert keep.sum() > 0 and len(scores) == keep.sum()
    assert np.array_equal(scores, best[keep]) and np.array_equal(class_ids, ids_all[keep])
    assert np.array_equal(boxes, np.concatenate((centres - sizes / 2, centres + sizes / 2), 1))
