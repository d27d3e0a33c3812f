"""Per-camera health: the retained status payload and the ``camera_offline`` incident.

A camera is online while its reader is connected and frames keep arriving (none for ``stall_s``
means stalled: offline). Rates are measured over the last status period. A camera offline for
``offline_event_s`` starts a ``camera_offline`` incident, which ends when frames flow again.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from gridwatch.broker.contract import CameraStatus, EventType, NodeState, Phase, now_utc
from gridwatch.edge.capture.reader import CameraReader
from gridwatch.edge.node.pipeline import CameraPipeline
from gridwatch.edge.node.scheduler import Slot
from gridwatch.edge.perception.detect import OnnxDetector


@dataclass
class _Counts:
    at: float
    read: int
    processed: int
    detected: int


class CameraHealth:
    def __init__(self, reader: CameraReader, pipeline: CameraPipeline, slot: Slot, detector: OnnxDetector) -> None:
        self.reader, self.pipeline, self.slot, self.detector = reader, pipeline, slot, detector
        self.camera = pipeline.camera
        self.state: NodeState | None = None
        self.offline_since: float | None = time.monotonic()
        self.incident_id: str | None = None
        self.previous = _Counts(time.monotonic(), 0, 0, 0)

    def current_state(self, now: float) -> NodeState:
        last = self.reader.last_frame_at
        fresh = last is not None and now - last < self.camera.stall_s
        return NodeState.ONLINE if self.reader.connected.is_set() and fresh else NodeState.OFFLINE

    def check(self, now: float) -> bool:
        """Update the state and the offline incident; True when the state changed."""
        state = self.current_state(now)
        changed = state != self.state
        self.state = state
        if state == NodeState.ONLINE:
            self.offline_since = None
            if self.incident_id is not None:
                self._offline_event(Phase.END, now)
                self.incident_id = None
        else:
            if self.offline_since is None:
                self.offline_since = now
            if self.incident_id is None and now - self.offline_since >= self.camera.offline_event_s:
                self.incident_id = uuid.uuid4().hex
                self._offline_event(Phase.START, now)
        return changed

    def _offline_event(self, phase: Phase, now: float) -> None:
        clock = self.reader.clock_start
        since = self.offline_since if self.offline_since is not None else now
        self.pipeline.camera_event(EventType.CAMERA_OFFLINE, phase, self.incident_id or "", max(0.0, since - clock),
                                   max(0.0, now - clock), attributes={"reason": self.reader.last_error or "no frames"})

    def status(self, site_id: str, node_id: str, now: float) -> CameraStatus:
        counts = _Counts(now, self.reader.frames_read, self.pipeline.frames_in, self.pipeline.frames_detected)
        elapsed = max(1e-6, counts.at - self.previous.at)
        status = CameraStatus(
            site_id=site_id, node_id=node_id, camera_id=self.camera.id, state=self.state or NodeState.OFFLINE,
            at=now_utc(), frames_in=counts.read, frames_detected=counts.detected,
            inference_ms=round(self.detector.last_inference_ms, 2),
            fps_in=round((counts.read - self.previous.read) / elapsed, 2),
            fps_processed=round((counts.processed - self.previous.processed) / elapsed, 2),
            fps_detected=round((counts.detected - self.previous.detected) / elapsed, 2),
            frames_dropped=self.slot.dropped,
            detail=None if self.state == NodeState.ONLINE else (self.reader.last_error or "no frames")[:500],
        )
        self.previous = counts
        return status
