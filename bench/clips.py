"""What event clips cost the detection path: its frame rate alone, and while the camera's clip recorder keeps
its ring buffer (one JPEG encode per kept frame, on the detection thread) and its worker blurs and encodes
clips without pause (YuNet and ffmpeg's libx264 on other threads), in interleaved rounds.

The worst case: an incident starting or ending every ``CLIP_EVERY_S`` seconds of footage, so the worker is
never idle. ``python -m bench overhead`` runs it after the pipeline's own overhead; ``clip-overhead`` alone.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.common import DETECT_FPS, interleaved, median, sampled_frames, spread, table
from bench.detector import detector_for
from gridwatch.edge.config import Clips
from gridwatch.edge.evidence.clips import ClipRecorder
from gridwatch.edge.perception.detect import OnnxDetector

CLIP = "car-detection.mp4"
ROUNDS = 5
SECONDS = 4.0
CLIP_EVERY_S = 2.0  # of source time: a clip asked for this often keeps the worker busy all the time
SETTINGS = Clips(enabled=True, before_s=5.0, after_s=5.0)


def _detect(detector: OnnxDetector, frames: list[np.ndarray], seconds: float,
            recorder: ClipRecorder | None = None) -> float:
    """Frames/s of the detection path over ``seconds``; with ``recorder``, each frame also goes to the ring
    (on the source clock of a ``DETECT_FPS`` camera) and a clip is asked for every ``CLIP_EVERY_S``."""
    done, started, next_clip_s = 0, time.perf_counter(), CLIP_EVERY_S
    while time.perf_counter() - started < seconds:
        image = frames[done % len(frames)]
        detector.detect(image)
        if recorder is not None:
            source_s = done / DETECT_FPS
            recorder.observe(source_s, image, (), ())
            if source_s >= next_clip_s:
                recorder.request(uuid.uuid4().hex, source_s, True, True)
                next_clip_s += CLIP_EVERY_S
        done += 1
    return done / (time.perf_counter() - started)


def overhead(rounds: int = ROUNDS, seconds: float = SECONDS) -> dict:
    detector = detector_for(1)
    frames = sampled_frames(CLIP)[:60]
    height, width = frames[0].shape[:2]
    stats = {"clips": 0, "peak_kib": 0.0}

    def with_clips() -> float:
        with tempfile.TemporaryDirectory() as directory:
            recorder = ClipRecorder(SETTINGS, DETECT_FPS, Path(directory), [])
            rate = _detect(detector, frames, seconds, recorder)
            recorder.close()  # the backlog is encoded after the timed part: it never held the detection path
            stats["clips"] += len(recorder.clips)
            stats["peak_kib"] = max(stats["peak_kib"], recorder.ring.peak_bytes / 1024)
            return rate

    results = interleaved(rounds, {"detection alone": lambda: _detect(detector, frames, seconds),
                                   "detection while recording clips": with_clips})
    alone, recording = results["detection alone"], results["detection while recording clips"]
    ratios = [b / a for a, b in zip(alone, recording, strict=True)]
    print(f"\n## Event clips beside detection ({width}x{height}, {SETTINGS.before_s:g} s before + "
          f"{SETTINGS.after_s:g} s after at {DETECT_FPS:g} fps, a clip every {CLIP_EVERY_S:g} s of footage): "
          f"{rounds} interleaved rounds of {seconds:.0f} s; median (min-max)\n")
    print(table(["run", "detector frames/s"], [["detection alone", spread(alone)],
                                               ["detection while recording clips", spread(recording)],
                                               ["ratio, per round", spread(ratios)]]))
    print(f"\nSUMMARY clip overhead: the detection path keeps {median(ratios):.2f}x its frame rate "
          f"({min(ratios):.2f}-{max(ratios):.2f}) while {stats['clips']} clips were blurred and H.264-encoded "
          f"beside it; ring buffer peak {stats['peak_kib']:.0f} KiB per camera")
    return {"ratio": median(ratios), "ratios": ratios, "clips": stats["clips"], "peak_kib": stats["peak_kib"]}
