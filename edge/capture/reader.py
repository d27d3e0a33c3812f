"""A reader thread per camera: open, decode, sample to ``detect_fps``, hand the newest frame on.

The reader owns the camera's connection. A source that cannot be opened, ends (a stream), or
gives no frame for ``stall_s`` is closed and reopened with exponential backoff; the reader keeps
``connected`` and ``last_frame_at`` up to date so the node can report the camera offline and
online without restarting anything. Live streams are stamped on the node's clock (seconds since
the node started), so a reconnect never moves a camera's time backwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gridwatch.edge.capture.source import Frame, FrameSource, Sampler, SourceError, is_stream
from gridwatch.edge.config import Camera

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 8.0


class CameraReader:
    def __init__(self, camera: Camera, offer: Callable[[Frame], None], on_end: Callable[[], None],
                 clock_start: float, realtime: bool = True, reconnect: bool = True) -> None:
        self.camera, self.offer, self.on_end = camera, offer, on_end
        self.clock_start, self.realtime, self.reconnect = clock_start, realtime, reconnect
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self._frames_done = 0
        self.connections = 0
        self._source: FrameSource | None = None
        self.last_frame_at: float | None = None
        self.last_error: str | None = None
        self.sampler = Sampler(camera.detect_fps)
        self.thread = threading.Thread(target=self._run, name=f"reader-{camera.id}", daemon=True)

    @property
    def frames_read(self) -> int:
        """Frames decoded from the source so far, over every connection."""
        source = self._source
        return self._frames_done + (source.frames_read if source else 0)

    @property
    def reconnects(self) -> int:
        """Connections made after the first one: each is a stream that was lost and came back."""
        return max(0, self.connections - 1)

    def start(self) -> CameraReader:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        try:
            while not self.stopping.is_set():
                try:
                    source = FrameSource(self.camera.source, loop=self.camera.loop, read_timeout_s=self.camera.stall_s,
                                         rtsp_transport=self.camera.rtsp_transport)
                except SourceError as exc:
                    self._lost(str(exc))
                else:
                    backoff = BACKOFF_START_S
                    ended = self._read(source)
                    if ended and not is_stream(self.camera.source):
                        return  # a file that ran out (without loop): the camera is done
                if not self.reconnect:
                    return
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            self.connected.clear()
            self.on_end()

    def _read(self, source: FrameSource) -> bool:
        """Pass frames on until the source ends or fails; True when it ended normally."""
        live = is_stream(self.camera.source)
        self._source = source
        opened = time.monotonic()
        offset = opened - self.clock_start if live else 0.0
        try:
            for frame in source.frames(self._wanted(live, offset)):
                if self.stopping.is_set():
                    return False
                if not self.connected.is_set():
                    self.connected.set()
                    self.connections += 1
                    self.last_error = None
                    log.info("camera %s: connected to %s", self.camera.id, source.label)
                if self.realtime and not live:
                    delay = opened + frame.source_time_s - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                stamped = Frame(frame.image, frame.source_time_s + offset, frame.index)
                self.offer(stamped)
            self._lost(self._end_reason() if live else None)
            return True
        except SourceError as exc:
            self._lost(str(exc))
            return False
        finally:
            self._frames_done += source.frames_read
            self._source = None
            source.close()

    def _wanted(self, live: bool, offset: float) -> Callable[[float], bool]:
        def wanted(t: float) -> bool:
            self.last_frame_at = time.monotonic()
            return self.sampler(t + offset)
        return wanted

    def _end_reason(self) -> str:
        """A stream that stops sending while its connection stays open (a hung encoder) ends on the read
        timeout; say so, since the installer's fix differs from a camera that closed the stream."""
        silent_s = time.monotonic() - self.last_frame_at if self.last_frame_at is not None else 0.0
        if silent_s >= self.camera.stall_s * 0.9:
            return f"stalled: no frame for {silent_s:.1f} s"
        return "the stream ended"

    def _lost(self, reason: str | None) -> None:
        self.connected.clear()
        if reason:
            self.last_error = reason
            log.warning("camera %s: %s; reconnecting", self.camera.id, reason)
