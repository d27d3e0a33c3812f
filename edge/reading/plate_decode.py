"""Reading a plate strip under the plate's own grammar: constrained CTC decoding of the recogniser's output.

The recogniser chooses freely among ~6600 characters, and on a plate 20 px high it takes a
province character for a look-alike that is none (宁 → 皖沪, 黑 → 闽) or a stain for '#'. Here
each time step only competes among characters a plate can hold; the characters are cut where the
model changes its mind, then each position is decided among what may stand there (a province
first, then a letter, then letters and digits, a class character last), summing the position's
probability over its time steps. The confidence is the weakest position's: one doubtful
character makes a doubtful plate.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from gridwatch.edge.reading.plate_format import CLASS_CHARACTERS, DIGITS, LETTERS, PROVINCES, PlateColour

PLATE_ALPHABET = PROVINCES + LETTERS + DIGITS + CLASS_CHARACTERS
SEPARATORS = "·•・.．-—_:："  # painted or imagined between the letter and the number: not a character
# What the last of 7 characters may be, by plate colour (white: police; yellow: driving schools, trailers)
LAST_CHARACTER = {PlateColour.WHITE: "警", PlateColour.YELLOW: LETTERS + DIGITS + "学挂",
                  PlateColour.BLUE: LETTERS + DIGITS, PlateColour.GREEN: LETTERS + DIGITS}


@cache
def _indices(alphabet: tuple[str, ...], allowed: str) -> np.ndarray:
    where = {character: index for index, character in enumerate(alphabet)}
    return np.array(sorted(where[c] for c in allowed if c in where), np.int64)


def decode_plate(probabilities: np.ndarray, alphabet: list[str], colour: PlateColour) -> tuple[str | None, float]:
    """(plate text, confidence) from a strip's T x classes probabilities; None when it holds no 7 or 8 characters."""
    segments = plate_segments(probabilities, alphabet)
    if segments is None:
        return None, 0.0
    return decide(probabilities, alphabet, segments, colour)


def plate_segments(probabilities: np.ndarray, alphabet: list[str],
                   lengths: tuple[int, ...] = (7, 8)) -> list[list[int]] | None:
    """The time steps of each of the plate's 7 or 8 characters (or ``lengths``), None for another count.

    Characters are cut where the model's free choice changes (a red 警 it reads as 号 still is a
    character there); separators count as gaps."""
    key = tuple(alphabet)
    best = probabilities.argmax(axis=1)
    best[np.isin(best, _indices(key, SEPARATORS))] = 0
    segments: list[list[int]] = []
    previous = 0
    for step, index in enumerate(best):
        if index != 0:
            if index != previous or not segments:
                segments.append([])
            segments[-1].append(step)
        previous = index
    provinces = _indices(key, PROVINCES)
    # a wide province glyph may be cut in two: merge leading pieces that are both province-like
    while len(segments) > min(lengths) and _is_province(best, segments, provinces):
        segments[0:2] = [segments[0] + segments[1]]
    return segments if len(segments) in lengths else None


def decide(probabilities: np.ndarray, alphabet: list[str], segments: list[list[int]], colour: PlateColour,
           province: np.ndarray | None = None, strict: bool = False) -> tuple[str, float]:
    """Each position's character among those allowed there; ``province``: a second opinion on the first
    character (over :func:`province_indices`, in that order) added to the strip's own. ``strict`` (a small
    plate): when the two disagree the confidence is 0, so the read counts as unreadable rather than as the
    likelier guess (on small plates the model's favourite province, 皖, is most of the wrong reads)."""
    key = tuple(alphabet)
    text, weakest = "", 1.0
    for position, steps in enumerate(segments):
        choices = _indices(key, _allowed_at(position, len(segments), colour))
        scores = probabilities[steps][:, choices]
        if position == 0 and province is not None and len(choices) == len(PROVINCES):
            scores = np.vstack([scores.max(axis=0, keepdims=True), province[np.newaxis]])
            if strict and scores[0].argmax() != scores[1].argmax():
                weakest = 0.0  # the two readings of the hardest character disagree: a guess, not a read
        pick = int(scores.sum(axis=0).argmax())
        text += alphabet[choices[pick]]
        weakest = min(weakest, float(scores[:, pick].max()))
    return text, weakest


def province_indices(alphabet: list[str]) -> np.ndarray:
    """The class indices of the province characters the recogniser knows."""
    return _indices(tuple(alphabet), PROVINCES)


def _is_province(best: np.ndarray, segments: list[list[int]], provinces: np.ndarray) -> bool:
    return len(segments) >= 2 and all(np.isin(best[segments[i][0]], provinces) for i in (0, 1))


def _allowed_at(position: int, length: int, colour: PlateColour) -> str:
    if position == 0:
        return PROVINCES
    if position == 1:
        return LETTERS
    if position == length - 1 and length == 7:
        return LAST_CHARACTER[colour]
    return LETTERS + DIGITS
