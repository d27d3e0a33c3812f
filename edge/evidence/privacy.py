"""Faces (and, where the rule says so, plates) made unrecognisable in every image the node stores, and the
camera's privacy masks blacked out.

Faces are found on the whole frame with YuNet (:mod:`gridwatch.models.faces`), not only inside
person boxes: a poster, a face at a window or a person the object detector missed is a face too.
A person box whose head region holds no detected face (turned away, bowed, too small for YuNet)
still has its head region blurred, so a missed detection never leaves a face sharp.

The blur is irreversible: the padded region is reduced to a few cells of colour (information is
thrown away, not filtered) and then smoothed, so no block edges are left to read. The cell size
scales with the region, so a large face close to the camera is as unrecognisable as a small one.
Every region blurred is recorded in a :class:`~gridwatch.broker.blur.BlurManifest`, the claim the
server checks on upload.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from gridwatch.broker.blur import BlurManifest, BlurRegion, RegionKind
from gridwatch.edge.evidence.plates import plate_region
from gridwatch.models.faces import Face, FaceDetector

HEAD_HEIGHT = 0.25      # of the person box's height
HEAD_MIN_HEIGHT = 0.5   # of its width (people cut off at the waist by the frame)
MARGIN = 0.1            # of the box width, on each side
FACE_PAD = 0.5          # of the face's size, on each side: YuNet's box is brows to mouth; hair, ears, chin go too
CELLS = 5               # a region keeps at most this many cells of colour along its longer side

Box = tuple[int, int, int, int]


def black_out(image: np.ndarray, polygons: Sequence[Sequence[tuple[float, float]]]) -> np.ndarray:
    """``image`` with the camera's privacy masks (normalised polygons) filled black, as a copy; the same
    image when there are none. Black, not blurred: a mask is for what must never be recorded at all."""
    if not polygons:
        return image
    masked = image.copy()
    size = np.array([image.shape[1], image.shape[0]], np.float32)
    cv2.fillPoly(masked, [np.round(np.asarray(p, np.float32) * size).astype(np.int32) for p in polygons], (0, 0, 0))
    return masked


def head_region(box: np.ndarray, frame_size: tuple[int, int]) -> Box:
    """(x1, y1, x2, y2) pixels of the head of a person box (x1, y1, x2, y2), clipped to the frame.

    The fallback for a person whose face was not found: the top quarter of a standing person (never
    less than half the box width, for people cut off by the frame), widened by a margin."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    head = max(HEAD_HEIGHT * height, HEAD_MIN_HEIGHT * width)
    frame_w, frame_h = frame_size
    return (max(0, int(x1 - MARGIN * width)), max(0, int(y1 - MARGIN * width)),
            min(frame_w, int(x2 + MARGIN * width)), min(frame_h, int(y1 + head)))


def padded(face: Face, frame_size: tuple[int, int]) -> Box:
    """The face box grown by ``FACE_PAD`` on each side, clipped to the frame."""
    x1, y1, x2, y2 = face.box
    pad_x, pad_y = FACE_PAD * (x2 - x1), FACE_PAD * (y2 - y1)
    frame_w, frame_h = frame_size
    return (max(0, math.floor(x1 - pad_x)), max(0, math.floor(y1 - pad_y)),
            min(frame_w, math.ceil(x2 + pad_x)), min(frame_h, math.ceil(y2 + pad_y)))


def pixelate(image: np.ndarray, box: Box) -> None:
    """Irreversibly blur ``box`` of ``image`` in place: at most ``CELLS`` cells of colour along the longer
    side (cell size proportional to the region), then a Gaussian two cells wide to hide the cell edges."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    if width < 2 or height < 2:
        return
    cell = max(2, math.ceil(max(width, height) / CELLS))
    small = cv2.resize(image[y1:y2, x1:x2], (max(1, round(width / cell)), max(1, round(height / cell))),
                       interpolation=cv2.INTER_AREA)
    smooth = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    kernel = (2 * cell) | 1  # odd, two cells wide: no trace of the cell grid is left
    image[y1:y2, x1:x2] = cv2.GaussianBlur(smooth, (kernel, kernel), 0)


def _holds_face(head: Box, faces: Sequence[Face]) -> bool:
    """True when a detected face's centre lies in this head region (that face is blurred already)."""
    x1, y1, x2, y2 = head
    return any(x1 <= (f.box[0] + f.box[2]) / 2 <= x2 and y1 <= (f.box[1] + f.box[3]) / 2 <= y2 for f in faces)


class Redactor:
    """Blurs what a rule's policy asks for on a frame and says what it blurred.

    One per camera pipeline, each with its own YuNet (``detector``; loaded on first use when not given)."""

    def __init__(self, detector: FaceDetector | None = None) -> None:
        self._detector = detector

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector()
        return self._detector

    def regions(self, image: np.ndarray, person_boxes: Iterable[np.ndarray], vehicle_boxes: Iterable[np.ndarray],
                faces: bool, plates: bool) -> list[BlurRegion]:
        """The regions to blur: every detected face, the head of every person without one, plates."""
        size = (image.shape[1], image.shape[0])
        found: list[tuple[RegionKind, Box]] = []
        if faces:
            detected = self.detector.detect(image)
            found += [("face", padded(face, size)) for face in detected]
            heads = (head_region(box, size) for box in person_boxes)
            found += [("head", head) for head in heads if not _holds_face(head, detected)]
        if plates:
            found += [("plate", plate_region(box, size)) for box in vehicle_boxes]
        return [BlurRegion(kind=kind, box=box) for kind, box in found if box[2] - box[0] >= 2 and box[3] - box[1] >= 2]

    def redact(self, image: np.ndarray, person_boxes: Iterable[np.ndarray], vehicle_boxes: Iterable[np.ndarray],
               faces: bool, plates: bool) -> tuple[np.ndarray, BlurManifest]:
        """A blurred copy of ``image`` and its manifest (``image`` itself is left as it was)."""
        regions = self.regions(image, person_boxes, vehicle_boxes, faces, plates)
        out = image.copy()
        for region in regions:
            pixelate(out, region.box)
        manifest = BlurManifest(model=self.detector.model.spec.name, model_sha256=self.detector.sha256,
                                faces_blurred=faces, plates_blurred=plates, width=image.shape[1],
                                height=image.shape[0], regions=tuple(regions))
        return out, manifest
