"""Multi-object tracking with ByteTrack from Roboflow's ``trackers`` library.

ByteTrack keeps identities through low-confidence frames by a second association pass, which
matters at edge detect rates of a few frames per second, and its lost-track buffer keeps a
stationary object's id through brief occlusion and detector flicker. Only the classes some rule
cares about are tracked, so a chair and a person never trade ids. With motion gating the tracker is
updated only on detected frames, so the buffer counts detector updates, not seconds of video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from gridwatch.edge.perception.detect import Detections


@dataclass(frozen=True)
class Track:
    track_id: int
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    class_name: str
    confidence: float


ACTIVATION = 0.5


class ObjectTracker:
    def __init__(self, class_names: tuple[str, ...], tracked: set[str], detect_fps: float,
                 lost_after_s: float = 3.0) -> None:
        self.class_names = class_names
        self.tracked = np.zeros(len(class_names), dtype=bool)  # class id -> tracked? (a lookup, not np.isin)
        self.tracked[[class_names.index(n) for n in tracked]] = True
        self.tracker = ByteTrackTracker(
            frame_rate=detect_fps,
            lost_track_buffer=max(1, round(lost_after_s * detect_fps)),
            track_activation_threshold=ACTIVATION,
            high_conf_det_threshold=ACTIVATION,
            minimum_consecutive_frames=2,
            minimum_iou_threshold=0.1,
        )
        self.unconfirmed = False

    def update(self, detections: Detections) -> list[Track]:
        """Associate one frame's detections; ``unconfirmed`` says whether a new object awaits its 2nd sighting."""
        keep = self.tracked[detections.class_ids]
        tracked = self.tracker.update(
            sv.Detections(
                xyxy=detections.boxes[keep].reshape(-1, 4),
                confidence=detections.scores[keep],
                class_id=detections.class_ids[keep],
            )
        )
        tracks = [
            Track(int(tid), box, self.class_names[int(cid)], float(conf))
            for box, conf, cid, tid in zip(
                tracked.xyxy, tracked.confidence, tracked.class_id, tracked.tracker_id, strict=True
            )
            if tid >= 0
        ]
        self.unconfirmed = int((detections.scores[keep] >= ACTIVATION).sum()) > len(tracks)
        return tracks
