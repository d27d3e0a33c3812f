"""Zones are polygons in normalised coordinates; an object is inside when its ground point is."""

from __future__ import annotations

import cv2
import numpy as np

from gridwatch.edge.config import Zone


def ground_point(box: np.ndarray) -> tuple[float, float]:
    """Bottom-centre of an (x1, y1, x2, y2) box: where a person or vehicle touches the floor."""
    return float((box[0] + box[2]) / 2), float(box[3])


class ZoneArea:
    """A zone's polygon scaled to one frame size, answering 'is this box in the zone?'."""

    def __init__(self, zone: Zone, frame_width: int, frame_height: int) -> None:
        self.zone = zone
        scale = np.array([frame_width, frame_height], dtype=np.float32)
        self.polygon = (np.asarray(zone.polygon, dtype=np.float32) * scale).reshape(-1, 1, 2)

    def contains(self, box: np.ndarray) -> bool:
        return cv2.pointPolygonTest(self.polygon, ground_point(box), False) >= 0
