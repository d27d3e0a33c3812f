"""What every benchmark shares: the shared assets, bench configs for the clips, frame loading, tables.

Speed is only ever reported as a ratio against a baseline measured in the same run on the same
machine, because an edge box (and this 2-core CI machine) is noisy.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from gridwatch.edge.capture import FrameSource, Sampler
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


def bench_config(cameras: int, motion: bool = True, workers: int = 2, threads: int = 1, loop: bool = False,
                 evidence_dir: str = "/tmp/gridwatch-bench-evidence") -> EdgeConfig:
    """A node with ``cameras`` cameras cycling through the shared clips, at 5 detect-fps."""
    clips = sorted(CLIPS)
    return parse_config({
        "site_id": "bench", "node_id": "bench-node",
        "detector": {"workers": workers, "threads": threads},
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


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def quiet_opencv() -> None:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
