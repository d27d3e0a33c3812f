"""Uniforms: which uniform a person wears, or — the default — none of them.

Every person is described under the frame's own illuminant (:mod:`colour`), so dusk and street
lamps do not move the description. Two kinds of uniform are scored:

* an **enrolled profile** (``enroll-uniform``): a logistic classifier over the torso's
  lightness-free chroma histogram and the whole body's OSNet embedding, learned from photos of the
  uniform *against the site's own ordinary people*, with a threshold calibrated for the profile's
  false-accept target. Its score is the classifier's probability;
* a **colour-only** catalogue uniform: the share of the torso in a reference hue. It is coarse, so
  its score is capped at ``COLOUR_ONLY_CAP``: an enrolled profile that accepts the person outranks
  it, and a colour-only uniform never wins against a confident enrolled one by a hair.

The answer is open-set: ``uniform_id`` is None unless the best uniform passes its own threshold
*and* leads every other uniform by ``min_margin``; a pass with a smaller lead is ``uncertain`` (JD
red and an orange vest share a hue family), which never opens a gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gridwatch.edge.config import Uniform
from gridwatch.edge.perception.appearance import UNIFORM_SIZE
from gridwatch.edge.perception.colour import chroma_histogram, colour_share, illuminant, lab_chroma, normalise

# The torso inside a person box: below the head and shoulders, above the hips, without the arms' edges.
TORSO = (0.20, 0.55, 0.20, 0.80)  # top, bottom, left, right as fractions of the box
COLOUR_ONLY_CAP = 0.6   # the most a colour-only match can score: coarse evidence
MIN_MARGIN = 0.15       # lead over the runner-up a decision needs; less is "uncertain"


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


@dataclass(frozen=True)
class Person:
    """One person under a neutral illuminant: the torso's chroma histogram and, if asked, the body's OSNet vector."""

    chroma: np.ndarray
    torso_hue: np.ndarray     # per-pixel Lab hue and chroma of the normalised torso, for colour-only uniforms
    torso_chroma: np.ndarray
    embedding: np.ndarray | None


def body_embedding(image: np.ndarray, box: np.ndarray, embedder, light: np.ndarray) -> np.ndarray:
    """The whole body's OSNet vector under a neutral illuminant, at the uniform input size."""
    body = (normalise(person_crop(image, box), light) * 255).astype(np.uint8)
    return embedder.embed([body], UNIFORM_SIZE)[0]


def describe(image: np.ndarray, box: np.ndarray, embedder=None, light: np.ndarray | None = None) -> Person:
    """A person box described independently of the frame's brightness and white balance."""
    light = illuminant(image) if light is None else light
    hue, chroma = lab_chroma(normalise(torso(image, box), light))
    embedding = None if embedder is None else body_embedding(image, box, embedder, light)
    return Person(chroma_histogram(hue, chroma), hue, chroma, embedding)


def features(person: Person) -> np.ndarray:
    """The enrolled classifier's input: the Hellinger-mapped chroma histogram and the OSNet vector."""
    assert person.embedding is not None, "an enrolled profile needs the appearance embedding"
    return np.concatenate([np.sqrt(person.chroma), person.embedding]).astype(np.float32)


def colour_features(person: Person) -> np.ndarray:
    """The screening stage's input: the Hellinger-mapped chroma histogram alone (no OSNet)."""
    return np.sqrt(person.chroma).astype(np.float32)


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-value)))


@dataclass(frozen=True)
class Profile:
    """An enrolled uniform: classifier weights, the calibrated threshold, and how well it separated.

    ``screen_*`` is a colour-only classifier fitted on the same photos: a person it scores below
    ``screen`` (set under every enrolment photo's held-out colour score) is rejected without running
    OSNet; only colour candidates pay for the appearance model, once per track (the courier rule
    reuses the vector for the track's later detections).
    """

    uniform_id: str
    weights: np.ndarray
    bias: float
    threshold: float
    max_false_accept: float
    separation: dict
    positives: np.ndarray
    negatives: np.ndarray
    screen_weights: np.ndarray
    screen_bias: float
    screen: float

    def score(self, vector: np.ndarray) -> float:
        return _sigmoid(float(vector @ self.weights + self.bias))

    def screen_score(self, colour: np.ndarray) -> float:
        return _sigmoid(float(colour @ self.screen_weights + self.screen_bias))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({
            "uniform_id": self.uniform_id, "threshold": self.threshold, "max_false_accept": self.max_false_accept,
            "separation": self.separation, "bias": self.bias, "weights": self.weights.round(6).tolist(),
            "screen": self.screen, "screen_bias": self.screen_bias,
            "screen_weights": self.screen_weights.round(6).tolist(),
            "positives": self.positives.round(5).tolist(), "negatives": self.negatives.round(5).tolist(),
        }), encoding="utf-8")

    @staticmethod
    def load(path: str | Path) -> Profile:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Profile(data["uniform_id"], np.array(data["weights"], np.float32), float(data["bias"]),
                       float(data["threshold"]), float(data["max_false_accept"]), data["separation"],
                       np.array(data["positives"], np.float32).reshape(-1, len(data["weights"])),
                       np.array(data["negatives"], np.float32).reshape(-1, len(data["weights"])),
                       np.array(data["screen_weights"], np.float32), float(data["screen_bias"]), float(data["screen"]))


@dataclass(frozen=True)
class Match:
    """The decision for one detection: ``uniform_id`` (None: no uniform), its score, margin and candidate.

    ``candidate`` is the best-scoring uniform even when it was not accepted, so an event can say
    what was close; ``uncertain`` means it passed its threshold but did not lead by ``MIN_MARGIN``.
    """

    uniform_id: str | None
    score: float
    margin: float
    candidate: str | None = None
    runner_up: str | None = None
    uncertain: bool = False


NO_MATCH = Match(None, 0.0, 0.0)


class UniformMatcher:
    """Scores a person against a set of uniforms and makes the open-set decision."""

    def __init__(self, uniforms: list[Uniform], embedder=None, min_margin: float = MIN_MARGIN) -> None:
        self.uniforms, self.embedder, self.min_margin = uniforms, embedder, min_margin
        self.profiles: dict[str, Profile] = {}
        for uniform in uniforms:
            if uniform.needs_enrolment and not uniform.enrolled:
                raise ValueError(f"uniform {uniform.id} needs an enrolled profile: colour alone cannot recognise it")
            if uniform.profile is not None:
                if embedder is None:
                    raise ValueError(f"uniform {uniform.id}: an enrolled profile needs the appearance model")
                self.profiles[uniform.id] = Profile.load(uniform.profile)

    def match(self, image: np.ndarray, box: np.ndarray, light: np.ndarray | None = None) -> Match:
        return self.decide(self.describe(image, box, light))

    def describe(self, image: np.ndarray, box: np.ndarray, light: np.ndarray | None = None,
                 embedding: np.ndarray | None = None) -> Person:
        """The person as the profiles need them: OSNet runs only for a colour candidate of an enrolled
        profile, and not at all when ``embedding`` (the same track's, from an earlier detection) is
        given — the body's appearance does not change between a track's detections, its torso's
        colour is re-read every time."""
        light = illuminant(image) if light is None else light
        person = describe(image, box, None, light)
        if not self.profiles or all(p.screen_score(colour_features(person)) < p.screen for p in self.profiles.values()):
            return person
        if embedding is None:
            embedding = body_embedding(image, box, self.embedder, light)
        return Person(person.chroma, person.torso_hue, person.torso_chroma, embedding)

    def decide(self, person: Person) -> Match:
        scored: list[tuple[float, bool, str]] = []
        for uniform in self.uniforms:
            if uniform.id in self.profiles:
                profile = self.profiles[uniform.id]
                if person.embedding is None:  # screened out on colour
                    score = min(profile.screen_score(colour_features(person)), profile.screen)
                    scored.append((score, False, uniform.id))
                    continue
                score = profile.score(features(person))
                scored.append((score, score >= profile.threshold, uniform.id))
            else:
                share = max(colour_share(person.torso_hue, person.torso_chroma, c, uniform.hue_tolerance)
                            for c in uniform.colours)
                score = COLOUR_ONLY_CAP * min(1.0, share / uniform.min_fraction)
                scored.append((score, share >= uniform.min_fraction, uniform.id))
        scored.sort(key=lambda s: s[0], reverse=True)
        best, passed, best_id = scored[0]
        runner_score, runner_id = (scored[1][0], scored[1][2]) if len(scored) > 1 else (0.0, None)
        margin = best - runner_score
        uncertain = passed and margin < self.min_margin
        return Match(best_id if passed and not uncertain else None, round(best, 3), round(margin, 3),
                     best_id, runner_id, uncertain)


def load_image(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image
