"""Person AP50 on MOT17-mini must not fall more than 0.02 below the recorded baseline (issue 3, item 5)."""

from __future__ import annotations

from bench.accuracy import DATASET, average_precision, baseline, evaluate

TOLERANCE = 0.02


def test_average_precision_on_known_curves() -> None:
    assert average_precision([(0.9, True), (0.8, True)], 2) == 1.0
    assert average_precision([(0.9, False), (0.8, True)], 2) == 0.25  # recall 0.5 at precision 0.5
    assert average_precision([(0.9, True), (0.1, False)], 4) == 0.25


def test_person_ap50_does_not_regress() -> None:
    assert DATASET.is_dir(), f"MOT17-mini not found at {DATASET} (set GRIDWATCH_SHARED)"
    ap50, sequences = evaluate()
    assert len(sequences) == 7 and all(s.people > 0 for s in sequences)
    print(f"person AP50 {ap50:.4f} (baseline {baseline():.4f})")
    assert ap50 >= baseline() - TOLERANCE, f"person AP50 {ap50:.4f} fell below baseline {baseline():.4f} - 0.02"
