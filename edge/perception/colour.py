"""Colour that survives dusk and street lamps: the frame's illuminant removed, chroma apart from lightness.

A gate camera sees the same jacket at 40 % brightness under a sodium lamp and at noon under an
overcast sky. Absolute HSV thresholds move with both, so nothing here compares absolute values:

* ``normalise`` divides each channel by the frame's own grey-world estimate (the mean of its
  less colourful mid-tones), which removes the brightness scale and a colour temperature shift at once
  (von Kries adaptation);
* ``chroma_histogram`` describes a torso by the hue angle and chroma of its pixels in CIE Lab,
  ignoring lightness, with one "neutral" bin for black, white and grey pixels, whose hue is noise;
* ``colour_share`` is the colour-only cue for a catalogue uniform: the share of torso pixels whose
  Lab hue lies within a tolerance of the uniform's reference colour and whose chroma is strong.
"""

from __future__ import annotations

import cv2
import numpy as np

from gridwatch.edge.config import reference_lab

GREY_TARGET = 0.45          # the normalised frame's channel means (of 1.0)
HUE_BINS = 12               # 30 degree sectors of the Lab hue circle
NEUTRAL_CHROMA = 12.0       # below this Lab chroma a pixel is black/white/grey: its hue is noise
STRONG_CHROMA = 30.0        # chroma above which a hue sector's pixels go to the "strong" half
DESCRIPTOR_SIZE = 1 + 2 * HUE_BINS


def illuminant(frame: np.ndarray) -> np.ndarray:
    """The frame's grey-world illuminant (B, G, R means) from a downscaled copy.

    Only the less colourful 70 % of mid-tone pixels count: a courier close to the camera can fill a
    third of the frame, and his jacket must not be mistaken for the light's colour."""
    small = cv2.resize(frame, (64, 36), interpolation=cv2.INTER_AREA).reshape(-1, 3).astype(np.float32)
    level = small.mean(axis=1)
    spread = small.max(axis=1) - small.min(axis=1)
    saturation = spread / np.maximum(small.max(axis=1), 1.0)
    keep = ((level >= np.percentile(level, 5)) & (level <= np.percentile(level, 95))  # no clipped lights, shadows
            & (saturation <= np.percentile(saturation, 70)))
    means = (small[keep] if keep.sum() >= 16 else small).mean(axis=0)
    return np.maximum(means, 1.0)


def normalise(image: np.ndarray, light: np.ndarray) -> np.ndarray:
    """``image`` (BGR uint8, e.g. a crop of the frame) as float 0..1 under a neutral illuminant.

    A pixel brighter than the range is scaled down as a whole rather than clipped per channel, so a
    vivid vest in a dark scene keeps its hue (clipping red alone would turn orange into yellow)."""
    scaled = image.astype(np.float32) * (GREY_TARGET / light)
    peak = scaled.max(axis=-1, keepdims=True) if scaled.size else scaled
    return scaled / np.maximum(peak, 1.0)


def lab_chroma(normalised: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel Lab hue angle (degrees 0..360) and chroma of a normalised BGR image.

    Computed once per torso and handed to both descriptors below: the Lab conversion is the
    costliest step of a person that never reaches OSNet. A degenerate (empty) crop has no pixels."""
    if normalised.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    lab = cv2.cvtColor(normalised, cv2.COLOR_BGR2Lab).reshape(-1, 3)
    a, b = lab[:, 1], lab[:, 2]
    return np.degrees(np.arctan2(b, a)) % 360.0, np.hypot(a, b)


def chroma_histogram(hue: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """The torso (``lab_chroma`` of it) as a lightness-free colour histogram: [neutral, hue sectors x
    (weak, strong)], sum 1."""
    if hue.size == 0:
        return np.zeros(DESCRIPTOR_SIZE, np.float32)
    sector = (hue / (360.0 / HUE_BINS)).astype(np.int64) % HUE_BINS
    index = np.where(chroma < NEUTRAL_CHROMA, 0, 1 + 2 * sector + (chroma >= STRONG_CHROMA))
    histogram = np.bincount(index, minlength=DESCRIPTOR_SIZE).astype(np.float32)
    return histogram / max(float(histogram.sum()), 1.0)


def colour_share(hue: np.ndarray, chroma: np.ndarray, hex_colour: str, hue_tolerance: float) -> float:
    """Share of the torso's pixels (``lab_chroma`` of it) within ``hue_tolerance`` degrees of the
    reference hue, strongly coloured."""
    if hue.size == 0:
        return 0.0
    reference, reference_chroma, _ = reference_lab(hex_colour)
    distance = np.abs((hue - reference + 180.0) % 360.0 - 180.0)
    return float(((distance <= hue_tolerance) & (chroma >= max(STRONG_CHROMA, 0.4 * reference_chroma))).mean())
