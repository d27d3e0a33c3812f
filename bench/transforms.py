"""What a gate camera does to a uniform: the image transforms ``python -m bench uniforms`` replays.

Each transform acts on the whole frame (the illuminant estimate needs the scene): brightness
0.4-1.2 (dusk to a bright noon), colour temperature (warm sodium/LED street lamps, cold white LEDs),
JPEG at quality 30-90, a slight defocus blur and sensor noise. Seeds are fixed so runs compare.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]

# Channel gains (B, G, R): a warm lamp starves blue, a cold LED starves red.
WARM_LAMP = (0.55, 0.80, 1.00)
WARM_DUSK = (0.45, 0.70, 1.00)
COLD_LED = (1.00, 0.90, 0.70)


def brightness(factor: float) -> Transform:
    return lambda image: np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def tint(gains: tuple[float, float, float], factor: float = 1.0) -> Transform:
    scale = np.array(gains, np.float32) * factor
    return lambda image: np.clip(image.astype(np.float32) * scale, 0, 255).astype(np.uint8)


def jpeg(quality: int) -> Transform:
    def apply(image: np.ndarray) -> np.ndarray:
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    return apply


def blur(sigma: float) -> Transform:
    return lambda image: cv2.GaussianBlur(image, (0, 0), sigma)


def noise(sigma: float, seed: int = 15) -> Transform:
    def apply(image: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.clip(image.astype(np.float32) + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
    return apply


def chain(*steps: Transform) -> Transform:
    def apply(image: np.ndarray) -> np.ndarray:
        for step in steps:
            image = step(image)
        return image
    return apply


TRANSFORMS: dict[str, Transform] = {
    **{f"brightness {b:.1f}": brightness(b) for b in (0.4, 0.5, 0.6, 0.8, 1.0, 1.2)},
    "warm lamp": tint(WARM_LAMP),
    "warm lamp 0.5": tint(WARM_LAMP, 0.5),
    "warm dusk 0.4": tint(WARM_DUSK, 0.4),
    "cold LED": tint(COLD_LED),
    "cold LED 0.5": tint(COLD_LED, 0.5),
    **{f"jpeg q{q}": jpeg(q) for q in (30, 60, 90)},
    "blur 1.0": blur(1.0),
    "noise 8": noise(8.0),
    "dusk 0.5 + jpeg q40 + noise": chain(brightness(0.5), noise(6.0), jpeg(40)),
}
