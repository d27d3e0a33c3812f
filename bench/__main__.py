"""``python -m bench [NAME ...]``, NAME one of detector, pipeline, overhead, gating, accuracy, outbox, privacy,
uniforms, plates, rtsp, uniform-cost, plate-overhead, clip-overhead, replicas: the edge benchmarks (all by default);
``uniform-cost``, ``plate-overhead`` and ``clip-overhead`` (parts of ``overhead`` alone) and ``replicas`` (server
ingest on the clustered broker, bench/replicas.py) only when named."""

from __future__ import annotations

import sys

from bench import accuracy, clips, detector, gating, outbox, pipeline, plates, privacy, rtsp, uniforms
from bench.common import quiet_opencv


def _overhead() -> None:
    """The engine on top of the detector, uniform recognition per person crop against a detection, and the
    detection path's frame rate while plates are read and event clips are recorded beside it."""
    pipeline.overhead()
    uniforms.cost()
    plates.overhead()
    clips.overhead()


BENCHMARKS = {"detector": detector.main, "pipeline": pipeline.main, "overhead": _overhead,
              "gating": gating.main, "accuracy": accuracy.main, "outbox": outbox.main,
              "privacy": privacy.main, "uniforms": uniforms.main, "plates": plates.main, "rtsp": rtsp.main}


def _replicas() -> None:
    from bench import replicas  # the server extra and a broker cluster: not needed by the edge benchmarks

    replicas.main()


# Server-side benchmarks start a broker cluster and PostgreSQL databases: only when named.
# ``uniform-cost`` is already part of ``overhead``: alone, it takes seconds, not the engine's minutes.
ON_REQUEST = {"replicas": _replicas, "uniform-cost": uniforms.cost, "plate-overhead": plates.overhead,
              "clip-overhead": clips.overhead}


def main(argv: list[str]) -> None:
    quiet_opencv()
    names = argv or list(BENCHMARKS)
    known = BENCHMARKS | ON_REQUEST
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(known)}")
    for name in names:
        known[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
