"""Benchmark 4, accuracy: person AP50 on MOT17-mini, so that a speed change cannot silently cost accuracy.

Every frame of ``../shared/datasets/MOT17-mini/train/*/img1`` goes through the node's detector
(the config defaults, with the score floor lowered to 0.05 so the precision-recall curve is whole).
Ground truth: MOT rows of class 1 (pedestrian) with consider = 1. A detection that overlaps
(IoU >= 0.5) only a box MOT says not to consider (static people, people on vehicles, reflections,
distractors) is ignored rather than counted as a false positive. AP is the area under the
all-point interpolated precision-recall curve (VOC 2010+). The baseline is in bench/baselines.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from bench.common import SHARED, table
from gridwatch.edge.config import parse_config
from gridwatch.edge.node.runner import build_detector
from gridwatch.edge.perception.detect import OnnxDetector

DATASET = SHARED / "datasets" / "MOT17-mini" / "train"
BASELINES = Path(__file__).with_name("baselines.yaml")
SCORE_FLOOR = 0.05
IOU = 0.5


@dataclass(frozen=True)
class SequenceResult:
    name: str
    frames: int
    people: int
    ap50: float


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def ground_truth(sequence: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """frame -> (boxes that count, boxes to ignore), x1 y1 x2 y2."""
    rows = np.loadtxt(sequence / "gt" / "gt.txt", delimiter=",", ndmin=2)
    truth = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == frame]
        boxes = np.stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]], 1)
        counts = (r[:, 6] == 1) & (r[:, 7] == 1)
        truth[frame] = (boxes[counts], boxes[~counts])
    return truth


def match(scores: np.ndarray, boxes: np.ndarray, gt: np.ndarray, ignore: np.ndarray) -> list[tuple[float, bool]]:
    """Greedy by score: (score, true positive) for each detection that is not ignored."""
    order = np.argsort(-scores)
    overlaps, ignored = iou_matrix(boxes[order], gt), iou_matrix(boxes[order], ignore)
    taken = np.zeros(len(gt), bool)
    out = []
    for k, index in enumerate(order):
        candidates = np.where(~taken & (overlaps[k] >= IOU))[0] if len(gt) else []
        if len(candidates):
            taken[candidates[np.argmax(overlaps[k][candidates])]] = True
            out.append((float(scores[index]), True))
        elif not (len(ignore) and ignored[k].max() >= IOU):
            out.append((float(scores[index]), False))
    return out


def average_precision(results: list[tuple[float, bool]], positives: int) -> float:
    if positives == 0:
        return 0.0
    results = sorted(results, key=lambda r: -r[0])
    hits = np.array([tp for _, tp in results], dtype=float)
    tp, fp = np.cumsum(hits), np.cumsum(1 - hits)
    recall = np.concatenate(([0.0], tp / positives, [1.0]))
    precision = np.concatenate(([1.0], tp / np.maximum(tp + fp, 1e-9), [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def accuracy_detector() -> OnnxDetector:
    config = parse_config({"site_id": "bench", "node_id": "bench", "detector": {"confidence": SCORE_FLOOR},
                           "cameras": [{"id": "c", "source": "0"}]})
    return build_detector(config)


def evaluate(detector: OnnxDetector | None = None) -> tuple[float, list[SequenceResult]]:
    """Person AP50 over all of MOT17-mini, and per sequence."""
    detector = detector or accuracy_detector()
    person = detector.class_id("person")
    every, positives, per_sequence = [], 0, []
    for sequence in sorted(p for p in DATASET.iterdir() if p.is_dir()):
        truth = ground_truth(sequence)
        results, people, frames = [], 0, 0
        for image_path in sorted((sequence / "img1").glob("*.jpg")):
            frame = int(image_path.stem)
            gt, ignore = truth.get(frame, (np.zeros((0, 4)), np.zeros((0, 4))))
            found = detector.detect(cv2.imread(str(image_path)))
            keep = found.class_ids == person
            results += match(found.scores[keep], found.boxes[keep], gt, ignore)
            people += len(gt)
            frames += 1
        per_sequence.append(SequenceResult(sequence.name, frames, people, average_precision(results, people)))
        every += results
        positives += people
    return average_precision(every, positives), per_sequence


def baseline() -> float:
    return float(yaml.safe_load(BASELINES.read_text())["person_ap50_mot17_mini"])


def main() -> float:
    ap50, sequences = evaluate()
    print("\n## 4. Accuracy: person AP50 on MOT17-mini (class 1, consider = 1)\n")
    print(table(["sequence", "frames", "people", "AP50"], [[s.name, s.frames, s.people, s.ap50] for s in sequences]))
    print(f"\nSUMMARY accuracy: person AP50 {ap50:.4f} (baseline {baseline():.4f}, "
          f"a test fails below {baseline() - 0.02:.4f})")
    return ap50


if __name__ == "__main__":
    main()
