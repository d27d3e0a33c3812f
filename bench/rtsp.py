"""RTSP from a real server: what decoding a camera stream costs against decoding a file, and how long a
live frame takes to become an event (issue 18, acceptance 2).

The camera is GStreamer's RTSP server on loopback (deploy/rtsp_camera/server.py, as the RTSP tests use it),
serving the shared clip re-encoded once per codec and size with the same settings (ultrafast, a key
frame every 2 s), paced at the clip's 10 fps like a live sensor; its own CPU is another process's and
not counted. Both sides read through the edge's ``FrameSource`` (OpenCV's FFmpeg backend, one decode
thread), decoding every frame.

``decode``: frames per CPU second of this process, RTSP (RTP/TCP, depacketising, jitter buffer,
decoding) and the same file decoded from disk, in interleaved rounds; the ratio RTSP / file per round
is what is reported, for H.264 and H.265 at 768x432 and 1920x1080. Wall-clock rates are not compared:
a live stream arrives at 10 fps however fast the decoder is.

``latency``: the real engine (`gridwatch edge run`'s reader, scheduler, detector, tracker, rules,
evidence) on the live H.264 768x432 stream, with a loitering rule that fires every 2 s while someone
is at the table. For every event, the time from the moment the reader had the frame that caused it
(the event's ``observed_at``, on the node's clock) to the moment the event reached the node's sinks:
p50 and p95. The RTSP transport's own delay before the reader (a few frames of jitter buffer) is not
in it: OpenCV does not expose the RTP capture time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import SAMPLES, Stopwatch, Throughput, interleaved, median, spread, table
from gridwatch.broker.contract import Event, now_utc
from gridwatch.deploy.rtsp_camera.camera import Clips, RtspCamera
from gridwatch.edge.capture.source import FrameSource
from gridwatch.edge.config import parse_config
from gridwatch.edge.evidence.snapshots import Snapshot
from gridwatch.edge.node.runner import Engine, evidence_store

CACHE = Path(tempfile.gettempdir()) / "gridwatch-bench-rtsp"
SIZES = ((768, 432), (1920, 1080))
CODECS = ("h264", "h265")
CLIP_S = 12.0
RTSP_FRAMES = 50  # 5 s of the 10 fps stream per round, after the first frame
ROUNDS = 5
LATENCY_S = 60.0
TABLE_ZONE = {"id": "table", "polygon": [[0.40, 0.60], [0.80, 0.60], [0.80, 1.0], [0.40, 1.0]],
              "rules": [{"type": "loitering", "min_dwell_s": 3, "update_every_s": 2, "objects": ["person"]}]}


def decode_file(path: Path) -> Throughput:
    source = FrameSource(str(path))
    try:
        watch, frames = Stopwatch(), sum(1 for _ in source.frames())
        return watch.throughput(frames)
    finally:
        source.close()


def decode_rtsp(url: str, frames: int = RTSP_FRAMES) -> Throughput:
    """``frames`` frames of the live stream, timed from the first one (opening a session is not decoding)."""
    source = FrameSource(url, read_timeout_s=10.0)
    try:
        stream = source.frames()
        next(stream)
        watch, count = Stopwatch(), 0
        for _ in stream:
            count += 1
            if count == frames:
                break
        return watch.throughput(count)
    finally:
        source.close()


def decode(clips: Clips, rounds: int = ROUNDS) -> dict[str, float]:
    steps: dict[str, Callable[[], Throughput]] = {}
    cameras: list[RtspCamera] = []
    try:
        for codec in CODECS:
            for width, height in SIZES:
                clip = clips.encoded(codec, width, height, CLIP_S)
                camera = RtspCamera(clip, codec).start()
                cameras.append(camera)
                name = f"{codec} {width}x{height}"
                steps[f"{name} file"] = lambda clip=clip: decode_file(clip)
                steps[f"{name} rtsp"] = lambda url=camera.url: decode_rtsp(url)
        results = interleaved(rounds, steps)
    finally:
        for camera in cameras:
            camera.stop()
    rows, ratios = [], {}
    for codec in CODECS:
        for width, height in SIZES:
            name = f"{codec} {width}x{height}"
            file, rtsp = results[f"{name} file"], results[f"{name} rtsp"]
            per_round = [r.per_cpu_s / f.per_cpu_s for r, f in zip(rtsp, file, strict=True)]
            ratios[name] = median(per_round)
            rows.append([name, spread([f.per_cpu_s for f in file]), spread([r.per_cpu_s for r in rtsp]),
                         spread(per_round)])
    print(f"\n## RTSP decode: frames per CPU second, RTSP (GStreamer server on loopback, RTP/TCP, paced at 10 fps) "
          f"vs the same file, {rounds} interleaved rounds; median (min-max)\n")
    print(table(["stream", "file frames/CPU-s", "RTSP frames/CPU-s", "RTSP / file"], rows))
    print("\nSUMMARY rtsp decode: RTSP / file frames per CPU second = "
          + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items()))
    return ratios


class LatencySink:
    """Seconds from each event's frame (``observed_at``) to its arrival here, by event type."""

    def __init__(self) -> None:
        self.latencies: list[tuple[str, float]] = []

    def emit(self, event: Event, snapshot: Snapshot | None) -> None:
        self.latencies.append((event.type.value, (now_utc() - event.observed_at).total_seconds()))

    def close(self) -> None:
        pass


def latency(clips: Clips, seconds: float = LATENCY_S) -> dict[str, float]:
    camera = RtspCamera(clips.encoded("h264", 768, 432, seconds + 10), "h264").start()
    sink = LatencySink()
    try:
        with tempfile.TemporaryDirectory() as evidence_dir:
            config = parse_config({"site_id": "bench", "node_id": "bench-node", "evidence": {"dir": evidence_dir},
                                   "cameras": [{"id": "cam-live", "source": camera.url, "detect_fps": 5,
                                                "zones": [TABLE_ZONE]}]})
            engine = Engine(config, [sink], evidence_store(config), realtime=True, block=False).start()
            time.sleep(seconds)
            engine.stop()
            for reader in engine.readers:
                reader.thread.join()
    finally:
        camera.stop()
    values = np.array([seconds for _, seconds in sink.latencies]) * 1000
    if not len(values):
        raise RuntimeError("the live stream produced no event: nothing to measure")
    p50, p95 = float(np.percentile(values, 50)), float(np.percentile(values, 95))
    print(f"\n## Capture-to-event latency on a live RTSP stream (H.264 768x432, 10 fps, detect 5 fps, "
          f"{seconds:.0f} s)\n")
    print(table(["events", "p50 ms", "p95 ms", "max ms"], [[len(values), p50, p95, float(values.max())]]))
    print(f"\nSUMMARY rtsp latency: frame to event p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(values)} events")
    return {"p50_ms": p50, "p95_ms": p95, "events": len(values)}


def main() -> None:
    clips = Clips(CACHE, SAMPLES)
    decode(clips)
    latency(clips)


if __name__ == "__main__":
    main()
