"""What every benchmark shares: the shared assets, bench configs for the clips, frame loading, tables.

Speed is only ever reported as a ratio against a baseline measured in the same run on the same
machine, because an edge box (and this 2-core CI machine) is noisy.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from gridwatch.edge.capture.source import FrameSource, Sampler
from gridwatch.edge.config import EdgeConfig, parse_config

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRIDWATCH_SHARED", REPO.parent / "shared"))
SAMPLES = SHARED / "samples"
DETECT_FPS = 5.0

# The two 768x432 shared clips, each with a zone and a rule that produce real events on it.
CLIPS = {
    "one-by-one-person-detection.mp4": {
        "id": "table", "polygon": [[0.40, 0.60], [0.80, 0.60], [0.80, 1.0], [0.40, 1.0]],
        "rules": [{"type": "loitering", "min_dwell_s": 15, "update_every_s": 10, "objects": ["person"]}],
    },
    "car-detection.mp4": {
        "id": "lane", "polygon": [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]],
        "rules": [{"type": "loitering", "min_dwell_s": 3, "update_every_s": 10, "objects": ["car", "truck"]}],
    },
}


def bench_detector(**settings: object) -> dict:
    """The bench nodes' detector settings; ``GRIDWATCH_BENCH_INPUT_SIZE=416x416`` pins the canvas, to
    measure the pipeline benchmarks as they were before the canvas followed the camera (issue 22)."""
    if pinned := os.environ.get("GRIDWATCH_BENCH_INPUT_SIZE"):
        settings["input_size"] = [int(side) for side in pinned.lower().split("x")]
    return settings


def bench_config(cameras: int, motion: bool = True, workers: int = 2, threads: int = 1, loop: bool = False,
                 evidence_dir: str = "/tmp/gridwatch-bench-evidence") -> EdgeConfig:
    """A node with ``cameras`` cameras cycling through the shared clips, at 5 detect-fps."""
    clips = sorted(CLIPS)
    return parse_config({
        "site_id": "bench", "node_id": "bench-node",
        "detector": bench_detector(workers=workers, threads=threads),
        "evidence": {"dir": evidence_dir},
        "cameras": [{
            "id": f"cam-{n:02d}", "source": str(SAMPLES / clips[n % len(clips)]), "detect_fps": DETECT_FPS,
            "loop": loop, "motion": {"enabled": motion}, "zones": [CLIPS[clips[n % len(clips)]]],
        } for n in range(cameras)],
    })


def sampled_frames(clip: str, fps: float = DETECT_FPS) -> list[np.ndarray]:
    """The frames of a clip that a camera at ``fps`` detect-fps would process."""
    source = FrameSource(str(SAMPLES / clip))
    try:
        return [frame.image for frame in source.frames(Sampler(fps))]
    finally:
        source.close()


T = TypeVar("T")


@dataclass(frozen=True)
class Throughput:
    """Frames done in a measured window: per wall second, and per second of this process's CPU time.

    Six agents share this 2-core machine, so the wall-clock share a run gets changes from one
    second to the next; the CPU seconds a frame costs (all our threads: decoding, inference,
    tracking) barely do. Both are reported; ratios of the CPU figure are the stable ones."""

    frames: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.frames / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.frames / self.cpu_s


class Stopwatch:
    """Wall and process CPU time since it was made; ``throughput(frames)`` reads both."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def throughput(self, frames: int) -> Throughput:
        return Throughput(frames, time.perf_counter() - self.wall, time.process_time() - self.cpu)


def interleaved(rounds: int, steps: dict[str, Callable[[], T]]) -> dict[str, list[T]]:
    """Run every step once per round, in order (A B C A B C ...), and collect each step's results.

    Other work on the machine comes and goes within seconds; measuring what is compared close
    together, several times, and comparing round by round keeps that noise out of the ratios.
    """
    results: dict[str, list[T]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            results[name].append(step())
    return results


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def spread(values: list[float]) -> str:
    """``median (min-max)`` of a list of measurements, for tables and summaries."""
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def quiet_opencv() -> None:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
