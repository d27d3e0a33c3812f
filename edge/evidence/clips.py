"""Event clips: a short H.264 MP4 around an incident's start and end, cut from a ring buffer of recent frames.

The detection path only pays for one JPEG encode per kept frame (the camera's privacy masks are blacked
out first, so nothing they hide is ever held); the ring is bounded by seconds and by bytes, so a busy
1080p scene cannot grow the node's memory. Face blurring (the same :class:`Redactor` and policy as
snapshots) and the H.264 encode run on a worker thread with its own YuNet, through Debian's ``ffmpeg``
(libx264, ``yuv420p`` and ``+faststart``: what every browser plays, from the first byte). A clip is named
by the event it belongs to (``<event_id>.mp4``): the event is published before the seconds after it
exist, so the clip cannot be named in it; the server files it under that event.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import shutil
import subprocess
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gridwatch.edge.config import Clips
from gridwatch.edge.evidence.privacy import Redactor, black_out

log = logging.getLogger(__name__)

Boxes = tuple[tuple[float, float, float, float], ...]
FFMPEG = "ffmpeg"
ENCODE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class BufferedFrame:
    """One kept frame: JPEG bytes (masks already blacked out) and the boxes the head and plate blur need."""

    time_s: float
    jpeg: bytes
    persons: Boxes
    vehicles: Boxes


class FrameRing:
    """The last ``seconds`` of frames at ``fps`` at most, never more than ``max_bytes`` of JPEG."""

    def __init__(self, seconds: float, fps: float, max_bytes: int) -> None:
        self.seconds, self.interval, self.max_bytes = seconds, 1.0 / fps, max_bytes
        self.frames: deque[BufferedFrame] = deque()
        self.bytes = 0
        self.peak_bytes = 0  # the most the ring ever held: what a site sizes memory by
        self._next_s: float | None = None  # when the next frame is due, on a fixed grid (no drift at odd rates)

    def due(self, time_s: float) -> bool:
        """True when a frame at ``time_s`` is to be kept (clip fps below the pipeline's: the frame nearest
        each tick of a ``fps`` grid, so a 12 fps source kept at 5 fps keeps 5 frames a second, not 4)."""
        return self._next_s is None or time_s >= self._next_s - 1e-6

    def push(self, frame: BufferedFrame) -> None:
        ticks = self._next_s + self.interval if self._next_s is not None else frame.time_s + self.interval
        self._next_s = ticks if ticks > frame.time_s else frame.time_s + self.interval  # after a gap: a new grid
        self.frames.append(frame)
        self.bytes += len(frame.jpeg)
        # ``seconds`` of footage is seconds * fps frames: the first and the last are one interval less apart
        while self.frames and (self.bytes > self.max_bytes
                               or frame.time_s - self.frames[0].time_s > self.seconds - self.interval / 2):
            self.bytes -= len(self.frames.popleft().jpeg)
        self.peak_bytes = max(self.peak_bytes, self.bytes)

    def until(self, time_s: float) -> list[BufferedFrame]:
        """The frames held up to ``time_s`` (inclusive)."""
        return [f for f in self.frames if f.time_s <= time_s]


@dataclass
class ClipRequest:
    """A clip being gathered: the ring's frames up to the event, then ``after_frames`` live ones (or until
    ``until_s`` has passed, when the camera delivers fewer)."""

    event_id: str
    at_s: float
    until_s: float
    after_frames: int
    blur_faces: bool
    blur_plates: bool
    frames: list[BufferedFrame] = field(default_factory=list)


@dataclass(frozen=True)
class Clip:
    """An encoded clip on the node's disk."""

    event_id: str
    path: Path
    sha256: str
    frames: int
    duration_s: float
    faces_blurred: bool = True


def require_ffmpeg() -> None:
    if shutil.which(FFMPEG) is None:
        raise RuntimeError("event clips need ffmpeg on the node (Debian: apt install ffmpeg)")


def encode_mp4(images: Sequence[np.ndarray], fps: float, path: Path) -> None:
    """Encode BGR frames as H.264 MP4 at ``path`` (written to a temporary name, then moved into place)."""
    require_ffmpeg()
    tmp = path.with_name(f".{uuid.uuid4().hex}.mp4")
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "image2pipe", "-framerate", f"{fps:g}",
               "-c:v", "mjpeg", "-i", "-", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264",
               "-preset", "veryfast", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(tmp)]
    # ffmpeg at log level "error" writes a line or two to stderr, never enough to fill the pipe meanwhile
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        for image in images:
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise RuntimeError("JPEG encoding of a clip frame failed")
            process.stdin.write(encoded.tobytes())
        _, stderr = process.communicate(timeout=ENCODE_TIMEOUT_S)
        if process.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({process.returncode}): {stderr.decode('utf-8', 'replace')[-300:]}")
        tmp.replace(path)
    finally:
        if process.poll() is None:
            process.kill()
        tmp.unlink(missing_ok=True)


class ClipRecorder:
    """One camera's ring buffer, its clips being gathered, and the worker thread that blurs and encodes them.

    ``on_ready`` is called on the worker thread with each finished clip (the upload, in a node)."""

    def __init__(self, config: Clips, detect_fps: float, directory: Path, privacy_masks: Sequence,
                 on_ready: Callable[[Clip], None] | None = None, redactor: Redactor | None = None) -> None:
        require_ffmpeg()  # a node configured for clips without ffmpeg fails at start, not at its first incident
        self.config, self.directory, self.privacy_masks = config, directory, privacy_masks
        self.fps = min(config.fps or detect_fps, detect_fps)
        self.ring = FrameRing(config.before_s, self.fps, int(config.max_buffer_mb * 1024 * 1024))
        self.pending: list[ClipRequest] = []
        self.on_ready = on_ready
        self.clips: list[Clip] = []
        self.failures = 0
        self._redactor = redactor  # the worker's own (YuNet is not shared between threads); made there if None
        self._queue: queue.Queue[ClipRequest | None] = queue.Queue()
        directory.mkdir(parents=True, exist_ok=True)
        self._worker = threading.Thread(target=self._work, name="clip-encoder", daemon=True)
        self._worker.start()

    def observe(self, time_s: float, image: np.ndarray, persons: Boxes, vehicles: Boxes) -> None:
        """Keep this frame if it is due; hand the clips whose after-seconds are complete to the worker."""
        if self.ring.due(time_s):
            ok, encoded = cv2.imencode(".jpg", black_out(image, self.privacy_masks),
                                       [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
            if ok:
                frame = BufferedFrame(time_s, encoded.tobytes(), persons, vehicles)
                self.ring.push(frame)
                for request in self.pending:
                    if time_s > request.at_s:
                        request.frames.append(frame)
                        request.after_frames -= 1
        for request in [r for r in self.pending if r.after_frames <= 0 or time_s > r.until_s + self.ring.interval]:
            self.pending.remove(request)
            self._queue.put(request)

    def request(self, event_id: str, at_s: float, blur_faces: bool, blur_plates: bool) -> None:
        """Start gathering the clip of an event at ``at_s``: ``before_s`` from the ring, ``after_s`` still to come."""
        before = self.ring.until(at_s)[-round(self.config.before_s * self.fps):] if self.config.before_s else []
        request = ClipRequest(event_id, at_s, at_s + self.config.after_s, round(self.config.after_s * self.fps),
                              blur_faces, blur_plates, before)
        self.pending.append(request)

    def close(self, timeout: float = ENCODE_TIMEOUT_S) -> None:
        """The source ended: encode what the pending clips have (their after-part is cut short), and wait."""
        for request in self.pending:
            self._queue.put(request)
        self.pending = []
        self._queue.put(None)
        self._worker.join(timeout)

    def _work(self) -> None:
        while (request := self._queue.get()) is not None:
            try:
                clip = self._encode(request)
            except Exception:  # one clip failing must not end the camera's others
                self.failures += 1
                log.exception("clip of event %s not encoded", request.event_id)
                continue
            if clip is None:
                continue
            self.clips.append(clip)
            if self.on_ready is not None:
                try:
                    self.on_ready(clip)
                except Exception:
                    log.exception("clip of event %s not delivered", request.event_id)

    def _encode(self, request: ClipRequest) -> Clip | None:
        if not request.frames:
            return None
        if self._redactor is None:
            self._redactor = Redactor()
        redacted = [self._redacted(frame, request) for frame in request.frames]
        # On the clip's own clock: each tick shows the latest frame by then, so a pipeline that fell behind
        # (fewer frames than fps) gives a clip of the real length, never a fast-forward.
        times = [frame.time_s for frame in request.frames]
        ticks = round((times[-1] - times[0]) * self.fps) + 1
        images, latest = [], 0
        for tick in range(ticks):
            due = times[0] + (tick + 0.5) / self.fps
            while latest + 1 < len(times) and times[latest + 1] <= due:
                latest += 1
            images.append(redacted[latest])
        path = self.directory / f"{request.event_id}.mp4"
        encode_mp4(images, self.fps, path)
        for old in sorted(self.directory.glob("*.mp4"), key=lambda p: p.stat().st_mtime)[:-self.config.max_files]:
            old.unlink(missing_ok=True)  # an edge box's disk must never fill up with evidence
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return Clip(request.event_id, path, digest, len(images), len(images) / self.fps, request.blur_faces)

    def _redacted(self, frame: BufferedFrame, request: ClipRequest) -> np.ndarray:
        """The kept frame decoded, with faces (and plates) blurred as the event's rule asks."""
        assert self._redactor is not None
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if request.blur_faces or request.blur_plates:
            image, _ = self._redactor.redact(image, [np.array(b) for b in frame.persons],
                                             [np.array(b) for b in frame.vehicles],
                                             request.blur_faces, request.blur_plates)
        return image
