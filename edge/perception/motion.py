"""Motion gating: a cheap stage that decides whether a frame needs the detector at all.

The detector is the expensive part of the edge (tens of ms a frame); a grey, downscaled frame
difference against a slowly updated background costs well under a millisecond. A camera where
nothing moves and nothing is tracked therefore costs one decode and this stage. Motion that is
already explained by a tracked object (it lies inside that object's box, grown a little) does not
trigger the detector; tracked objects are instead re-checked every ``refresh_s`` so a stationary
person stays known. Masked regions (swaying trees, timestamp overlays) never count as motion.

The re-check is cheap when it can be: if every tracked box looks as it did at the last detection
(the same downscaled grey pixels, within the motion threshold), the objects are where the detector
last saw them and it would find them again, so the check passes without it. The background model
cannot answer this (it absorbs a seated person within seconds), the detection-time view can. Only
every ``CHEAP_REFRESHES + 1``-th refresh, or a changed box, runs the detector. A refresh passed this
way counts as a detector update for zone membership (``verified``), so an object that stands still
right after it entered still gets in after the zone's ``inertia`` updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from gridwatch.edge.config import Motion

BACKGROUND_ALPHA = 0.2   # per sampled frame: a parked car becomes background within a few seconds
GROW = 0.15              # a track's box grown by this fraction of its size on each side explains motion
EXPLAINED = 0.85         # share of a motion blob that must lie inside one grown track box
SWAY = 0.5              # a blob larger than this share of the box is the object moving, not swaying
# Sustained motion is detected at most this often; tracks stand in between, so these bound how much
# later than with every frame an entry, exit or first sighting can be seen (events may move 1 s).
MOTION_PERIOD_S = 0.4            # something tracked is moving: every 2nd frame at 5 detect-fps
UNTRACKED_MOTION_PERIOD_S = 0.6  # motion but nothing tracked (passing cars, leaves): every 3rd frame
HALF_FRAME_S = 0.1               # sampled timestamps jitter; a period is met within half a 5-fps frame
STILL = 0.05           # share of a track box's pixels that may change and the object still count as unmoved
CHEAP_REFRESHES = 3    # refreshes in a row passed by the pixel check before the detector must look again


class MotionDetector:
    """Moving regions of a frame, as boxes in frame pixels."""

    def __init__(self, settings: Motion) -> None:
        self.settings = settings
        self.background: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.grey: np.ndarray | None = None  # the last frame, as the motion stage sees it
        self.scale = 1.0

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """Grey, then shrink by a whole factor before the last fractional step: OpenCV's area resize
        has a fast path only for whole factors, and one fractional step (768 → 160) cost 1 ms a
        frame, as much as the rest of a gated frame's work."""
        height, width = image.shape[:2]
        self.scale = width / self.settings.width
        small_size = (self.settings.width, max(1, round(height / self.scale)))
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        factor = width // self.settings.width
        if factor > 1:
            grey = cv2.resize(grey, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
        grey = cv2.resize(grey, small_size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(grey, (5, 5), 0).astype(np.float32)

    def _mask_for(self, shape: tuple[int, int]) -> np.ndarray:
        mask = np.full(shape, 255, np.uint8)
        size = np.array([shape[1], shape[0]], np.float32)
        for polygon in self.settings.masks:
            cv2.fillPoly(mask, [(np.asarray(polygon, np.float32) * size).astype(np.int32)], 0)
        return mask

    def regions(self, image: np.ndarray) -> list[np.ndarray]:
        """Boxes (x1, y1, x2, y2, frame pixels) that changed since the background; [] on the first frame."""
        grey = self.grey = self._prepare(image)
        if self.background is None or self.background.shape != grey.shape:
            self.background, self.mask = grey.copy(), self._mask_for(grey.shape)  # updated in place below
            return []
        diff = cv2.absdiff(grey, self.background)
        cv2.accumulateWeighted(grey, self.background, BACKGROUND_ALPHA)
        moving = cv2.bitwise_and((diff > self.settings.threshold).astype(np.uint8) * 255, self.mask)
        moving = cv2.dilate(moving, None, iterations=2)
        contours, _ = cv2.findContours(moving, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self.settings.min_area * grey.shape[0] * grey.shape[1]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            if w * h >= min_area:
                boxes.append(np.array([x, y, x + w, y + h], np.float32) * self.scale)
        return boxes

    def unchanged(self, reference: np.ndarray, boxes: Sequence[np.ndarray]) -> bool:
        """True when, inside every box (frame pixels), the last frame matches ``reference`` (a past ``grey``)."""
        if self.grey is None or self.grey.shape != reference.shape:
            return False
        height, width = reference.shape
        for box in boxes:
            x1, y1, x2, y2 = (int(v) for v in np.round(np.asarray(box) / self.scale))
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, max(x2, x1 + 1)), min(height, max(y2, y1 + 1))
            diff = cv2.absdiff(self.grey[y1:y2, x1:x2], reference[y1:y2, x1:x2])
            if diff.size == 0 or np.count_nonzero(diff > self.settings.threshold) > STILL * diff.size:
                return False
        return True


def explained(region: np.ndarray, track_boxes: Sequence[np.ndarray]) -> bool:
    """True when a moving region is a tracked object swaying in place: small, and inside its (grown) box.

    A walking person's motion covers much of their box; that is not explained, so the detector
    follows them closely (zone entry and exit times depend on it).
    """
    area = max(1.0, float((region[2] - region[0]) * (region[3] - region[1])))
    for box in track_boxes:
        if area > SWAY * float((box[2] - box[0]) * (box[3] - box[1])):
            continue
        grow_x, grow_y = (box[2] - box[0]) * GROW, (box[3] - box[1]) * GROW
        x1, y1 = max(region[0], box[0] - grow_x), max(region[1], box[1] - grow_y)
        x2, y2 = min(region[2], box[2] + grow_x), min(region[3], box[3] + grow_y)
        if max(0.0, x2 - x1) * max(0.0, y2 - y1) >= EXPLAINED * area:
            return True
    return False


class MotionGate:
    """Per camera: should this frame go to the detector?

    Sustained motion (a car driving through, a person walking) is detected every
    ``MOTION_PERIOD_S`` rather than on every sampled frame: the last tracks stand in between, which
    moves a zone entry or exit by at most that period, inside the 1 s events may move, and halves
    the detector's work on busy cameras. Motion with nothing tracked waits a little longer, since
    only a first sighting can be late then. A new object awaiting its second sighting
    (``unconfirmed``) is still detected on the very next frame, so tracks confirm as fast as before.
    """

    def __init__(self, settings: Motion) -> None:
        self.settings = settings
        self.motion = MotionDetector(settings)
        self.last_detect_s: float | None = None
        self.last_refresh_s = 0.0
        self.reference: np.ndarray | None = None  # the motion stage's view at the last detection
        self.cheap_refreshes = 0
        self.verified = False  # this frame's refresh passed on pixels: the tracks stand as if re-detected

    def needs_detection(self, image: np.ndarray, now_s: float, track_boxes: Sequence[np.ndarray],
                        unconfirmed: bool) -> bool:
        """Detect on the first frame, on unconfirmed objects, on unexplained motion at most every motion
        period, and to refresh tracks."""
        self.verified = False
        regions = self.motion.regions(image) if self.settings.enabled else []
        if not self.settings.enabled or self.last_detect_s is None or unconfirmed:
            return True
        since_s = now_s - self.last_detect_s
        if any(not explained(region, track_boxes) for region in regions):
            return since_s >= (MOTION_PERIOD_S if track_boxes else UNTRACKED_MOTION_PERIOD_S) - HALF_FRAME_S
        if not track_boxes or now_s - self.last_refresh_s < self.settings.refresh_s:
            return False
        if self.cheap_refreshes < CHEAP_REFRESHES and self.reference is not None \
                and self.motion.unchanged(self.reference, track_boxes):
            self.cheap_refreshes += 1
            self.last_refresh_s, self.verified = now_s, True
            return False
        return True

    def detected(self, now_s: float) -> None:
        self.last_detect_s = self.last_refresh_s = now_s
        self.reference, self.cheap_refreshes = self.motion.grey, 0
