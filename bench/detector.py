"""Benchmark 1, detector only: ms per frame and detections per second, the box's hardware limit.

Runs letterbox + ONNX inference + decode/NMS on the frames the cameras would sample from the
shared clips (decoded beforehand, so no video decoding is counted), at 1 and 2 threads in total:
one worker with 1 or 2 intra-op threads, and two workers with one thread each on one session.
The best of these is the limit the pipeline benchmarks compare against.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from bench.common import CLIPS, sampled_frames, table
from gridwatch.edge.config import EdgeConfig, parse_config
from gridwatch.edge.detect import OnnxDetector
from gridwatch.edge.runner import build_detector


@dataclass(frozen=True)
class DetectorRun:
    label: str
    workers: int
    threads: int
    ms_per_frame: float      # wall time per frame as seen by one worker
    frames_per_s: float      # detections/s (Frigate's 1000 / inference-ms)


def detector_for(threads: int) -> OnnxDetector:
    config: EdgeConfig = parse_config({"site_id": "bench", "node_id": "bench", "detector": {"threads": threads},
                                       "cameras": [{"id": "c", "source": "0"}]})
    return build_detector(config)


def measure(detector: OnnxDetector, frames: list[np.ndarray], workers: int, repeat: int = 1) -> tuple[float, float]:
    """(ms per frame per worker, frames per second over all workers) for ``frames`` x ``repeat``."""
    for frame in frames[:5]:
        detector.detect(frame)  # warm up
    work = frames * repeat
    per_worker_ms: list[float] = []

    def run(part: list[np.ndarray]) -> None:
        started = time.perf_counter()
        for frame in part:
            detector.detect(frame)
        per_worker_ms.append((time.perf_counter() - started) * 1000 / max(1, len(part)))

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(work[i::workers],)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return float(np.mean(per_worker_ms)), len(work) / elapsed


def run_detector_bench(frames: list[np.ndarray] | None = None) -> list[DetectorRun]:
    frames = frames if frames is not None else [f for clip in sorted(CLIPS) for f in sampled_frames(clip)]
    runs = []
    for label, workers, threads in (("1 thread", 1, 1), ("2 threads, 1 worker", 1, 2),
                                    ("2 threads, 2 workers", 2, 1)):
        ms, fps = measure(detector_for(threads), frames, workers)
        runs.append(DetectorRun(label, workers, threads, ms, fps))
    return runs


def limit(runs: list[DetectorRun]) -> DetectorRun:
    return max(runs, key=lambda r: r.frames_per_s)


def main() -> list[DetectorRun]:
    frames = [f for clip in sorted(CLIPS) for f in sampled_frames(clip)]
    runs = run_detector_bench(frames)
    print(f"\n## 1. Detector only (yolox_nano 416x416, {len(frames)} sampled frames of the shared clips)\n")
    print(table(["setting", "workers", "threads/worker", "ms/frame", "detections/s"],
                [[r.label, r.workers, r.threads, r.ms_per_frame, r.frames_per_s] for r in runs]))
    best, one = limit(runs), runs[0]
    print(f"\nSUMMARY detector: {one.ms_per_frame:.1f} ms/frame at 1 thread = {one.frames_per_s:.0f} det/s; "
          f"hardware limit {best.frames_per_s:.0f} det/s ({best.label})")
    return runs


if __name__ == "__main__":
    main()
