"""Enrolment: a uniform profile from a few photos, for an installer who does not write HSV by hand.

Each photo is a person in the uniform (cropped to the person, roughly). The torso's strongly
coloured pixels give the dominant hue; the range is widened until it holds most of them, and the
saturation/value floors are their low percentiles. ``min_fraction`` is set to half the share the
photos themselves reach, so a courier seen at an angle or half occluded still passes. The photos
are kept as ``examples``: at run time the OSNet prototype built from them is the second cue.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gridwatch.edge.config import ColourRange, Uniform
from gridwatch.edge.perception.uniforms import colour_fraction, load_image, torso

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIVID = (80, 80)        # saturation and value above which a pixel carries a uniform's colour
HUE_COVER = 0.8         # share of vivid torso pixels the hue range must hold
MIN_FRACTION_SHARE = 0.5


def example_images(directory: Path) -> list[Path]:
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"--images {directory}: no .jpg/.png photos found")
    return paths


def _hue_range(hues: np.ndarray) -> tuple[int, int]:
    """The narrowest circular hue window around the histogram peak holding HUE_COVER of the pixels."""
    histogram = np.bincount(hues, minlength=180).astype(float)
    peak = int(np.argmax(np.convolve(np.tile(histogram, 3), np.ones(5), "same")[180:360]))
    total, low, high, held = histogram.sum(), peak, peak, histogram[peak]
    while held < HUE_COVER * total and high - low < 178:
        left, right = histogram[(low - 1) % 180], histogram[(high + 1) % 180]
        if left >= right:
            low -= 1
            held += left
        else:
            high += 1
            held += right
    return low % 180, high % 180


def enrol(uniform_id: str, names: dict[str, str], paths: list[Path]) -> Uniform:
    """A uniform profile from photos of people wearing it."""
    images = [load_image(p) for p in paths]
    pixels = np.concatenate([
        cv2.cvtColor(torso(img, np.array([0, 0, img.shape[1], img.shape[0]])), cv2.COLOR_BGR2HSV).reshape(-1, 3)
        for img in images])
    vivid = pixels[(pixels[:, 1] >= VIVID[0]) & (pixels[:, 2] >= VIVID[1])]
    if len(vivid) < 0.05 * len(pixels):
        raise ValueError("the photos' torsos have almost no strong colour: colour matching cannot describe "
                         "this uniform (write the profile by hand, e.g. for a black jacket)")
    low, high = _hue_range(vivid[:, 0].astype(np.int64))
    inside = vivid[((vivid[:, 0] >= low) & (vivid[:, 0] <= high)) if low <= high
                   else ((vivid[:, 0] >= low) | (vivid[:, 0] <= high))]
    s_min, v_min = (int(np.percentile(inside[:, k], 5)) for k in (1, 2))
    colour = ColourRange(hsv_min=(low, s_min, v_min), hsv_max=(high, 255, 255))
    draft = Uniform(id=uniform_id, name=names, colors=(colour,), min_fraction=1.0)
    reached = [colour_fraction(torso(img, np.array([0, 0, img.shape[1], img.shape[0]])), draft) for img in images]
    min_fraction = round(max(0.05, MIN_FRACTION_SHARE * float(np.median(reached))), 3)
    return draft.model_copy(update={"min_fraction": min_fraction, "examples": tuple(str(p.resolve()) for p in paths)})
