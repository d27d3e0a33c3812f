"""Benchmark 1, detector only: ms per frame and detections per second, the box's hardware limit.

Runs letterbox + ONNX inference + decode/NMS on the frames the cameras would sample from the
shared clips (decoded beforehand, so no video decoding is counted), at 1 and 2 threads in total:
one worker with 1 or 2 intra-op threads, and two workers with one thread each on one session.
The settings take turns in short timed rounds and each figure is the median over the rounds, so
a burst of other work on the machine cannot favour one setting. The best of these is the limit
the pipeline benchmark compares against (``bench.pipeline.overhead``, in the same rounds).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from bench.common import (
    CLIPS,
    Stopwatch,
    Throughput,
    bench_detector,
    interleaved,
    median,
    sampled_frames,
    spread,
    table,
)
from gridwatch.edge.config import EdgeConfig, parse_config
from gridwatch.edge.node.runner import GIL_SWITCH_INTERVAL_S, build_detector
from gridwatch.edge.perception.detect import OnnxDetector

# (label, workers, intra-op threads per worker): every way to use the 2 cores of the reference box
SETTINGS = (("1 thread", 1, 1), ("2 threads, 1 worker", 1, 2), ("2 threads, 2 workers", 2, 1))
ROUNDS = 5
ROUND_S = 2.0


@dataclass(frozen=True)
class DetectorRun:
    label: str
    workers: int
    threads: int
    rounds: list[Throughput]  # one per round

    @property
    def ms_per_frame(self) -> list[float]:
        """Wall time per frame as seen by one worker, per round."""
        return [r.wall_s * 1000 * self.workers / max(1, r.frames) for r in self.rounds]

    @property
    def frames_per_s(self) -> list[float]:
        """Detections/s (Frigate's 1000 / inference-ms), per round."""
        return [r.per_s for r in self.rounds]


def detector_for(threads: int) -> OnnxDetector:
    config: EdgeConfig = parse_config({"site_id": "bench", "node_id": "bench",
                                       "detector": bench_detector(threads=threads),
                                       "cameras": [{"id": "c", "source": "0"}]})
    return build_detector(config)


def measure(detector: OnnxDetector, frames: list[np.ndarray], workers: int, seconds: float) -> Throughput:
    """Cycle ``frames`` through the detector on ``workers`` threads for ``seconds``.

    Each worker takes its own share of the frames (as the scheduler gives each worker other cameras)."""
    detector.detect(frames[0])  # warm the session's buffers for this thread count
    counts = [0] * workers
    deadline = time.perf_counter() + seconds

    def run(worker: int) -> None:
        part = frames[worker::workers] or frames
        while time.perf_counter() < deadline:
            detector.detect(part[counts[worker] % len(part)])
            counts[worker] += 1

    watch = Stopwatch()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return watch.throughput(sum(counts))


def detector_steps(frames: list[np.ndarray], seconds: float = ROUND_S) -> dict[str, Callable[[], Throughput]]:
    """One timed step per setting, for ``bench.common.interleaved``."""
    cv2.setNumThreads(1)  # as the engine does: OpenCV's own pool would compete with the workers for the cores
    sessions = {threads: detector_for(threads) for threads in sorted({t for _, _, t in SETTINGS})}
    return {label: functools.partial(measure, sessions[threads], frames, workers, seconds)
            for label, workers, threads in SETTINGS}


def run_detector_bench(frames: list[np.ndarray], rounds: int = ROUNDS) -> list[DetectorRun]:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as in the engine, so figures compare with the pipeline's
    results = interleaved(rounds, detector_steps(frames))
    return [DetectorRun(label, workers, threads, results[label]) for label, workers, threads in SETTINGS]


def limit(runs: list[DetectorRun]) -> DetectorRun:
    return max(runs, key=lambda r: median(r.frames_per_s))


def main() -> list[DetectorRun]:
    frames = [f for clip in sorted(CLIPS) for f in sampled_frames(clip)]
    runs = run_detector_bench(frames)
    height, width = detector_for(1).canvas_for(frames[0].shape[:2])
    print(f"\n## 1. Detector only (yolox_nano {height}x{width}, {len(frames)} sampled frames of the shared clips, "
          f"{ROUNDS} interleaved rounds of {ROUND_S:g} s; median (min-max))\n")
    print(table(["setting", "workers", "threads/worker", "ms/frame", "detections/s", "detections/CPU-s"],
                [[r.label, r.workers, r.threads, spread(r.ms_per_frame), spread(r.frames_per_s),
                  spread([t.per_cpu_s for t in r.rounds])] for r in runs]))
    best, one = limit(runs), runs[0]
    print(f"\nSUMMARY detector: {median(one.ms_per_frame):.1f} ms/frame at 1 thread = "
          f"{median(one.frames_per_s):.0f} det/s; hardware limit {median(best.frames_per_s):.0f} det/s ({best.label})")
    return runs


if __name__ == "__main__":
    main()
