"""The plates of fire-lane incidents: frames of the vehicle at the start and before the end, read off-thread.

When a blocking incident starts, the next five frames the vehicle is seen in (a second apart, so
noise and light differ) are cropped to its box and handed to the reading worker; the voted plate
comes back a few frames later and goes out as an ``update`` of the incident. While it stays, the
latest crops are kept, and when it ends they are read too: the end event waits for that reading
(on the wall clock, at most ``END_WAIT_S``; the camera never does) and carries the plate, so the
ticket has it even when the start's reading failed. Crops are copies of the vehicle box, not frames.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from gridwatch.broker.contract import Phase
from gridwatch.edge.perception.track import Track
from gridwatch.edge.reading.plates import MAX_VOTE_FRAMES
from gridwatch.edge.reading.worker import PlateJob, PlateResult, ReadingWorker, box_crop
from gridwatch.edge.rules.incident import RuleEvent

FRAMES = MAX_VOTE_FRAMES  # crops handed to the vote at the start and again at the end (3 read, more if undecided)
SPACING_S = 1.0        # source seconds between two crops of one vehicle
END_WAIT_S = 20.0      # wall seconds an end event waits for its reading at most
CROP_MARGIN = 0.1      # of the vehicle box, around it


@dataclass
class _Watch:
    start: RuleEvent
    crops: deque[tuple[np.ndarray, np.ndarray]] = field(default_factory=lambda: deque(maxlen=FRAMES))
    next_crop_s: float = 0.0
    start_submitted: bool = False
    end: RuleEvent | None = None
    end_deadline: float = 0.0


class PlateWatch:
    def __init__(self, worker: ReadingWorker, frames: int = FRAMES, spacing_s: float = SPACING_S,
                 end_wait_s: float = END_WAIT_S) -> None:
        self.worker, self.frames, self.spacing_s, self.end_wait_s = worker, frames, spacing_s, end_wait_s
        self.watches: dict[str, _Watch] = {}

    def started(self, event: RuleEvent) -> None:
        self.watches[event.incident_id] = _Watch(event, deque(maxlen=self.frames), event.observed_s)

    def observe(self, now_s: float, image: np.ndarray, vehicles: dict[str, Track]) -> None:
        """Crop the open incidents' vehicles seen in this frame, when their next crop is due."""
        for incident_id, track in vehicles.items():
            watch = self.watches.get(incident_id)
            if watch is None or watch.end is not None or now_s < watch.next_crop_s:
                continue
            watch.crops.append(box_crop(image, track.box, CROP_MARGIN))
            watch.next_crop_s = now_s + self.spacing_s
            if not watch.start_submitted and len(watch.crops) == self.frames:
                watch.start_submitted = True
                self.worker.submit(PlateJob(f"{incident_id}:start", tuple(watch.crops)))

    def ending(self, event: RuleEvent) -> bool:
        """The incident ended: read its latest crops; True when the end event must wait for them."""
        watch = self.watches.get(event.incident_id)
        if watch is None or not watch.crops:
            self.watches.pop(event.incident_id, None)
            return False
        if not self.worker.submit(PlateJob(f"{event.incident_id}:end", tuple(watch.crops))):
            self.watches.pop(event.incident_id)
            return False
        watch.end, watch.end_deadline = event, time.monotonic() + self.end_wait_s
        return True

    def ready(self, now_s: float) -> list[tuple[RuleEvent, PlateResult | None]]:
        """Events to emit now: an update per finished start reading, each end whose reading is done (or late)."""
        out: list[tuple[RuleEvent, PlateResult | None]] = []
        for result in self.worker.finished():
            assert isinstance(result, PlateResult)
            incident_id, phase = result.key.split(":")
            watch = self.watches.get(incident_id)
            if watch is None:
                continue
            if phase == "start" and watch.end is None:
                started = watch.start
                attributes = {**started.attributes, "stationary_s": round(now_s - started.started_s, 2)}
                out.append((replace(started, phase=Phase.UPDATE, observed_s=now_s, attributes=attributes), result))
            elif phase == "end" and watch.end is not None:
                out.append((watch.end, result))
                del self.watches[incident_id]
        for incident_id, watch in list(self.watches.items()):
            if watch.end is not None and time.monotonic() >= watch.end_deadline:
                out.append((watch.end, None))
                del self.watches[incident_id]
        return out

    def drain(self, timeout_s: float) -> None:
        """Let the worker finish what it has (the source ended); late ends then go out without a plate."""
        self.worker.wait_idle(timeout_s)
        for watch in self.watches.values():
            watch.end_deadline = 0.0

