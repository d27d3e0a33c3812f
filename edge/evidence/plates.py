"""Where a vehicle's licence plate is, given its box: a measured band of the box, not a plate detector.

No permissive plate detector is shipped, and a classical localiser (edges, character blobs) misses
plates that are dirty, small or seen at an angle, which is exactly when it matters. A band of the
vehicle box that contains the plate in every view this camera class sees is cheaper and never
misses: on ``car-detection.mp4`` (an overhead lane, cars seen from behind and from the front) the
plates measured by hand lie in the lower part of the box, horizontally centred, and the band below
covers all of them (``python -m bench privacy`` prints the coverage). It blurs a strip of bumper
too; that is the price of never reading a plate.
"""

from __future__ import annotations

import numpy as np

PLATE_BAND_X = (0.15, 0.85)  # of the vehicle box's width, from its left edge
PLATE_BAND_Y = (0.4, 1.0)    # of its height, from its top edge (a car cut off by the frame edge has its plate higher)
VEHICLE_CLASSES = ("car", "truck", "bus", "motorcycle")


def plate_region(box: np.ndarray, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) pixels of the band of vehicle box ``box`` that holds its plate, clipped to the frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    frame_w, frame_h = frame_size
    return (max(0, int(x1 + PLATE_BAND_X[0] * width)), max(0, int(y1 + PLATE_BAND_Y[0] * height)),
            min(frame_w, round(x1 + PLATE_BAND_X[1] * width)), min(frame_h, round(y1 + PLATE_BAND_Y[1] * height)))
