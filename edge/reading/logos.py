"""Company words on a person: the courier's jacket or the box he carries names the company outright.

Text is searched in the person's box (torso and what he holds), each line recognised, and a line
counts for a company when it contains one of the company's words, with at most one character
misread in words of four characters or more. A courier in a black jacket is then told apart from a
resident in black by what is printed on him, which colour alone cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gridwatch.edge.reading.engine import TextEngine, rectify

# company (the uniform id of the shipped catalogue, edge/uniforms.yaml) -> the words that name it, the full brand first
COMPANY_WORDS: dict[str, tuple[str, ...]] = {
    "meituan": ("美团外卖", "美团"),
    "eleme": ("饿了么",),
    "sf": ("顺丰速运", "顺丰"),
    "jd": ("京东物流", "京东"),
}
SEARCH_HEIGHT_PX = 448  # the person box is scaled to this height: torso words are then ~20-40 px
MAX_UPSCALE = 4.0
MIN_CONFIDENCE = 0.6


@dataclass(frozen=True)
class WordsRead:
    """What one person crop says: the company it names (or None) and every line read, for the record."""

    company: str | None
    word: str | None
    confidence: float
    lines: tuple[str, ...] = ()


def company_of(text: str) -> tuple[str, str] | None:
    """(company id, its word) that ``text`` names, allowing one misread character in words of 4+ characters."""
    for company, words in COMPANY_WORDS.items():
        for word in words:
            if word in text or (len(word) >= 4 and _near(word, text)):
                return company, word
    return None


def _near(word: str, text: str) -> bool:
    """True when some window of ``text`` differs from ``word`` in exactly one position."""
    return any(sum(a != b for a, b in zip(word, text[i:i + len(word)], strict=True)) <= 1
               for i in range(len(text) - len(word) + 1))


class WordReader:
    def __init__(self, engine: TextEngine, min_confidence: float = MIN_CONFIDENCE) -> None:
        self.engine, self.min_confidence = engine, min_confidence

    def read(self, image: np.ndarray, person_box: np.ndarray) -> WordsRead:
        x1, y1 = max(0, int(person_box[0])), max(0, int(person_box[1]))
        x2, y2 = min(image.shape[1], round(float(person_box[2]))), min(image.shape[0], round(float(person_box[3])))
        if x2 - x1 < 8 or y2 - y1 < 16:
            return WordsRead(None, None, 0.0)
        crop = image[y1:y2, x1:x2]
        scale = min(MAX_UPSCALE, SEARCH_HEIGHT_PX / crop.shape[0])
        scaled = cv2.resize(crop, None, fx=scale, fy=scale,
                            interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        quads = [q / scale + np.float32([x1, y1]) for q in self.engine.find_lines(scaled)]
        read = self.engine.recognise([rectify(image, q) for q in quads])
        lines = tuple(text for text, _ in read)
        best = WordsRead(None, None, 0.0, lines)
        for text, confidence in read:
            found = company_of(text)
            if found and confidence >= self.min_confidence and confidence > best.confidence:
                best = WordsRead(found[0], found[1], round(confidence, 3), lines)
        return best
