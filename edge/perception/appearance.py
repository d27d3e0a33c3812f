"""Whole-body appearance embeddings from the OSNet re-identification model (never a face).

OSNet describes clothing and build, which is what a uniform is and what tells a returning person
from a new one; it runs on the person box, so no face embedding is ever computed or stored.

The network is fully convolutional up to a global average pool, so it runs at any input size;
the shipped export fixes 256x128, so the session loads a copy whose height and width are symbolic
(derived once into the model cache, never committed). Callers choose the size: re-identification
keeps the trained 256x128, while uniform recognition runs at ``UNIFORM_SIZE``, where OSNet x0.25
costs ~5.4 ms instead of ~14 ms per crop on one core (``python -m bench overhead``) and still
separates the enrolled vest (``python -m bench uniforms``).
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from gridwatch.edge.perception.detect import create_session
from gridwatch.models.derived import any_size_model
from gridwatch.models.resolver import resolve_model

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
UNIFORM_SIZE = (128, 64)  # height, width for uniform recognition: a quarter of the trained input's pixels


class AppearanceEmbedder:
    """BGR person crops in, L2-normalised 512-d vectors out (cosine similarity = dot product)."""

    def __init__(self, model: str = "osnet_x0_25_msmt17", threads: int = 1) -> None:
        resolved = resolve_model(model)
        self.size: tuple[int, int] = tuple(resolved.spec.input_size)  # the trained height, width
        self.session: ort.InferenceSession = create_session(any_size_model(resolved.path),
                                                            ("CPUExecutionProvider",), threads)
        self.input_name = self.session.get_inputs()[0].name

    def embed(self, crops: list[np.ndarray], size: tuple[int, int] | None = None) -> np.ndarray:
        """Embed crops resized to ``size`` (height, width; default the trained 256x128)."""
        if not crops:
            return np.zeros((0, 512), np.float32)
        height, width = size or self.size
        batch = np.stack([
            ((cv2.cvtColor(cv2.resize(c, (width, height)), cv2.COLOR_BGR2RGB) / 255.0 - MEAN) / STD)
            .transpose(2, 0, 1) for c in crops
        ]).astype(np.float32)
        vectors = self.session.run(None, {self.input_name: batch})[0]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
