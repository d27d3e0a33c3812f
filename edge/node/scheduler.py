"""One scheduler for every camera of a node, sharing one detector session.

Each camera has a one-frame slot. Its reader thread puts the newest sampled frame there; if the
slot still holds an older frame nobody took, that older frame is stale and is dropped (and
counted) rather than let the camera fall behind real time. Workers always take the frame that has
waited longest, so a slow or busy camera can never starve the others, and a camera is never
worked on by two workers at once (its tracker is sequential). With ``block=True`` (replays and
throughput benchmarks) readers wait for room instead, so no frame is ever dropped, and may run up
to ``BLOCK_DEPTH`` frames ahead: while one frame of a camera is on the detector its reader decodes
the next ones, so the frames the motion gate skips are ready the moment the detection ends rather
than decoded one by one after it (a gated 4-camera run measured ~6 % faster than with one slot).

A worker gates each frame it takes, runs the detector once for all frames that need it (one
batch when the model has a dynamic batch axis) and finishes each camera's chain.

In blocking mode a reader waiting for room waits on its own slot's condition and is woken only
when a frame of its camera is taken; workers (a few) wait on ``cond``. With one condition for
everything, every frame woke every reader thread (dozens) to find nothing to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gridwatch.edge.capture.source import Frame
from gridwatch.edge.node.pipeline import CameraPipeline
from gridwatch.edge.perception.detect import OnnxDetector

log = logging.getLogger(__name__)

MAX_BATCH = 8  # frames per run when the model takes a dynamic batch
BLOCK_DEPTH = 8  # frames a camera's reader may queue ahead in blocking mode (~1 MB each at 768x432)


@dataclass
class Slot:
    waiting: deque[tuple[float, Frame]] = field(default_factory=deque)  # (arrived, frame), oldest first
    busy: bool = False
    closed: bool = False
    dropped: int = 0

    @property
    def frame(self) -> Frame | None:
        """The oldest frame waiting (live, there is never more than one)."""
        return self.waiting[0][1] if self.waiting else None


class Scheduler:
    def __init__(self, detector: OnnxDetector, pipelines: list[CameraPipeline], workers: int, block: bool = False,
                 on_error: Callable[[CameraPipeline, Exception], None] | None = None) -> None:
        self.detector, self.pipelines, self.block = detector, pipelines, block
        self.slots = [Slot() for _ in pipelines]
        self.depth = BLOCK_DEPTH if block else 1
        self.batch = MAX_BATCH if detector.dynamic_batch else 1
        self.cond = threading.Condition()  # workers (and a config reload holding a slot) wait here
        self.room = [threading.Condition(self.cond) for _ in pipelines]  # a camera's reader waits here
        self.stopping = False
        self.on_error = on_error
        self.threads = [threading.Thread(target=self._work, name=f"detect-{n}", daemon=True) for n in range(workers)]

    def start(self) -> Scheduler:
        for thread in self.threads:
            thread.start()
        return self

    def offer(self, index: int, frame: Frame) -> None:
        """A reader's newest sampled frame for camera ``index``; replaces (and counts) a stale one."""
        with self.cond:
            slot = self.slots[index]
            while self.block and len(slot.waiting) >= self.depth and not self.stopping:
                self.room[index].wait(0.5)
            if len(slot.waiting) >= self.depth:
                slot.waiting.popleft()
                slot.dropped += 1
            slot.waiting.append((time.monotonic(), frame))
            self.cond.notify_all()

    def close(self, index: int) -> None:
        """Camera ``index`` will offer no more frames (its file ended)."""
        with self.cond:
            self.slots[index].closed = True
            self.cond.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
            for room in self.room:
                room.notify_all()
        for thread in self.threads:
            thread.join(timeout)

    def join(self) -> None:
        """Wait until every camera is closed and every offered frame is processed."""
        for thread in self.threads:
            thread.join()

    def _take(self) -> list[tuple[int, Frame]] | None:
        with self.cond:
            while not self.stopping:
                ready = sorted((s.waiting[0][0], i) for i, s in enumerate(self.slots) if s.waiting and not s.busy)
                if ready:
                    taken = []
                    for _, index in ready[: self.batch]:
                        slot = self.slots[index]
                        taken.append((index, slot.waiting.popleft()[1]))
                        slot.busy = True
                        self.room[index].notify()
                    self.cond.notify_all()
                    return taken
                if all(s.closed and not s.waiting and not s.busy for s in self.slots):
                    return None
                self.cond.wait(0.5)
            return None

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            try:
                wanted = [(i, f) for i, f in taken if self.pipelines[i].wants_detection(f)]
                canvases = [self.pipelines[i].canvas(f) for i, f in wanted]
                found = dict(zip([i for i, _ in wanted], self.detector.detect_many([f.image for _, f in wanted],
                                                                                   canvases), strict=True))
                for index, frame in taken:
                    self._update(index, frame, found)
            finally:
                with self.cond:
                    for index, _ in taken:
                        self.slots[index].busy = False
                    self.cond.notify_all()

    def _update(self, index: int, frame: Frame, found: dict) -> None:
        pipeline = self.pipelines[index]
        try:
            pipeline.update(frame, found.get(index))
        except Exception as exc:  # one camera's failure must not stop the others
            log.exception("camera %s: frame at %.2f s failed", pipeline.camera.id, frame.source_time_s)
            if self.on_error:
                self.on_error(pipeline, exc)
