"""Faces on a whole frame with YuNet (``cv2.FaceDetectorYN``), and the sharpness measure of a face region.

The edge blurs what this finds and the server, when it has OpenCV, checks uploads with the same model
and the same measure: one definition of "a sharp face" on both sides, so a snapshot the edge stored
as blurred is never refused for a disagreement between two detectors. OpenCV (and numpy) are imported
lazily: the server extra has neither and must still import this module.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridwatch.models.resolver import resolve_model

if TYPE_CHECKING:  # numpy comes with OpenCV; the server extra has neither and must import this module
    import numpy as np

MODEL_NAME = "face_detection_yunet"
# Low on purpose (upstream uses 0.9): a false face costs a blurred patch of wall, a missed one exposes a
# resident. At 0.4 the benchmark finds the poster face of MOT17-09 (score 0.48) as well.
SCORE_THRESHOLD = 0.4
NMS_THRESHOLD = 0.3
# YuNet's smallest anchors are about 10 px; faces in a 480x270 frame are often 12-16 px, so narrow
# frames are upscaled to this width first; frames wider than ``MAX_WIDTH`` are scaled down to it (a
# 1080p frame costs four times the time and finds no more: measured in ``python -m bench privacy``).
MIN_WIDTH = 960
MAX_WIDTH = 1440
# A face region whose grey-level Laplacian variance is above this is "sharp" (recognisable detail).
# In ``python -m bench privacy`` the hand-labelled faces measure 27-3300 in stored JPEGs without blur
# (the lowest: a large, soft, low-contrast face of a GIF) and at most 17 once pixelated.
SHARP_LAPLACIAN_VAR = 20.0


@dataclass(frozen=True)
class Face:
    """A face box in frame pixels (x1, y1, x2, y2) and the detector's score."""

    box: tuple[float, float, float, float]
    score: float


def cv2_available() -> bool:
    """True where OpenCV is installed (the edge; the server only with the optional extra)."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def sharpness(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian of the grey-level pixels inside ``box``: high where there is fine detail.

    The Laplacian is taken with the pixels around the box as its neighbours (not a mirrored border):
    a mirrored border turns any smooth gradient into a crease at the box's edge and reads a
    thoroughly blurred face as "sharp"."""
    import cv2

    height, width = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, round(float(box[2]))), min(height, round(float(box[3])))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return 0.0
    ox1, oy1, ox2, oy2 = max(0, x1 - 1), max(0, y1 - 1), min(width, x2 + 1), min(height, y2 + 1)
    patch = image[oy1:oy2, ox1:ox2]
    grey = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) if patch.ndim == 3 else patch
    laplacian = cv2.Laplacian(grey, cv2.CV_64F)
    return float(laplacian[y1 - oy1:y2 - oy1, x1 - ox1:x2 - ox1].var())


class FaceDetector:
    """YuNet on whole frames. One instance per thread of use: ``cv2.FaceDetectorYN`` is not thread-safe,
    so ``detect`` holds a lock (cheap: a camera pipeline or a server worker calls it one frame at a time)."""

    def __init__(self, model_path: str | Path | None = None, score_threshold: float = SCORE_THRESHOLD) -> None:
        import cv2

        # Never fetched at run time: an edge box must not download a model while it handles evidence.
        self.model = resolve_model(MODEL_NAME, model_path, allow_download=False)
        self._net: Any = cv2.FaceDetectorYN.create(str(self.model.path), "", (320, 320), score_threshold,
                                                   NMS_THRESHOLD, 5000)
        self._size: tuple[int, int] = (320, 320)
        self._lock = threading.Lock()

    @property
    def sha256(self) -> str:
        return self.model.spec.sha256

    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face on the frame, in the frame's pixel coordinates."""
        import cv2

        height, width = image.shape[:2]
        scale = MIN_WIDTH / width if width < MIN_WIDTH else MAX_WIDTH / width if width > MAX_WIDTH else 1.0
        frame = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale != 1 else image
        size = (frame.shape[1], frame.shape[0])
        with self._lock:
            if size != self._size:
                self._net.setInputSize(size)
                self._size = size
            _, rows = self._net.detect(frame)
        if rows is None:
            return []
        faces = []
        for row in rows:
            x, y, w, h = (float(v) / scale for v in row[:4])
            faces.append(Face((max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)),
                              float(row[14])))
        return faces
