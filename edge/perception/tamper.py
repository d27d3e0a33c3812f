"""Camera tamper: covered, badly defocused or turned away, judged against the camera's own reference.

A few seconds into a stream the camera's view is stored (downscaled grey). Every
``check_every_s`` the current view is compared with it:

* covered: almost no texture left (grey-level spread collapses, as under a hand, tape or spray);
* defocused: the edge energy (variance of the Laplacian) falls to a small share of the reference's;
* turned away: the edge layout no longer correlates with the reference's.

Only a view that stays wrong for ``after_s`` is reported (a person walking past the lens is not
tampering), and the incident ends when the view is right again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import cv2
import numpy as np

from gridwatch.edge.config import Tamper

WIDTH = 160
COVERED_STD = 0.2         # grey spread below this share of the reference's
DEFOCUSED_SHARPNESS = 0.15  # Laplacian variance below this share of the reference's
MOVED_CORRELATION = 0.25  # edge-map correlation with the reference below this (cars passing: > 0.3 in a few s)


@dataclass(frozen=True)
class View:
    grey: np.ndarray
    edges: np.ndarray
    spread: float
    sharpness: float


def view_of(image: np.ndarray) -> View:
    height = max(1, round(image.shape[0] * WIDTH / image.shape[1]))
    grey = cv2.cvtColor(cv2.resize(image, (WIDTH, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    grey = grey.astype(np.float32)
    edges = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return View(grey, edges, float(grey.std()), float(cv2.Laplacian(grey, cv2.CV_32F).var()))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / denominator if denominator > 0 else 0.0


def diagnose(reference: View, current: View) -> str | None:
    """The tamper reason for this view, or None when it looks like the reference."""
    if current.spread < COVERED_STD * reference.spread:
        return "covered"
    if current.sharpness < DEFOCUSED_SHARPNESS * reference.sharpness:
        return "defocused"
    if correlation(reference.edges, current.edges) < MOVED_CORRELATION:
        return "moved"
    return None


@dataclass(frozen=True)
class TamperChange:
    """An incident phase: ``start`` with the reason, or ``end`` when the view is back."""

    phase: str
    incident_id: str
    reason: str
    since_s: float


class TamperCheck:
    def __init__(self, settings: Tamper) -> None:
        self.settings = settings
        self.first_s: float | None = None
        self.reference: View | None = None
        self.next_check_s = 0.0
        self.wrong_since: float | None = None
        self.reason: str | None = None
        self.incident_id: str | None = None

    def update(self, image: np.ndarray, now_s: float) -> TamperChange | None:
        if not self.settings.enabled or now_s < self.next_check_s:
            return None
        self.next_check_s = now_s + self.settings.check_every_s
        if self.first_s is None:
            self.first_s = now_s
        if self.reference is None:
            if now_s - self.first_s >= self.settings.reference_after_s:
                self.reference = view_of(image)
            return None
        reason = diagnose(self.reference, view_of(image))
        if reason is None:
            self.wrong_since, self.reason = None, None
            if self.incident_id is not None:
                ended, self.incident_id = self.incident_id, None
                return TamperChange("end", ended, "", now_s)
            return None
        if self.wrong_since is None:
            self.wrong_since = now_s
        self.reason = reason
        if self.incident_id is None and now_s - self.wrong_since >= self.settings.after_s:
            self.incident_id = uuid.uuid4().hex
            return TamperChange("start", self.incident_id, reason, self.wrong_since)
        return None
