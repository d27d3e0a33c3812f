"""The OCR models: PP-OCRv4 text detection and recognition from the ``rapidocr-onnxruntime`` wheel.

Only the two sessions are used, never the wheel's whole pipeline: that one scales every image up to
736 px on its short side before looking for text (seconds for a vehicle box on a small CPU), where
a plate needs the box at a size chosen for the plate, and recognition needs only the plate strip.
The wheel carries the models, so the reader works offline; it is the ``reading`` extra.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

Quad = np.ndarray  # 4 x 2 float32 corners, clockwise from top-left, in the image's pixels
STRIP_HEIGHT = 48  # the recogniser's input height


class ReaderUnavailable(RuntimeError):
    """The OCR wheel is not installed: the node was asked to read without the ``reading`` extra."""


class TextEngine:
    """One detection and one recognition session, loaded on first use, safe to share between threads."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._lock = threading.Lock()
        self._sessions: tuple[Any, Any] | None = None

    def check(self) -> None:
        """Raise :class:`ReaderUnavailable` now when the OCR wheel is missing (the models load on first use)."""
        import importlib.util

        if importlib.util.find_spec("rapidocr_onnxruntime") is None:
            raise ReaderUnavailable('reading plates needs rapidocr-onnxruntime: pip install "gridwatch[reading]"')

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._sessions is None:
                try:
                    from rapidocr_onnxruntime import RapidOCR
                except ImportError as exc:
                    raise ReaderUnavailable(
                        "reading plates and company words needs rapidocr-onnxruntime: "
                        'pip install "gridwatch[reading]"') from exc
                ocr = RapidOCR(det_limit_type="max", det_limit_side_len=2000, det_box_thresh=0.5,
                               det_unclip_ratio=1.6, intra_op_num_threads=self.threads, inter_op_num_threads=1)
                self._sessions = (ocr.text_det, ocr.text_rec)
            return self._sessions

    def find_lines(self, image: np.ndarray) -> list[Quad]:
        """Text lines in ``image`` (BGR), as quads in its pixels; the image is searched at its own size."""
        detect, _ = self._load()
        quads, _ = detect(image)
        return [] if quads is None else [np.asarray(q, np.float32) for q in quads]

    def recognise(self, strips: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, confidence 0..1) for each rectified, upright text strip (BGR), over the model's whole alphabet."""
        if not strips:
            return []
        _, recognise = self._load()
        results, _ = recognise(strips)
        return [(str(text), float(score)) for text, score, *_ in results]

    def alphabet(self) -> list[str]:
        """The recogniser's characters by class index; index 0 is the CTC blank."""
        _, recognise = self._load()
        return list(recognise.postprocess_op.character)

    def probabilities(self, strip: np.ndarray) -> np.ndarray:
        """Per time step (columns of the strip, left to right), the probability of each class: T x classes.

        For callers that know which characters may stand where (a plate's first one is a province) and
        decode under that constraint, instead of trusting the model's free choice among ~6600."""
        _, recognise = self._load()
        height, width = strip.shape[:2]
        norm = recognise.resize_norm_img(strip, max(width / height, 320 / STRIP_HEIGHT))
        return recognise.session(norm[np.newaxis].astype(np.float32))[0][0]


def rectify(image: np.ndarray, quad: Quad, height: int = STRIP_HEIGHT) -> np.ndarray:
    """The quad's content warped to an upright strip ``height`` px high (its own aspect kept)."""
    top = np.linalg.norm(quad[1] - quad[0])
    left = np.linalg.norm(quad[3] - quad[0])
    if left < 1:
        return np.zeros((height, height, 3), np.uint8)
    width = max(height, round(height * top / left))
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def aspect(quad: Quad) -> float:
    """Width over height of a quad (mean of opposite sides)."""
    width = (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
    height = (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    return float(width / height) if height > 0 else 0.0
