"""``python -m bench [detector|pipeline|gating|accuracy|outbox ...]``: run the edge benchmarks (all by default)."""

from __future__ import annotations

import sys

from bench import accuracy, detector, gating, outbox, pipeline
from bench.common import quiet_opencv

BENCHMARKS = {"detector": detector.main, "pipeline": pipeline.main, "gating": gating.main, "accuracy": accuracy.main,
              "outbox": outbox.main}


def main(argv: list[str]) -> None:
    quiet_opencv()
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
