"""Benchmark 2, pipeline in real time: how many cameras one box keeps at their detect-fps.

K cameras replay the shared 768x432 clips concurrently at their own speed (looping), through the
real engine as `gridwatch edge run` builds it (reader thread per camera, one scheduler, shared
detector, motion gating on, events to an in-memory sink). After a warm-up, a camera keeps up when it
processes >= 95 % of its detect-fps and drops no frame. K grows until some camera falls behind;
the table shows CPU % (of one core) and resident memory per camera for every K tried.
"""

from __future__ import annotations

import os
import tempfile
import time

import psutil

from bench.common import DETECT_FPS, bench_config, table
from gridwatch.edge.runner import Engine, evidence_store

WARMUP_S = 5.0
MEASURE_S = 20.0
KEEP_UP = 0.95


def run_k(cameras: int) -> dict:
    process = psutil.Process(os.getpid())
    with tempfile.TemporaryDirectory() as evidence_dir:
        config = bench_config(cameras, motion=True, loop=True, evidence_dir=evidence_dir)
        engine = Engine(config, [], evidence_store(config), realtime=True, block=False)
        rss_before = process.memory_info().rss
        engine.start()
        time.sleep(WARMUP_S)
        frames0 = [p.frames_in for p in engine.pipelines]
        drops0 = [s.dropped for s in engine.scheduler.slots]
        detected0 = sum(p.frames_detected for p in engine.pipelines)
        process.cpu_percent(None)
        started = time.monotonic()
        time.sleep(MEASURE_S)
        elapsed = time.monotonic() - started
        cpu = process.cpu_percent(None)
        rates = [(p.frames_in - f0) / elapsed for p, f0 in zip(engine.pipelines, frames0, strict=True)]
        drops = sum(s.dropped - d0 for s, d0 in zip(engine.scheduler.slots, drops0, strict=True))
        detected = sum(p.frames_detected for p in engine.pipelines) - detected0
        rss = process.memory_info().rss
        engine.stop()
    return {"k": cameras, "min_fps": min(rates), "drops": drops, "cpu": cpu, "det_s": detected / elapsed,
            "rss_cam_mb": (rss - rss_before) / cameras / 2**20, "rss_mb": rss / 2**20,
            "ok": min(rates) >= KEEP_UP * DETECT_FPS and drops == 0}


def main(ks: tuple[int, ...] = (8, 12, 16, 20, 24, 28, 32)) -> dict:
    results = []
    for k in ks:
        results.append(run_k(k))
        if not results[-1]["ok"]:
            break
    print(f"\n## 2. Pipeline in real time: K cameras x 768x432 at {DETECT_FPS:g} detect-fps, gating on\n")
    print(table(["K", "slowest cam fps", "drops", "detections/s", "CPU % (1 core=100)", "RSS MB", "RSS MB/cam",
                 "keeps up"],
                [[r["k"], r["min_fps"], r["drops"], r["det_s"], r["cpu"], r["rss_mb"], r["rss_cam_mb"],
                  "yes" if r["ok"] else "no"] for r in results]))
    best = max((r["k"] for r in results if r["ok"]), default=0)
    at_best = next((r for r in results if r["k"] == best), None)
    detail = (f" (CPU {at_best['cpu']:.0f} %, {at_best['rss_cam_mb']:.0f} MB RSS per camera)" if at_best else "")
    limit_note = "" if not results[-1]["ok"] else f" (did not try more than {ks[-1]})"
    print(f"\nSUMMARY pipeline: {best} cameras kept at {DETECT_FPS:g} detect-fps with no drops{detail}{limit_note}")
    return {"k": best}


if __name__ == "__main__":
    main()
