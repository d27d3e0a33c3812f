"""Zones are polygons in normalised coordinates; an object is inside when its ground point is.

Membership has inertia: an object must be seen inside (or outside) for ``inertia`` consecutive
detector updates before it counts as in (or out), so a box that flickers across the edge of a zone
does not start and end stays. Boxes smaller than ``min_area`` (a fraction of the frame) never count.
"""

from __future__ import annotations

import cv2
import numpy as np

from gridwatch.broker.zones import Zone
from gridwatch.edge.perception.track import Track


def ground_point(box: np.ndarray) -> tuple[float, float]:
    """Bottom-centre of an (x1, y1, x2, y2) box: where a person or vehicle touches the floor."""
    return float((box[0] + box[2]) / 2), float(box[3])


class ZoneArea:
    """A zone's polygon scaled to one frame size, answering 'is this box in the zone?'."""

    def __init__(self, zone: Zone, frame_width: int, frame_height: int) -> None:
        self.zone = zone
        scale = np.array([frame_width, frame_height], dtype=np.float32)
        self.polygon = (np.asarray(zone.polygon, dtype=np.float32) * scale).reshape(-1, 1, 2)
        self.min_area_px = zone.min_area * frame_width * frame_height

    def contains(self, box: np.ndarray) -> bool:
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        return area >= self.min_area_px and cv2.pointPolygonTest(self.polygon, ground_point(box), False) >= 0


class ZoneMembership:
    """Which tracks count as inside a zone, with ``inertia`` updates needed to change state."""

    FORGET_AFTER = 100  # updates unseen after which an inside track is forgotten (ids are never reused)

    def __init__(self, inertia: int) -> None:
        self.inertia = inertia
        self.inside: dict[int, int] = {}  # track id -> updates since it was last seen
        self.streak: dict[int, int] = {}  # consecutive updates disagreeing with the current state

    def update(self, area: ZoneArea, tracks: list[Track]) -> list[Track]:
        """Feed one detector update; return the tracks that count as inside now."""
        seen = {t.track_id for t in tracks}
        for track in tracks:
            now_in = area.contains(track.box)
            if now_in == (track.track_id in self.inside):
                self.streak.pop(track.track_id, None)
                continue
            self.streak[track.track_id] = self.streak.get(track.track_id, 0) + 1
            if self.streak[track.track_id] >= self.inertia:
                del self.streak[track.track_id]
                if now_in:
                    self.inside[track.track_id] = 0
                else:
                    del self.inside[track.track_id]
        # A track out of sight keeps its state (the rule's exit grace decides when it has left).
        self.inside = {tid: 0 if tid in seen else unseen + 1 for tid, unseen in self.inside.items()
                       if unseen < self.FORGET_AFTER}
        for gone in set(self.streak) - seen:
            del self.streak[gone]
        return [t for t in tracks if t.track_id in self.inside]
