"""Object detection with an ONNX model through onnxruntime, behind one small interface.

``OnnxDetector.detect_many(frames)`` is all the rest of the edge sees. The output layout (YOLOX or
YOLOv8/YOLO11, see ``layouts``) comes from the manifest and is checked against the model's output
shape; the session is created once per node and shared by every camera. Boxes come back in
source-frame pixels.

Threads are set on purpose: an edge box has few cores, and onnxruntime by default spins a thread
per core waiting for work, which steals the CPU that video decoding needs. So intra-op threads are
explicit, spinning is off, and parallelism comes from several inferences running at once on the
one session (``run`` is thread-safe), which scales better than more threads for a nano model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from gridwatch.edge.perception.layouts import LAYOUTS, Letterbox, detect_layout, letterbox, make_layout


class DetectorError(ValueError):
    """A detector setting that cannot work with this model or this onnxruntime; names the field."""


@dataclass(frozen=True)
class Detections:
    """Boxes (N x 4, x1 y1 x2 y2 in frame pixels), scores (N) and class ids (N)."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def create_session(model_path: Path, providers: tuple[str, ...], threads: int) -> ort.InferenceSession:
    """An onnxruntime session on the requested providers, or a DetectorError saying what is missing."""
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise DetectorError(
            f"detector.providers: {', '.join(missing)} not available in this onnxruntime "
            f"(available: {', '.join(available)}); install the matching build "
            "(onnxruntime-gpu for CUDA/TensorRT, onnxruntime-openvino for OpenVINO) or use [cpu]"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), options, providers=list(providers))


class OnnxDetector:
    """One shared session; ``detect_many`` runs one batch when the model's batch axis is dynamic."""

    def __init__(
        self,
        model_path: Path,
        class_names: tuple[str, ...],
        input_size: tuple[int, int] = (416, 416),
        confidence: float = 0.3,
        class_confidence: dict[str, float] | None = None,
        nms_iou: float = 0.45,
        threads: int = 1,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        layout: str | None = None,
    ) -> None:
        self.session = create_session(model_path, providers, threads)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        fixed = [d for d in model_input.shape[2:] if isinstance(d, int)]
        if len(fixed) == 2 and tuple(fixed) != tuple(input_size):
            raise DetectorError(f"detector.input_size: the model takes {tuple(fixed)} (height, width), "
                                f"not {tuple(input_size)}")
        self.dynamic_batch = not isinstance(model_input.shape[0], int)
        found = detect_layout(self.session.get_outputs()[0].shape, len(class_names))
        if layout is not None and layout not in LAYOUTS:
            raise DetectorError(f"detector: unknown output layout {layout!r} (known: {', '.join(LAYOUTS)})")
        if layout and found and layout != found:
            raise DetectorError(f"detector.classes: the model's output shape is the {found} layout for "
                                f"{len(class_names)} classes, but the manifest says {layout}")
        if not (layout or found):
            raise DetectorError(f"detector.classes: output shape {self.session.get_outputs()[0].shape} fits "
                                f"no known layout with {len(class_names)} classes")
        self.layout = make_layout(layout or found, input_size)
        self.class_names = class_names
        self.input_size = input_size
        self.nms_iou = nms_iou
        self.thresholds = np.full(len(class_names), confidence, dtype=np.float32)
        for name, value in (class_confidence or {}).items():
            if name not in class_names:
                raise DetectorError(f"detector.class_confidence.{name}: not a class of this model")
            self.thresholds[class_names.index(name)] = value
        self._lock = threading.Lock()
        self.inferences = 0
        self.inference_ms_total = 0.0
        self.last_inference_ms = 0.0

    def class_id(self, name: str) -> int:
        return self.class_names.index(name)

    def detect(self, frame: np.ndarray) -> Detections:
        return self.detect_many([frame])[0]

    def detect_many(self, frames: list[np.ndarray]) -> list[Detections]:
        """Detect on several frames: one batched run if the model allows it, else one run each."""
        placed = [letterbox(f, self.input_size, self.layout.centre) for f in frames]
        groups = [list(range(len(frames)))] if self.dynamic_batch else [[i] for i in range(len(frames))]
        results: list[Detections] = []
        for group in groups:
            blob = self.layout.blob([placed[i][0] for i in group])
            started = time.perf_counter()
            raw = self.session.run(None, {self.input_name: blob})[0]
            self._count((time.perf_counter() - started) * 1000.0, len(group))
            results += [self._decode(raw[k], placed[i][1], frames[i].shape[:2]) for k, i in enumerate(group)]
        return results

    def _count(self, elapsed_ms: float, images: int) -> None:
        with self._lock:
            self.inferences += images
            self.inference_ms_total += elapsed_ms
            self.last_inference_ms = elapsed_ms / images

    def _decode(self, raw: np.ndarray, placement: Letterbox, frame_hw: tuple[int, int]) -> Detections:
        boxes, scores, class_ids = self.layout.candidates(raw, self.thresholds)
        if not len(scores):
            return Detections.empty()
        boxes = (boxes - [placement.pad_x, placement.pad_y, placement.pad_x, placement.pad_y]) / placement.scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame_hw[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame_hw[0])
        xywh = np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), 1)
        kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), 0.0, self.nms_iou)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        return Detections(boxes[kept].astype(np.float32), scores[kept].astype(np.float32), class_ids[kept])
