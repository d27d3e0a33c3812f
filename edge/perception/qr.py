"""QR codes a rider shows the gate camera: found and decoded around the person, nothing more.

A delivery platform gives its rider a code (on the phone or the delivery slip); the gate policy can
require it as a second factor next to the uniform. This module only reads: which strings the QR
codes near a person carry. Whether a code is valid (signature, expiry, replay) is the gate
policy's decision (:mod:`gridwatch.edge.rules.gate_policy`).

OpenCV's ``QRCodeDetector`` is used (opencv-contrib's WeChat detector would be better at tiny codes
but is not in the wheels this project ships). The search region is the person box widened by
``MARGIN`` — a phone held up beside the body — and small regions are upscaled, because the
detector needs a few pixels per module: a 60 px code of 25 modules is at its limit.
"""

from __future__ import annotations

import cv2
import numpy as np

MARGIN = 0.75            # widen the person box by this share on each side: a phone held up beside the body
MIN_REGION_SIDE = 960    # upscale smaller search regions to about this many pixels


class CodeReader:
    """Decodes the QR codes within and just around a person box."""

    def __init__(self) -> None:
        self.detector = cv2.QRCodeDetector()

    def read(self, image: np.ndarray, box: np.ndarray) -> list[str]:
        x1, y1, x2, y2 = (float(v) for v in box)
        dx, dy = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
        height, width = image.shape[:2]
        region = image[max(0, int(y1 - dy)):min(height, int(y2 + dy)), max(0, int(x1 - dx)):min(width, int(x2 + dx))]
        if region.size == 0:
            return []
        scale = MIN_REGION_SIDE / max(region.shape[:2])
        if scale > 1.0:
            region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        try:
            found, texts, _, _ = self.detector.detectAndDecodeMulti(region)
        except cv2.error:
            return []
        return [t for t in texts if t] if found else []
