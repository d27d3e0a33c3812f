"""A vehicle's plate, found and read inside its box, or "unreadable".

Locating: text detection on the lower part of the vehicle box only (where plates are on cars seen
from behind or in front), at a size where a plate's characters are large enough for the detector;
a text line is a plate candidate when its aspect is a plate's and its background has a plate
colour. Reading: the recogniser on each candidate's strip, cut from the frame at full resolution,
and the result kept only when it fits the mainland format and the colour. Several frames of one
incident are voted on character by character (:class:`PlateVote`): each position's probabilities are
averaged over the frames, so a character one frame saw clearly and another blurred still counts; a
number that is not clear over at least two frames is not reported, and when the first three leave it
undecided, up to two more are read (:func:`read_voted`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from gridwatch.edge.reading.engine import Quad, TextEngine, aspect, rectify
from gridwatch.edge.reading.plate_decode import (
    RED_TAIL_SHARE,
    Evidence,
    decide,
    evidence,
    plate_segments,
    province_indices,
)
from gridwatch.edge.reading.plate_format import PlateColour, background_colour, fits_colour, normalise

SEARCH_BAND_Y = 0.3      # the plate is below this share of the box's height (from its top)
SEARCH_WIDTH_PX = 384    # the searched band is scaled to this width: a plate is then ~25-30 px high
MAX_UPSCALE = 4.0        # a tiny box is not blown up further: nothing legible is in it
PLATE_ASPECT = (2.0, 7.0)  # width / height of a plate's text line, turned up to ±30°
MIN_CONFIDENCE = 0.5     # the weakest character's probability below which a read is a guess
MIN_PLATE_HEIGHT_PX = 9  # a text line lower than this in the frame is not read (no pixels to read)
UNREADABLE = "unreadable"
CTC_STEP_PX = 8           # the recogniser emits one time step per 8 columns of its 48 px high input
PROVINCE_WIDEN = 1.8      # a plate's province character is ~half as wide as high; print is square
RED_CHARACTER_SHARE = 0.2  # a white plate's red last character: a sixth of the plate, plus its gap
STRIP_MARGIN = 0.0        # of the text line's width, each side, added before recognition (measured: none is best)
FIRST_VOTE_FRAMES = 3     # frames read and voted on first ...
MAX_VOTE_FRAMES = 5       # ... and up to this many when those leave the number undecided (small plates)
# The whole strip is stretched sideways before recognition: plate characters are half as wide as high,
# print (what the recogniser learnt) about square. Measured on 160 cached 20-36 px plates (4 seeds):
# 1.0 -> 45 % / 73 % exact after the vote at 20-28 / 28-36 px, 1.3 -> 47 / 76, 1.6 -> 51 / 79, 2.0 -> 38 / 76.
STRIP_WIDEN = 1.6
STRIP_GROW = 0.1          # of the text line's height, on every side, kept around it for the recogniser
RED_HUES = (10, 170)      # OpenCV hues at or below the first, or at or above the second, are red


@dataclass(frozen=True)
class PlateRead:
    """One frame's reading of one vehicle's plate; ``plate`` is None when nothing trustworthy was read."""

    plate: str | None
    confidence: float
    colour: PlateColour | None
    quad: Quad | None = None  # where the plate is, in the frame's pixels
    raw: str = ""             # what the recogniser said, for the record
    # what the strip said per character, for the vote over frames (none when no plate-like strip was read)
    evidence: Evidence | None = field(default=None, compare=False, repr=False)

    @property
    def readable(self) -> bool:
        return self.plate is not None


NOTHING = PlateRead(None, 0.0, None)


@dataclass(frozen=True)
class _Candidate:
    quad: Quad        # in the frame
    colour: PlateColour


class PlateReader:
    def __init__(self, engine: TextEngine, min_confidence: float = MIN_CONFIDENCE) -> None:
        self.engine, self.min_confidence = engine, min_confidence

    def locate(self, image: np.ndarray, vehicle_box: np.ndarray) -> list[_Candidate]:
        """Text lines inside the lower part of ``vehicle_box`` that have a plate's shape and colour."""
        x1, y1, x2, y2 = (float(v) for v in vehicle_box)
        top = y1 + SEARCH_BAND_Y * (y2 - y1)
        bx1, by1 = max(0, int(x1)), max(0, int(top))
        bx2, by2 = min(image.shape[1], round(x2)), min(image.shape[0], round(y2))
        if bx2 - bx1 < 8 or by2 - by1 < 8:
            return []
        band = image[by1:by2, bx1:bx2]
        scale = min(MAX_UPSCALE, SEARCH_WIDTH_PX / band.shape[1])
        scaled = cv2.resize(band, None, fx=scale, fy=scale,
                            interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        found = []
        for quad in self.engine.find_lines(scaled):
            in_frame = quad / scale + np.float32([bx1, by1])
            height = (np.linalg.norm(in_frame[3] - in_frame[0]) + np.linalg.norm(in_frame[2] - in_frame[1])) / 2
            if not PLATE_ASPECT[0] <= aspect(quad) <= PLATE_ASPECT[1] or height < MIN_PLATE_HEIGHT_PX:
                continue
            colour = background_colour(rectify(image, _grown(in_frame, 0.15)))
            if colour is not None:
                found.append(_Candidate(in_frame, colour))
        return found

    def read(self, image: np.ndarray, vehicle_box: np.ndarray) -> PlateRead:
        """The plate of the vehicle in ``vehicle_box`` in this frame, or an unreadable read."""
        candidates = self.locate(image, vehicle_box)
        if not candidates:
            return NOTHING
        best = NOTHING
        alphabet = self.engine.alphabet()
        for candidate in candidates:
            strip_quad = _widened(_grown(candidate.quad, STRIP_GROW), STRIP_MARGIN, STRIP_MARGIN)
            seen = self._evidence(image, strip_quad, candidate.colour, alphabet)
            if seen is None and candidate.colour is PlateColour.WHITE:
                # the red class character (警) at the end of a white plate is often left out of the text line
                seen = self._evidence(image, _widened(strip_quad, 0.0, RED_CHARACTER_SHARE), candidate.colour,
                                      alphabet)
            if seen is None:
                continue
            read = self.judged([seen], alphabet, candidate.quad)
            if (read.readable, read.confidence) > (best.readable, best.confidence) or best.evidence is None:
                best = read
        return best

    def judged(self, readings: Sequence[Evidence], alphabet: list[str], quad: Quad | None) -> PlateRead:
        """The plate ``readings`` (of one strip, or of several frames) decide on, or an unreadable read."""
        text, confidence, colour = decide(readings, alphabet)
        plate = normalise(text) if text else None
        if plate is not None and (colour is None or not fits_colour(plate, colour)):
            plate = None
        return PlateRead(plate if confidence >= self.min_confidence else None, round(confidence, 3), colour, quad,
                         text or "", readings[0] if len(readings) == 1 else None)

    def _evidence(self, image: np.ndarray, quad: Quad, colour: PlateColour, alphabet: list[str]) -> Evidence | None:
        """What the recogniser reads per character on the strip ``quad``; None when it holds no plate's count."""
        strip = rectify(image, quad)
        strip = cv2.resize(strip, None, fx=STRIP_WIDEN, fy=1.0, interpolation=cv2.INTER_CUBIC)
        probabilities = self.engine.probabilities(strip)
        segments = plate_segments(probabilities, alphabet)
        red_tail = 1.0
        if segments is None and colour is PlateColour.WHITE:
            segments = plate_segments(probabilities, alphabet, lengths=(6,))
            red_tail = _red_tail(strip, segments) if segments is not None else 0.0
            if red_tail < RED_TAIL_SHARE:
                return None
        if segments is None:
            return None
        height = float(np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
        seen = evidence(probabilities, alphabet, segments, colour, self._province(strip, segments, alphabet),
                        height, red_tail)
        if colour is PlateColour.WHITE and len(segments) == 7:
            # the 7th character is the red 警, which the recogniser often takes for 号, 置 or 张: its colour says so
            red = min(1.0, _red_tail(strip, segments[:6]) / (2 * RED_TAIL_SHARE))
            seen = replace(seen, scores=(*seen.scores[:6], np.maximum(seen.scores[6], red)))
        return seen

    def _province(self, strip: np.ndarray, segments: list[list[int]], alphabet: list[str]) -> np.ndarray | None:
        """The first character read again on its own, at a normal glyph's proportions.

        Plates paint characters half as wide as they are high; the recogniser, trained on print,
        takes a squeezed, blurred province character for its most common one (皖). Cut out and
        widened to a square (the strip is already widened by ``STRIP_WIDEN``), it is a second opinion."""
        end = segments[1][0] * CTC_STEP_PX - CTC_STEP_PX
        if end < 8:
            return None
        glyph = cv2.resize(strip[:, :end], None, fx=max(1.0, PROVINCE_WIDEN / STRIP_WIDEN), fy=1.0,
                           interpolation=cv2.INTER_CUBIC)
        glyph = cv2.copyMakeBorder(glyph, 0, 0, 12, 12, cv2.BORDER_REPLICATE)
        probabilities = self.engine.probabilities(glyph)
        return probabilities[:, province_indices(alphabet)].max(axis=0)


def _red_tail(strip: np.ndarray, segments: list[list[int]]) -> float:
    """The share of red pixels right of the last character read: a white plate's red 警, which the recogniser,
    trained on black print, often reads as nothing at all when it is small and blurred."""
    tail = strip[:, (segments[-1][-1] + 1) * CTC_STEP_PX:]
    if tail.shape[1] < 4:
        return 0.0
    hsv = cv2.cvtColor(tail, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    red = ((hue <= RED_HUES[0]) | (hue >= RED_HUES[1])) & (sat >= 70) & (val >= 50)
    return float(red.mean())


def _widened(quad: Quad, left: float, right: float) -> Quad:
    """``quad`` extended by ``left`` and ``right`` shares of its width, along its own top and bottom edges."""
    out = quad.copy()
    out[0] = quad[0] - (quad[1] - quad[0]) * left
    out[3] = quad[3] - (quad[2] - quad[3]) * left
    out[1] = quad[1] + (quad[1] - quad[0]) * right
    out[2] = quad[2] + (quad[2] - quad[3]) * right
    return out


def _grown(quad: Quad, share: float) -> Quad:
    """``quad`` grown by ``share`` of its height on every side: the plate's background around its characters."""
    centre = quad.mean(axis=0)
    height = (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    direction = quad - centre
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    return (quad + direction / np.maximum(norms, 1e-6) * share * height).astype(np.float32)


class PlateVote:
    """Reads of one vehicle over several frames, decided character by character.

    Each frame's evidence (per position, the probability of each character allowed there) is averaged
    over the frames that read a plate-like strip (:func:`~gridwatch.edge.reading.plate_decode.decide`):
    a character one frame saw clearly and another blurred still counts, and on a small plate the
    province's two readings are joined over all frames. At least ``min_votes`` frames must have read the
    strip and more than half of them must agree on its colour and length: one lucky (or wrong) frame is
    never the answer, and the number must still pass the reader's confidence."""

    def __init__(self, reader: PlateReader, min_votes: int = 2) -> None:
        self.reader, self.min_votes = reader, min_votes
        self.reads: list[PlateRead] = []

    def add(self, read: PlateRead) -> None:
        self.reads.append(read)

    def result(self) -> PlateRead:
        seen = [r for r in self.reads if r.evidence is not None]
        if not seen:
            return NOTHING
        raw = ",".join(sorted({r.plate or r.raw for r in seen}))
        if len(seen) < self.min_votes:
            return PlateRead(None, 0.0, None, raw=raw)
        best = max(seen, key=lambda r: (r.readable, r.confidence))
        voted = self.reader.judged([r.evidence for r in seen if r.evidence is not None],
                                   self.reader.engine.alphabet(), best.quad)
        return PlateRead(voted.plate, voted.confidence, voted.colour, best.quad, raw) if voted.readable \
            else PlateRead(None, 0.0, None, raw=raw)


def read_voted(reader: PlateReader, crops: Sequence[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[PlateRead, list[tuple[PlateRead, np.ndarray]]]:
    """The vote over the first :data:`FIRST_VOTE_FRAMES` of ``crops`` (image, vehicle box), and when that
    leaves the number undecided, over one more at a time up to :data:`MAX_VOTE_FRAMES`; with every read made.

    On a small plate the province character is often left open by one frame and clear in the next (noise,
    compression): more frames turn "unreadable" into a number without lowering the bar a number must pass.
    A plate read at once costs no more than before."""
    vote = PlateVote(reader, min_votes=min(2, len(crops)))
    reads: list[tuple[PlateRead, np.ndarray]] = []
    for image, box in crops[:MAX_VOTE_FRAMES]:
        read = reader.read(image, box)
        vote.add(read)
        reads.append((read, image))
        if len(reads) >= FIRST_VOTE_FRAMES and vote.result().readable:
            break
    return vote.result(), reads
