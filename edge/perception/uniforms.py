"""Uniforms: the shipped catalogue, the torso region of a person box, and matching a crop to a uniform.

A uniform is recognised by the share of torso pixels inside its HSV colour ranges (explainable:
"41 % of the torso is Meituan yellow") and, when enrolment photos exist, by the similarity of the
person's OSNet appearance embedding to the photos' mean (robust to colour casts). Both cues must
agree; the reported score is their mean, with the margin to the next best uniform.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gridwatch.edge.config import Uniform

# The torso inside a person box: below the head and shoulders, above the hips, without the arms' edges.
TORSO = (0.20, 0.55, 0.20, 0.80)  # top, bottom, left, right as fractions of the box


def torso(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The torso crop of a person box (x1, y1, x2, y2 in pixels); empty when the box is degenerate."""
    x1, y1, x2, y2 = (float(v) for v in box)
    top, bottom, left, right = TORSO
    h, w = y2 - y1, x2 - x1
    rows = slice(max(0, int(y1 + top * h)), max(0, int(y1 + bottom * h)))
    cols = slice(max(0, int(x1 + left * w)), max(0, int(x1 + right * w)))
    return image[rows, cols]


def person_crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (max(0, int(v)) for v in box)
    return image[y1:y2, x1:x2]


def colour_fraction(crop: np.ndarray, uniform: Uniform) -> float:
    """Share of the crop's pixels inside any of the uniform's HSV ranges."""
    if crop.size == 0:
        return 0.0
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hit = np.zeros(hsv.shape[:2], bool)
    for colour in uniform.colors:
        lo, hi = np.array(colour.hsv_min), np.array(colour.hsv_max)
        if lo[0] <= hi[0]:
            hit |= cv2.inRange(hsv, lo, hi) > 0
        else:  # a red hue range wraps around 179 -> 0
            hit |= cv2.inRange(hsv, lo, np.array([179, *hi[1:]])) > 0
            hit |= cv2.inRange(hsv, np.array([0, *lo[1:]]), hi) > 0
    return float(hit.mean())


@dataclass(frozen=True)
class Match:
    """The best uniform for one crop (``uniform_id`` None when none passes), its score and margin."""

    uniform_id: str | None
    score: float
    margin: float
    colour_fraction: float
    similarity: float | None


class UniformMatcher:
    """Scores a person against a set of uniforms; prototypes come from each uniform's example photos."""

    def __init__(self, uniforms: list[Uniform], embedder=None) -> None:
        self.uniforms = uniforms
        self.embedder = embedder
        self.prototypes: dict[str, np.ndarray] = {}
        for uniform in uniforms:
            if uniform.examples:
                if embedder is None:
                    raise ValueError(f"uniform {uniform.id}: examples need the appearance model")
                self.prototypes[uniform.id] = prototype(embedder, [load_image(p) for p in uniform.examples])

    def match(self, image: np.ndarray, box: np.ndarray) -> Match:
        chest = torso(image, box)
        embedding = None
        if self.prototypes:
            embedding = self.embedder.embed([person_crop(image, box)])[0]
        scored = []
        for uniform in self.uniforms:
            fraction = colour_fraction(chest, uniform)
            colour_score = min(1.0, fraction / uniform.min_fraction)
            similarity = None
            passed = fraction >= uniform.min_fraction
            score = colour_score
            if uniform.id in self.prototypes and embedding is not None:
                similarity = float(self.prototypes[uniform.id] @ embedding)
                passed = passed and similarity >= uniform.min_similarity
                score = (colour_score + max(0.0, similarity)) / 2
            scored.append((score, passed, uniform.id, fraction, similarity))
        scored.sort(key=lambda s: s[0], reverse=True)
        best = scored[0]
        margin = best[0] - scored[1][0] if len(scored) > 1 else best[0]
        return Match(best[2] if best[1] else None, round(best[0], 3), round(margin, 3), round(best[3], 3),
                     None if best[4] is None else round(best[4], 3))


def load_image(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image


def prototype(embedder, images: list[np.ndarray]) -> np.ndarray:
    """The normalised mean embedding of example photos (each a person crop)."""
    mean = embedder.embed(images).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)
