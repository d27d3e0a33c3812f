"""Frame sources: files, RTSP/HTTP streams and USB cameras through OpenCV's FFmpeg backend.

Every frame carries ``source_time_s``: for a file, the clip's own clock (frame index / fps), so a
replay gives the same times however fast the machine is; for a live stream, seconds since it was
opened. ``Sampler`` thins a stream to a camera's ``detect_fps`` on that clock.

Each capture decodes on one thread (many cameras share few cores; FFmpeg's default of a thread
per core per stream only adds contention), and a stream gives up a read after ``read_timeout_s``
so a stalled camera is noticed and reopened instead of blocking its reader forever.

An ``rtsp://`` source is read over the camera's configured RTP transport (TCP or UDP). OpenCV takes
FFmpeg options only from the ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` environment variable, read while a
capture opens, so opening holds a lock and sets it for that one capture. A source's password never
leaves this module: messages name the source by ``label`` (the URL with the password masked).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gridwatch.broker.mqtt_url import redact_url

_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_open_lock = threading.Lock()


class SourceError(RuntimeError):
    """A source that cannot be opened or yields no frames."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    source_time_s: float
    index: int


def is_stream(source: str) -> bool:
    return "://" in source or source.isdigit()


def is_rtsp(source: str) -> bool:
    return source.lower().startswith(("rtsp://", "rtsps://"))


class FrameSource:
    """Decode frames in order; ``decode`` is False for frames the sampler will skip (cheap grab)."""

    def __init__(self, source: str, loop: bool = False, read_timeout_s: float = 5.0,
                 rtsp_transport: str = "tcp") -> None:
        self.source = source
        self.label = redact_url(source)
        self.loop = loop and not is_stream(source)
        self.read_timeout_s = read_timeout_s
        self.rtsp_transport = rtsp_transport
        if not is_stream(source) and not Path(source).is_file():
            raise SourceError(f"source {self.label!r}: no such file")
        self._capture = self._open()
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 and fps < 240 else 25.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_stream(source) else 0
        self.frames_read = 0

    def _open(self) -> cv2.VideoCapture:
        if self.source.isdigit():
            capture = cv2.VideoCapture(int(self.source))
        else:
            timeout_ms = round(self.read_timeout_s * 1000)
            with _open_lock:
                saved = os.environ.get(_FFMPEG_OPTIONS)
                if is_rtsp(self.source):
                    os.environ[_FFMPEG_OPTIONS] = f"rtsp_transport;{self.rtsp_transport}"
                try:
                    capture = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, [
                        cv2.CAP_PROP_N_THREADS, 1,
                        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms,
                    ])
                finally:
                    _restore_env(_FFMPEG_OPTIONS, saved)
        if not capture.isOpened():
            raise SourceError(f"source {self.label!r}: OpenCV cannot open it (not a video, or unreachable)")
        return capture

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.frame_count else 0.0

    def close(self) -> None:
        self._capture.release()

    def frames(self, wanted: Callable[[float], bool] = lambda t: True) -> Iterator[Frame]:
        """Yield the frames for which ``wanted(source_time_s)`` is true, decoding only those."""
        index, offset, opened = 0, 0.0, time.monotonic()
        yielded_any = False
        while True:
            live = is_stream(self.source)
            t = (time.monotonic() - opened) if live else offset + index / self.fps
            if not self._capture.grab():
                if self.loop and yielded_any:
                    self._capture.release()
                    self._capture = self._open()
                    offset, index = offset + index / self.fps, 0
                    continue
                break
            self.frames_read += 1
            if wanted(t):
                ok, image = self._capture.retrieve()
                if ok:
                    yielded_any = True
                    yield Frame(image, t, index)
            index += 1
        if not yielded_any:
            raise SourceError(f"source {self.label!r}: no frame could be decoded")


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class Sampler:
    """Accept one frame per 1/fps on the source clock, without drift from rounding."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.next_due = 0.0

    def __call__(self, t: float) -> bool:
        if t + 1e-6 < self.next_due:
            return False
        self.next_due = max(self.next_due + self.period, t + self.period / 2)
        return True
