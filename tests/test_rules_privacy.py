"""Stored snapshots of a loitering event have faces blurred when the option is on (acceptance 5).

The frame is face-demographics-walking.gif at frame 30, where two faces are plainly visible; the
face rectangles below were read by eye from a gridded enlargement of that frame, not from any
detector. The frame is held (with sensor noise) in front of a loitering zone until the rule fires.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from gridwatch.broker.blur import BlurManifest
from gridwatch.edge.capture.source import Frame
from gridwatch.edge.config import parse_config
from gridwatch.edge.evidence.snapshots import EvidenceStore, manifest_path
from gridwatch.edge.node import runner
from gridwatch.edge.node.pipeline import CameraPipeline

CLIP, FRAME = "face-demographics-walking.gif", 30
FACES = [(176, 113, 202, 145), (288, 92, 316, 124)]  # x1, y1, x2, y2 in the 480x270 frame: woman, man


def sharpness(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    return float(cv2.Laplacian(cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def source_frame(samples: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(samples / CLIP))
    for _ in range(FRAME + 1):
        ok, image = capture.read()
        assert ok
    return image


def loitering_snapshots(samples: Path, tmp_path: Path, blur: bool) -> list[np.ndarray]:
    config = parse_config({"site_id": "demo", "node_id": "n1", "cameras": [{
        "id": "cam-1", "source": str(samples / CLIP), "detect_fps": 5, "zones": [{
            "id": "hall", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
            "rules": [{"type": "loitering", "min_dwell_s": 2, "blur_faces": blur}]}]}]})
    image = source_frame(samples)
    pipeline = CameraPipeline("demo", "n1", config.cameras[0], runner.build_detector(config),
                              EvidenceStore(tmp_path), [], datetime(2025, 5, 1, 23, tzinfo=UTC))
    rng = np.random.default_rng(1)
    for i in range(25):
        noisy = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
        pipeline.process(Frame(noisy, i / 5, i))
    starts = [e for e in pipeline.events if e.phase.value == "start"]
    assert len(starts) == 2, "both people should loiter"
    for event in starts:  # each stored image says what was blurred, by which model
        sidecar = manifest_path(tmp_path / f"{event.snapshot.sha256}.jpg")
        manifest = BlurManifest.model_validate_json(sidecar.read_text())
        assert manifest.faces_blurred is blur and manifest.model == "face_detection_yunet"
        assert (sum(r.kind == "face" for r in manifest.regions) >= len(FACES)) is blur
    return [cv2.imread(str(tmp_path / f"{e.snapshot.sha256}.jpg")) for e in starts]


@pytest.mark.parametrize("blur", [True, False])
def test_loitering_snapshots_blur_faces_when_on(tmp_path: Path, samples: Path, blur: bool) -> None:
    original = source_frame(samples)
    for snapshot in loitering_snapshots(samples, tmp_path, blur):
        for face in FACES:
            kept = sharpness(snapshot, face) / sharpness(original, face)  # detail left in the stored face
            if blur:
                assert kept < 0.1, (face, kept)    # smooth blobs: nothing left to recognise
            else:
                assert kept > 0.5, (face, kept)    # the control: the face is stored as it was
    assert parse_config({"site_id": "s", "node_id": "n", "cameras": [{"id": "c", "source": "x", "zones": [{
        "id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "rules": [{"type": "loitering", "min_dwell_s": 1}]}]}]}
    ).cameras[0].zones[0].rules[0].blur_faces, "on by default for loitering"
