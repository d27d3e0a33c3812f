"""The uniform matcher GridWatch shipped before issue 15, kept only as the benchmark's baseline.

HSV boxes per uniform (the old catalogue's ranges), a torso pixel share, and for an enrolled uniform
a hue range fitted to its photos plus an OSNet prototype that must agree. ``python -m bench
uniforms`` runs it beside the current recogniser on the same frames, so its failures at dusk and
under colour casts are measured, not remembered. Nothing in the edge imports this.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gridwatch.edge.perception.uniforms import person_crop, torso

# The catalogue as shipped before issue 15: (hsv_min, hsv_max) per uniform, and min_fraction.
CATALOGUE = {
    "meituan": ([((20, 120, 120), (32, 255, 255))], 0.30),
    "eleme": ([((98, 130, 110), (112, 255, 255))], 0.30),
    "jd": ([((172, 140, 90), (6, 255, 255))], 0.30),
    "sf": ([((0, 0, 0), (179, 80, 55))], 0.60),
}
VIVID, HUE_COVER, MIN_FRACTION_SHARE, MIN_SIMILARITY = (80, 80), 0.8, 0.5, 0.5


@dataclass(frozen=True)
class HsvUniform:
    id: str
    ranges: list[tuple[tuple[int, int, int], tuple[int, int, int]]]
    min_fraction: float
    prototype: np.ndarray | None = None


def fraction(crop: np.ndarray, ranges) -> float:
    if crop.size == 0:
        return 0.0
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hit = np.zeros(hsv.shape[:2], bool)
    for lo, hi in ranges:
        lo, hi = np.array(lo), np.array(hi)
        if lo[0] <= hi[0]:
            hit |= cv2.inRange(hsv, lo, hi) > 0
        else:
            hit |= cv2.inRange(hsv, lo, np.array([179, *hi[1:]])) > 0
            hit |= cv2.inRange(hsv, np.array([0, *lo[1:]]), hi) > 0
    return float(hit.mean())


def _hue_range(hues: np.ndarray) -> tuple[int, int]:
    histogram = np.bincount(hues, minlength=180).astype(float)
    peak = int(np.argmax(np.convolve(np.tile(histogram, 3), np.ones(5), "same")[180:360]))
    total, low, high, held = histogram.sum(), peak, peak, histogram[peak]
    while held < HUE_COVER * total and high - low < 178:
        left, right = histogram[(low - 1) % 180], histogram[(high + 1) % 180]
        if left >= right:
            low, held = low - 1, held + left
        else:
            high, held = high + 1, held + right
    return low % 180, high % 180


def enrol(uniform_id: str, crops: list[np.ndarray], embedder) -> HsvUniform:
    """The old ``enroll-uniform``: hue range + value floor from the photos, and an OSNet prototype."""
    whole = [np.array([0, 0, c.shape[1], c.shape[0]]) for c in crops]
    pixels = np.concatenate([cv2.cvtColor(torso(c, b), cv2.COLOR_BGR2HSV).reshape(-1, 3) for c, b in zip(crops, whole,
                                                                                                          strict=True)])
    vivid = pixels[(pixels[:, 1] >= VIVID[0]) & (pixels[:, 2] >= VIVID[1])]
    low, high = _hue_range(vivid[:, 0].astype(np.int64))
    inside = vivid[((vivid[:, 0] >= low) & (vivid[:, 0] <= high)) if low <= high
                   else ((vivid[:, 0] >= low) | (vivid[:, 0] <= high))]
    s_min, v_min = (int(np.percentile(inside[:, k], 5)) for k in (1, 2))
    ranges = [((low, s_min, v_min), (high, 255, 255))]
    reached = [fraction(torso(c, b), ranges) for c, b in zip(crops, whole, strict=True)]
    mean = embedder.embed(crops).mean(axis=0)
    return HsvUniform(uniform_id, ranges, max(0.05, MIN_FRACTION_SHARE * float(np.median(reached))),
                      mean / max(float(np.linalg.norm(mean)), 1e-9))


def match(uniforms: list[HsvUniform], image: np.ndarray, box: np.ndarray, embedder) -> str | None:
    """The old decision: best score among uniforms; accepted when its colour share (and prototype) pass."""
    chest = torso(image, box)
    embedding = None
    if any(u.prototype is not None for u in uniforms):
        embedding = embedder.embed([person_crop(image, box)])[0]
    best = (-1.0, False, None)
    for uniform in uniforms:
        share = fraction(chest, uniform.ranges)
        score, passed = min(1.0, share / uniform.min_fraction), share >= uniform.min_fraction
        if uniform.prototype is not None:
            similarity = float(uniform.prototype @ embedding)
            passed, score = passed and similarity >= MIN_SIMILARITY, (score + max(0.0, similarity)) / 2
        if score > best[0]:
            best = (score, passed, uniform.id)
    return best[2] if best[1] else None
