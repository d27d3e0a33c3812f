"""A long-term background model of a lane, to find what the detector cannot name (piled goods, e-bikes).

The reference is the empty lane, taken when no vehicle is in it, and adapted slowly only where the
lane still matches it (gradual daylight drift), so something left on the lane stays different. Each
image is divided by its own median brightness over the lane before comparing, so a cloud or the
lights coming on (a global gain) does not count as change; a change over most of the lane at once is
taken as a lighting change and the reference is re-taken. Boxes of known objects (vehicles) are
masked: those are the stationary-vehicle rule's business.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = 160            # the model works on a small grey image: cheap, and blind to sensor noise
RELATIVE_CHANGE = 0.25 # brightness change, relative to the lane's median, that counts as different
LIGHTING_SHARE = 0.6   # this much of the lane changed at once: lighting, not an object
ADAPT_RATE = 0.02      # per check, where the lane still matches its reference
# A known object's box is widened by this share of its size on each side before masking: mirrors, the
# shadow and the reflection on wet asphalt belong to the vehicle, and a detector's box is a few pixels
# tight or loose depending on its canvas. At 0.1, a car held on car-detection.mp4 left 284 (416x416
# canvas) or 416 (384x672) shadow pixels of the 288 that make clutter: a second, false incident.
KNOWN_PAD = 0.2


class LaneBackground:
    """``unexplained(image, boxes)``: the lane pixels that differ from the empty-lane reference."""

    def __init__(self, polygon: np.ndarray, frame_size: tuple[int, int]) -> None:
        width, height = frame_size
        self.scale = WIDTH / width
        small = (WIDTH, max(1, round(height * self.scale)))
        self.mask = np.zeros((small[1], small[0]), np.uint8)
        cv2.fillPoly(self.mask, [(polygon.reshape(-1, 2) * self.scale).astype(np.int32)], 1)
        self.size = small
        self.reference: np.ndarray | None = None
        self.kernel = np.ones((3, 3), np.uint8)

    def _normalised(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(cv2.resize(image, self.size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        grey = cv2.GaussianBlur(grey.astype(np.float32), (5, 5), 0)
        return grey / max(float(np.median(grey[self.mask > 0])), 1.0)

    def _box_mask(self, boxes: list[np.ndarray]) -> np.ndarray:
        known = np.zeros_like(self.mask)
        for box in boxes:
            x1, y1, x2, y2 = box * self.scale
            pad_x, pad_y = KNOWN_PAD * (x2 - x1) + 2, KNOWN_PAD * (y2 - y1) + 2
            cv2.rectangle(known, (int(x1 - pad_x), int(y1 - pad_y)), (int(x2 + pad_x), int(y2 + pad_y)), 1, -1)
        return known

    def take_reference(self, image: np.ndarray) -> None:
        self.reference = self._normalised(image)

    @property
    def lane_pixels(self) -> int:
        return max(int(self.mask.sum()), 1)

    def compare(self, image: np.ndarray, known_boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Boolean maps (model size): lane pixels unlike the reference outside known objects, and the
        pixels hidden by known objects (about which nothing can be said)."""
        assert self.reference is not None, "take_reference first"
        current = self._normalised(image)
        differs = (np.abs(current - self.reference) > RELATIVE_CHANGE).astype(np.uint8) & self.mask
        known = self._box_mask(known_boxes)
        unexplained = cv2.morphologyEx(differs, cv2.MORPH_OPEN, self.kernel) & (1 - known)
        if unexplained.sum() > LIGHTING_SHARE * self.lane_pixels:
            self.reference = current
            return np.zeros(self.mask.shape, bool), known > 0
        still = (differs == 0) & (self.mask > 0)
        self.reference[still] += ADAPT_RATE * (current[still] - self.reference[still])
        return unexplained > 0, known > 0
