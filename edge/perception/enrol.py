"""Enrolment: a uniform profile learned from photos of it against the site's own ordinary people.

"None of these uniforms" is the default answer, so a profile is a two-class decision: positives
are people in the uniform (photos, or a clip range with a box), negatives are the people the site
sees every day (residents, shoppers, walkers — whoever the installer's negative footage shows).
A logistic classifier over lightness-free colour and OSNet appearance is fitted; its threshold is
calibrated on *out-of-fold* negative scores for the profile's false-accept target, and the same
cross-validation gives the separation figure the installer is shown (share of held-out photos
accepted, share of held-out negatives accepted, ROC AUC) — a figure, not a promise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridwatch.edge.capture.source import FrameSource, Sampler
from gridwatch.edge.perception.detect import OnnxDetector
from gridwatch.edge.perception.uniforms import Person, Profile, describe, features, load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MIN_PERSON_SCORE = 0.5
MIN_PERSON_HEIGHT = 60  # pixels: a smaller person's torso is a few pixels of colour
L2 = 0.05               # ridge on the weights: a handful of photos must not be memorised
STEPS = 400
LEARNING_RATE = 0.5
MIN_THRESHOLD = 0.5     # never accept what the classifier thinks more likely not the uniform
THRESHOLD_GAP = 0.1     # calibrated threshold sits this far above the highest rejected negative
SCREEN_L2, SCREEN_STEPS = 1e-3, 1500  # the colour screen has 25 inputs: it may fit harder
SCREEN_SHARE = 0.5      # the colour screen passes anything above half the weakest held-out photo's colour score
MAX_SCREEN = 0.5


def example_images(directory: Path) -> list[Path]:
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{directory}: no .jpg/.png photos found")
    return paths


def _people(image: np.ndarray, detector: OnnxDetector) -> np.ndarray:
    """Boxes of clearly seen people in a frame, largest first."""
    found = detector.detect(image)
    person = detector.class_names.index("person")
    boxes = found.boxes[(found.class_ids == person) & (found.scores >= MIN_PERSON_SCORE)]
    boxes = boxes[(boxes[:, 3] - boxes[:, 1]) >= MIN_PERSON_HEIGHT]
    return boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]


def _inside(box: np.ndarray, region: tuple[float, float, float, float] | None, size: tuple[int, int]) -> bool:
    if region is None:
        return True
    cx, cy = (box[0] + box[2]) / 2 / size[0], (box[1] + box[3]) / 2 / size[1]
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


def photo_people(directory: Path, detector: OnnxDetector, embedder, largest_only: bool) -> list[Person]:
    """People in a folder of photos (whole scenes, so the illuminant is the scene's): the largest
    person per photo for uniform photos, everyone for site negatives."""
    people = []
    for path in example_images(directory):
        image = load_image(path)
        boxes = _people(image, detector)
        people += [describe(image, box, embedder) for box in (boxes[:1] if largest_only else boxes)]
    return people


def clip_people(clip: Path, detector: OnnxDetector, embedder, start_s: float = 0.0, end_s: float | None = None,
                region: tuple[float, float, float, float] | None = None, every_s: float = 0.5) -> list[Person]:
    """People seen in a clip between ``start_s`` and ``end_s``, sampled every ``every_s``, whose box
    centre lies in ``region`` (normalised x1, y1, x2, y2: where the uniformed person walks)."""
    source, sample, people = FrameSource(str(clip)), Sampler(1.0 / every_s), []
    try:
        for frame in source.frames(lambda t: start_s <= t and (end_s is None or t <= end_s) and sample(t)):
            size = (frame.image.shape[1], frame.image.shape[0])
            people += [describe(frame.image, box, embedder) for box in _people(frame.image, detector)
                       if _inside(box, region, size)]
    finally:
        source.close()
    return people


def footage_people(path: Path, detector: OnnxDetector, embedder, largest_only: bool = False) -> list[Person]:
    """Everyone in a folder of photos or a clip: how site negatives are given."""
    if path.is_dir():
        return photo_people(path, detector, embedder, largest_only)
    return clip_people(path, detector, embedder)


def fit(positives: np.ndarray, negatives: np.ndarray, l2: float = L2, steps: int = STEPS) -> tuple[np.ndarray, float]:
    """Class-balanced, L2-regularised logistic regression by gradient descent (few hundred rows)."""
    x = np.concatenate([positives, negatives]).astype(np.float64)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    weight = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives))
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        error = weight * (p - y)
        w -= LEARNING_RATE * (x.T @ error + l2 * w)
        b -= LEARNING_RATE * float(error.sum())
    return w.astype(np.float32), float(b)


def _scores(w: np.ndarray, b: float, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ w + b)))


def out_of_fold(positives: np.ndarray, negatives: np.ndarray, folds: int,
                l2: float = L2, steps: int = STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Every row's score from a classifier that did not see it (stratified k-fold, fixed seed)."""
    rng = np.random.default_rng(15)
    pos_fold = rng.permutation(len(positives)) % folds
    neg_fold = rng.permutation(len(negatives)) % folds
    pos_scores, neg_scores = np.zeros(len(positives)), np.zeros(len(negatives))
    for k in range(folds):
        w, b = fit(positives[pos_fold != k], negatives[neg_fold != k], l2, steps)
        pos_scores[pos_fold == k] = _scores(w, b, positives[pos_fold == k])
        neg_scores[neg_fold == k] = _scores(w, b, negatives[neg_fold == k])
    return pos_scores, neg_scores


def auc(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float:
    """Probability that a held-out positive outscores a held-out negative (ties count half)."""
    greater = (pos_scores[:, None] > neg_scores[None, :]).mean()
    ties = (pos_scores[:, None] == neg_scores[None, :]).mean()
    return float(greater + 0.5 * ties)


def calibrated_threshold(neg_scores: np.ndarray, max_false_accept: float) -> float:
    """Just above the out-of-fold negative scores the false-accept target does not allow through."""
    ranked = np.sort(neg_scores)[::-1]
    allowed = int(np.floor(max_false_accept * len(ranked)))
    highest_rejected = float(ranked[allowed]) if allowed < len(ranked) else 0.0
    return round(min(0.99, max(MIN_THRESHOLD, highest_rejected + THRESHOLD_GAP)), 4)


@dataclass(frozen=True)
class Separation:
    """Cross-validated: held-out photos accepted, held-out negatives accepted, ROC AUC."""

    positives: int
    negatives: int
    true_accept: float
    false_accept: float
    auc: float

    def line(self) -> str:
        return (f"cross-validated on {self.positives} uniform photos and {self.negatives} site negatives: "
                f"{self.true_accept:.0%} of held-out uniform photos accepted, {self.false_accept:.1%} of held-out "
                f"negatives accepted, ROC AUC {self.auc:.3f}")


def train(uniform_id: str, positives: list[Person], negatives: list[Person],
          max_false_accept: float = 0.01) -> tuple[Profile, Separation]:
    """A profile and its cross-validated separation from described positives and site negatives."""
    if len(positives) < 3:
        raise ValueError(f"{len(positives)} uniform photos: enrolment needs at least 3 (5-20 from different days)")
    if len(negatives) < 10:
        raise ValueError(f"{len(negatives)} site negatives: enrolment needs at least 10 ordinary people")
    pos = np.stack([features(p) for p in positives])
    neg = np.stack([features(p) for p in negatives])
    return train_rows(uniform_id, pos, neg, len(positives[0].chroma), max_false_accept)


def train_rows(uniform_id: str, pos: np.ndarray, neg: np.ndarray, colour_dims: int,
               max_false_accept: float) -> tuple[Profile, Separation]:
    """:func:`train` on feature rows (``features``: the first ``colour_dims`` are the colour screen's
    input), so a profile can be refitted from its stored rows plus new examples without the photos."""
    pos_scores, neg_scores = out_of_fold(pos, neg, min(5, len(pos)))
    threshold = calibrated_threshold(neg_scores, max_false_accept)
    separation = Separation(len(pos), len(neg), float((pos_scores >= threshold).mean()),
                            float((neg_scores >= threshold).mean()), round(auc(pos_scores, neg_scores), 4))
    w, b = fit(pos, neg)
    pos_colour, neg_colour = pos[:, :colour_dims], neg[:, :colour_dims]
    screen_pos, _ = out_of_fold(pos_colour, neg_colour, min(5, len(pos)), SCREEN_L2, SCREEN_STEPS)
    screen = round(min(MAX_SCREEN, SCREEN_SHARE * float(screen_pos.min())), 6)
    screen_w, screen_b = fit(pos_colour, neg_colour, SCREEN_L2, SCREEN_STEPS)
    profile = Profile(uniform_id, w, b, threshold, max_false_accept,
                      {"positives": separation.positives, "negatives": separation.negatives,
                       "true_accept": round(separation.true_accept, 4),
                       "false_accept": round(separation.false_accept, 4), "auc": separation.auc},
                      pos, neg, screen_w, screen_b, screen)
    return profile, separation


def refit(base: Profile, positives: list[Person], negatives: list[Person]) -> tuple[Profile, Separation]:
    """The enrolled profile refitted with examples added in the console: its own enrolment rows plus
    these people, threshold recalibrated for the same false-accept target. Always from ``base`` (the
    enrolled file), never from an earlier refit, so the same example list gives the same profile."""
    pos = np.concatenate([base.positives, *([np.stack([features(p) for p in positives])] if positives else [])])
    neg = np.concatenate([base.negatives, *([np.stack([features(p) for p in negatives])] if negatives else [])])
    return train_rows(base.uniform_id, pos.astype(np.float32), neg.astype(np.float32), len(base.screen_weights),
                      base.max_false_accept)
