"""Reading a plate strip under the plate's own grammar: constrained CTC decoding of the recogniser's output.

The recogniser chooses freely among ~6600 characters, and on a plate 20 px high it takes a
province character for a look-alike that is none (宁 → 皖沪, 黑 → 闽) or a stain for '#'. Here
each time step only competes among characters a plate can hold; the characters are cut where the
model changes its mind, then each position's evidence is kept: the probability of each character
that may stand there (a province first, then a letter, then letters and digits, a class character
last). :func:`decide` turns the evidence of one strip, or of several frames of one car, into a
number: per position the character with the highest mean probability, the confidence the weakest
position's. One doubtful character makes a doubtful plate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from gridwatch.edge.reading.plate_format import CLASS_CHARACTERS, DIGITS, LETTERS, PROVINCES, PlateColour

PLATE_ALPHABET = PROVINCES + LETTERS + DIGITS + CLASS_CHARACTERS
SEPARATORS = "·•・.．-—_:："  # painted or imagined between the letter and the number: not a character
# What the last of 7 characters may be, by plate colour (white: police; yellow: driving schools, trailers)
LAST_CHARACTER = {PlateColour.WHITE: "警", PlateColour.YELLOW: LETTERS + DIGITS + "学挂",
                  PlateColour.BLUE: LETTERS + DIGITS, PlateColour.GREEN: LETTERS + DIGITS}
# Strips lower than this (plates under ~46 px): the province must be clear when its two readings are joined.
STRICT_BELOW_PX = 36
# The share the joined province readings must give one province on a strict strip. Measured over 2 x 48 plates a
# bucket (bench plates, seeds 23 and 7, vote of 3-5 frames): demanding that both readings name the same province
# read 22 + 21 of 96 plates at 20-28 px with 1 wrong; joined, 0.8 read 25 + 27 with 2 wrong, 0.9 25 + 25 with 1.
PROVINCE_POSTERIOR = 0.9
RED_TAIL_SHARE = 0.08     # of the columns after a white plate's 6th character: red ink there is its 警
_FLOOR = 1e-4             # a probability the recogniser gives as 0 is "very unlikely", not "impossible"


@dataclass(frozen=True)
class Evidence:
    """One strip's reading of a plate, before any decision: per position, the probability of each character
    allowed there (the best over that position's time steps), in the order of :func:`allowed_indices`."""

    colour: PlateColour
    scores: tuple[np.ndarray, ...]
    province: np.ndarray | None  # the first character read again on its own (over :func:`province_indices`)
    height: float                # of the strip in the frame, px: small strips are judged strictly
    red_tail: float = 1.0        # a white plate read as 6 characters: the red share after them (its 警)

    @property
    def length(self) -> int:
        return len(self.scores)


@cache
def _indices(alphabet: tuple[str, ...], allowed: str) -> np.ndarray:
    where = {character: index for index, character in enumerate(alphabet)}
    return np.array(sorted(where[c] for c in allowed if c in where), np.int64)


def allowed_indices(alphabet: list[str], position: int, length: int, colour: PlateColour) -> np.ndarray:
    """The class indices of the characters that may stand at ``position`` of a ``length``-character plate."""
    return _indices(tuple(alphabet), _allowed_at(position, length, colour))


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


def evidence(probabilities: np.ndarray, alphabet: list[str], segments: list[list[int]], colour: PlateColour,
             province: np.ndarray | None, height: float, red_tail: float = 1.0) -> Evidence:
    """What a strip's T x classes ``probabilities`` say about each of the plate's ``segments``."""
    scores = tuple(probabilities[steps][:, allowed_indices(alphabet, position, len(segments), colour)].max(axis=0)
                   for position, steps in enumerate(segments))
    return Evidence(colour, scores, province, height, red_tail)


def decide(readings: Sequence[Evidence], alphabet: list[str]) -> tuple[str | None, float, PlateColour | None]:
    """(text, confidence, plate colour) from one or more readings of the same plate (one strip, or one per frame).

    The readings of the most common colour and length count, when they are more than half; each position is
    the character with the highest mean probability, the confidence the weakest position's mean. The first
    character has two readings, the strip's and the glyph's alone: they are joined as independent opinions
    (the product of their probabilities), so that the strip's favourite province (皖) does not outvote a glyph
    read clearly, nor a glyph's stray guess a strip read clearly. On a small strip a province the joined
    opinion does not give :data:`PROVINCE_POSTERIOR` makes the confidence 0: unreadable rather than a guess.
    Text and colour are None when no group of readings holds a plate's number of characters."""
    if not readings:
        return None, 0.0, None
    (colour, length), count = Counter((r.colour, r.length) for r in readings).most_common(1)[0]
    if count * 2 <= len(readings):
        return None, 0.0, None
    group = [r for r in readings if (r.colour, r.length) == (colour, length)]
    glyphs = [r.province for r in group if r.province is not None]
    text, weakest = "", 1.0
    for position in range(length):
        choices = allowed_indices(alphabet, position, length, colour)
        mean = np.mean([r.scores[position] for r in group], axis=0)
        pick = int(mean.argmax())
        confidence = float(mean[pick])
        if position == 0 and glyphs and len(choices) == len(glyphs[0]):
            joined = _normalised(np.mean([_normalised(r.scores[0]) for r in group], axis=0)
                                 * np.mean([_normalised(g) for g in glyphs], axis=0))
            pick = int(joined.argmax())
            confidence = max(float(mean[pick]), float(np.mean(glyphs, axis=0)[pick]))
            if np.median([r.height for r in group]) < STRICT_BELOW_PX and joined[pick] < PROVINCE_POSTERIOR:
                confidence = 0.0  # the two readings of the hardest character leave it open: a guess, not a read
        text += alphabet[choices[pick]]
        weakest = min(weakest, confidence)
    if length == 6:  # a white plate's red 警 the recogniser left out, seen by its colour
        text += "警"
        weakest = min(weakest, float(np.mean([r.red_tail for r in group])) / (2 * RED_TAIL_SHARE))
    return text, weakest, colour


def province_indices(alphabet: list[str]) -> np.ndarray:
    """The class indices of the province characters the recogniser knows."""
    return _indices(tuple(alphabet), PROVINCES)


def _normalised(scores: np.ndarray) -> np.ndarray:
    floored = scores + _FLOOR
    return floored / floored.sum()


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
