"""Benchmark 3, motion gating: the shared clips as fast as possible, gating off and on, in turns.

Each run is the real engine (reader threads decoding the clips, the shared scheduler, motion gate,
tracking, zones, rules, evidence) in blocking mode, so no frame is dropped and both runs see exactly
the same sampled frames. Off and on take turns for a few rounds; each round reports throughput
(sampled frames processed per wall second and per CPU second of the process), the on/off ratio,
and whether the events agree (same camera, type, zone, start within 1 s) -- in every round, strictly.
The summary is the median ratio. The CPU figure is the stable one on a machine other work shares:
a run's wall time depends on how much of the cores it got, its CPU time on what it did.
The pipeline's own cost against the detector-only limit (acceptance 1) is ``bench.pipeline.overhead``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from bench.common import Stopwatch, Throughput, bench_config, interleaved, median, table
from gridwatch.broker.contract import Event
from gridwatch.edge.node.runner import Engine, build_detector, evidence_store
from gridwatch.edge.perception.detect import OnnxDetector

START_TOLERANCE_S = 1.0
CAMERAS = 2   # one per shared clip
ROUNDS = 3


@dataclass(frozen=True)
class GatingRun:
    motion: bool
    detected: int
    done: Throughput
    events: list[Event]


def run_engine(cameras: int, motion: bool, detector: OnnxDetector | None = None) -> GatingRun:
    with tempfile.TemporaryDirectory() as evidence_dir:
        config = bench_config(cameras, motion=motion, evidence_dir=evidence_dir)
        engine = Engine(config, [], evidence_store(config), realtime=False, block=True, reconnect=False,
                        detector=detector)
        watch = Stopwatch()
        engine.start()
        engine.finish()
        done = watch.throughput(sum(p.frames_in for p in engine.pipelines))
    pipelines = engine.pipelines
    return GatingRun(motion, sum(p.frames_detected for p in pipelines), done, [e for p in pipelines for e in p.events])


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


def main(cameras: int = CAMERAS, rounds: int = ROUNDS) -> dict:
    detector = build_detector(bench_config(cameras))
    runs = interleaved(rounds, {"off": lambda: run_engine(cameras, False, detector),
                                "on": lambda: run_engine(cameras, True, detector)})
    rows, ratios, ratios_wall, worst_gap, agree = [], [], [], 0.0, True
    for n, (off, on) in enumerate(zip(runs["off"], runs["on"], strict=True)):
        same, worst = same_events(off.events, on.events)
        agree, worst_gap = agree and same, max(worst_gap, worst)
        ratios.append(on.done.per_cpu_s / off.done.per_cpu_s)
        ratios_wall.append(on.done.per_s / off.done.per_s)
        for r in (off, on):
            rows.append([n + 1, "on" if r.motion else "off", r.done.frames, r.detected, r.done.wall_s, r.done.per_s,
                         r.done.per_cpu_s, len(starts(r.events)), "" if not r.motion else "yes" if same else "NO"])
    print(f"\n## 3. Gating: {cameras} cameras on the shared clips, as fast as possible, gating off vs on, "
          f"{rounds} rounds in turns\n")
    print(table(["round", "gating", "frames", "detected", "seconds", "frames/s", "frames/CPU-s", "incidents",
                 "same events"], rows))
    print("\nincident starts (camera, type, zone, s): off", starts(runs["off"][-1].events))
    print("                                         on ", starts(runs["on"][-1].events))
    print(f"\nSUMMARY gating: {median(ratios):.2f}x throughput per CPU second with gating on "
          f"({min(ratios):.2f}-{max(ratios):.2f} over {rounds} rounds), {median(ratios_wall):.2f}x per wall second "
          f"({min(ratios_wall):.2f}-{max(ratios_wall):.2f}); events {'the same' if agree else 'DIFFER'} in every "
          f"round (worst start gap {worst_gap:.1f} s)")
    return {"ratio": median(ratios), "ratio_wall": median(ratios_wall), "ratios": ratios, "agree": agree}


if __name__ == "__main__":
    main()
