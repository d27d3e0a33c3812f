"""Whole-body appearance embeddings from the OSNet re-identification model (never a face).

OSNet describes clothing and build, which is what a uniform is and what tells a returning person
from a new one; it runs on the person box, so no face embedding is ever computed or stored.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

from gridwatch.edge.perception.detect import create_session
from gridwatch.models.resolver import resolve_model

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class AppearanceEmbedder:
    """BGR person crops in, L2-normalised 512-d vectors out (cosine similarity = dot product)."""

    def __init__(self, model: str = "osnet_x0_25_msmt17", threads: int = 1) -> None:
        resolved = resolve_model(model)
        self.height, self.width = resolved.spec.input_size
        self.session: ort.InferenceSession = create_session(resolved.path, ("CPUExecutionProvider",), threads)
        self.input_name = self.session.get_inputs()[0].name

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, 512), np.float32)
        batch = np.stack([
            ((cv2.cvtColor(cv2.resize(c, (self.width, self.height)), cv2.COLOR_BGR2RGB) / 255.0 - MEAN) / STD)
            .transpose(2, 0, 1) for c in crops
        ]).astype(np.float32)
        vectors = self.session.run(None, {self.input_name: batch})[0]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
