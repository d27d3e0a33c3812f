"""Face blurring of stored evidence, offline: the head of every detected person is pixelated.

OpenCV 5 no longer ships Haar cascades and a face model would be one more download, so the faces
are found with the detector the node already runs: a person box's head is its top part (a quarter
of a standing person's height, never less than half the box width, for people cut off by the
frame). This blurs heads turned away too, which errs on the side of privacy; a blurred head still
shows that a person was there and what they wore, which is what a guard needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

HEAD_HEIGHT = 0.25      # of the person box's height
HEAD_MIN_HEIGHT = 0.5   # of its width (people cut off at the waist by the frame)
MARGIN = 0.1            # of the box width, on each side


def head_region(box: np.ndarray, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) pixels of the head of a person box (x1, y1, x2, y2), clipped to the frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    head = max(HEAD_HEIGHT * height, HEAD_MIN_HEIGHT * width)
    frame_w, frame_h = frame_size
    return (max(0, int(x1 - MARGIN * width)), max(0, int(y1 - MARGIN * width)),
            min(frame_w, int(x2 + MARGIN * width)), min(frame_h, int(y1 + head)))


def blur_heads(image: np.ndarray, person_boxes: Iterable[np.ndarray]) -> np.ndarray:
    """A copy of ``image`` with each person's head reduced to a few smooth blobs of colour."""
    out = image.copy()
    size = (image.shape[1], image.shape[0])
    for box in person_boxes:
        x1, y1, x2, y2 = head_region(box, size)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        small = cv2.resize(out[y1:y2, x1:x2], (max(1, (x2 - x1) // 10), max(1, (y2 - y1) // 10)),
                           interpolation=cv2.INTER_AREA)
        out[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    return out
