"""Benchmark 3, motion gating: the shared clips as fast as possible, gating off then on, in one run.

Each run is the real engine (reader threads decoding the clips, the shared scheduler, motion gate,
tracking, zones, rules, evidence) in blocking mode, so no frame is dropped and both runs see exactly
the same sampled frames. Reports throughput (sampled frames processed per second), the ratio, and
whether the events agree (same type, zone and start within 1 s). It also compares the gating-off
throughput with the detector-only limit measured on the same frames in this run (acceptance 1).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

from bench.common import CLIPS, bench_config, sampled_frames, table
from bench.detector import limit, run_detector_bench
from gridwatch.broker.contract import Event
from gridwatch.edge.runner import Engine, evidence_store

START_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class GatingRun:
    motion: bool
    frames: int
    detected: int
    seconds: float
    events: list[Event]

    @property
    def throughput(self) -> float:
        return self.frames / self.seconds


def run_engine(cameras: int, motion: bool) -> GatingRun:
    with tempfile.TemporaryDirectory() as evidence_dir:
        config = bench_config(cameras, motion=motion, evidence_dir=evidence_dir)
        engine = Engine(config, [], evidence_store(config), realtime=False, block=True, reconnect=False)
        started = time.perf_counter()
        engine.start()
        engine.finish()
        seconds = time.perf_counter() - started
    pipelines = engine.pipelines
    return GatingRun(motion, sum(p.frames_in for p in pipelines), sum(p.frames_detected for p in pipelines),
                     seconds, [e for p in pipelines for e in p.events])


def starts(events: list[Event]) -> list[tuple[str, str, str, float]]:
    return sorted((e.camera_id, e.type.value, e.zone_id, e.source_time_s or 0.0)
                  for e in events if e.phase.value == "start")


def same_events(a: list[Event], b: list[Event]) -> tuple[bool, float]:
    """True when both runs start the same incidents (camera, type, zone) within 1 s; and the worst gap."""
    left, right = starts(a), starts(b)
    if len(left) != len(right):
        return False, float("inf")
    gaps = [abs(x[3] - y[3]) for x, y in zip(left, right, strict=True) if x[:3] == y[:3]]
    if len(gaps) != len(left):
        return False, float("inf")
    worst = max(gaps, default=0.0)
    return worst <= START_TOLERANCE_S, worst


def main(cameras: int = 4) -> dict:
    off = run_engine(cameras, motion=False)
    on = run_engine(cameras, motion=True)
    frames = [f for n in range(cameras) for f in sampled_frames(sorted(CLIPS)[n % len(CLIPS)])]
    best = limit(run_detector_bench(frames))
    agree, worst = same_events(off.events, on.events)
    print(f"\n## 3. Gating: {cameras} cameras on the shared clips, as fast as possible, gating off vs on\n")
    print(table(["gating", "frames", "detected", "seconds", "frames/s", "incidents"],
                [["off" if not r.motion else "on", r.frames, r.detected, r.seconds, r.throughput,
                  len(starts(r.events))] for r in (off, on)]))
    print("\nincident starts (camera, type, zone, s): off", starts(off.events))
    print("                                         on ", starts(on.events))
    ratio, pipeline_share = on.throughput / off.throughput, off.throughput / best.frames_per_s
    print(f"\nSUMMARY gating: {ratio:.2f}x throughput with gating on; events {'the same' if agree else 'DIFFER'} "
          f"(worst start gap {worst:.1f} s); gating-off pipeline = {pipeline_share:.2f}x the detector-only "
          f"limit ({off.throughput:.0f} vs {best.frames_per_s:.0f} frames/s)")
    return {"ratio": ratio, "agree": agree, "pipeline_share": pipeline_share}


if __name__ == "__main__":
    main()
