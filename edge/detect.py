"""Object detection with the YOLOX ONNX model through onnxruntime.

YOLOX was exported without its decode step, so the model returns raw grid offsets; we letterbox
exactly as YOLOX trained (top-left, pad 114, BGR 0-255), decode over strides 8/16/32 and run
class-aware NMS. Boxes come back in source-frame pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

STRIDES = (8, 16, 32)
PAD_VALUE = 114


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


def letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping aspect into the top-left of a (h, w) canvas; return NCHW float32 and the scale."""
    height, width = size
    scale = min(height / frame.shape[0], width / frame.shape[1])
    resized = cv2.resize(
        frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)), interpolation=cv2.INTER_LINEAR
    )
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
    return blob, scale


def yolox_grids(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell origins and strides for every anchor point, in the model's output order."""
    grids, strides = [], []
    for stride in STRIDES:
        rows, cols = size[0] // stride, size[1] // stride
        xv, yv = np.meshgrid(np.arange(cols), np.arange(rows))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((rows * cols, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


class YoloxDetector:
    """One onnxruntime session; thread counts are set explicitly because edge boxes are small."""

    def __init__(
        self,
        model_path: Path,
        class_names: tuple[str, ...],
        input_size: tuple[int, int] = (416, 416),
        confidence: float = 0.3,
        class_confidence: dict[str, float] | None = None,
        nms_iou: float = 0.45,
        threads: int = 1,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.class_names = class_names
        self.input_size = input_size
        self.nms_iou = nms_iou
        self.thresholds = np.full(len(class_names), confidence, dtype=np.float32)
        for name, value in (class_confidence or {}).items():
            self.thresholds[class_names.index(name)] = value
        self.grids, self.strides = yolox_grids(input_size)
        self.last_inference_ms = 0.0

    def class_id(self, name: str) -> int:
        return self.class_names.index(name)

    def detect(self, frame: np.ndarray) -> Detections:
        blob, scale = letterbox(frame, self.input_size)
        started = time.perf_counter()
        raw = self.session.run(None, {self.input_name: blob})[0][0]
        self.last_inference_ms = (time.perf_counter() - started) * 1000.0
        return self._decode(raw, scale, frame.shape[:2])

    def _decode(self, raw: np.ndarray, scale: float, frame_hw: tuple[int, int]) -> Detections:
        class_scores = raw[:, 5:] * raw[:, 4:5]
        class_ids = class_scores.argmax(1)
        scores = class_scores[np.arange(len(class_ids)), class_ids]
        keep = scores >= self.thresholds[class_ids]
        if not keep.any():
            return Detections.empty()
        raw, scores, class_ids = raw[keep], scores[keep], class_ids[keep]
        centres = (raw[:, :2] + self.grids[keep]) * self.strides[keep]
        sizes = np.exp(raw[:, 2:4]) * self.strides[keep]
        boxes = np.concatenate((centres - sizes / 2, centres + sizes / 2), 1) / scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame_hw[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame_hw[0])
        xywh = np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), 1)
        kept = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), class_ids.tolist(), 0.0, self.nms_iou
        )
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        return Detections(boxes[kept].astype(np.float32), scores[kept].astype(np.float32), class_ids[kept])
