"""Output layouts of the ONNX detectors we run, and how each one is fed and decoded.

Two families cover the detectors that matter on edge boxes:

* ``yolox``: 1 x N x (4 + 1 + C) raw grid offsets over strides 8/16/32 (exported without the decode
  step), objectness times class score, fed BGR 0-255 letterboxed into the top-left with pad 114;
* ``yolov8`` (also YOLO11): 1 x (4 + C) x N boxes already decoded to (cx, cy, w, h) input pixels, no
  objectness, fed RGB 0-1 letterboxed into the centre with pad 114.

Each layout returns candidate boxes in model-input pixels; thresholds and NMS are shared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

STRIDES = (8, 16, 32)
STRIDE = STRIDES[-1]  # a canvas side must be a multiple of the coarsest stride
PAD_VALUE = 114
LAYOUTS = ("yolox", "yolov8")


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed on the model's canvas, to map boxes back to frame pixels."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(frame: np.ndarray, size: tuple[int, int], centre: bool = False) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect onto a (h, w) canvas of grey 114; return the HWC uint8 canvas and the placement."""
    height, width = size
    scale = min(height / frame.shape[0], width / frame.shape[1])
    new_w, new_h = round(frame.shape[1] * scale), round(frame.shape[0] * scale)
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = ((width - new_w) // 2, (height - new_h) // 2) if centre else (0, 0)
    canvas = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    canvas[pad_y: pad_y + new_h, pad_x: pad_x + new_w] = resized
    return canvas, Letterbox(scale, float(pad_x), float(pad_y))


def canvas_size(frame_hw: tuple[int, int], pixels: int) -> tuple[int, int]:
    """The (h, w) canvas, multiples of ``STRIDE``, that follows the frame's aspect at about ``pixels``.

    A square canvas wastes nearly half its pixels on grey pad for a 16:9 camera; matching the aspect
    spends them on the scene. Never larger than the frame: upscaling costs time and adds no detail."""
    height, width = frame_hw
    scale = min(1.0, math.sqrt(pixels / (height * width)))
    return (max(STRIDE, round(height * scale / STRIDE) * STRIDE), max(STRIDE, round(width * scale / STRIDE) * STRIDE))


def detect_layout(output_shape: list, num_classes: int) -> str | None:
    """Name the layout from the output tensor's shape, or None when the shape cannot tell."""
    dims = [d if isinstance(d, int) else -1 for d in output_shape]
    if len(dims) != 3:
        return None
    if dims[2] == 5 + num_classes:
        return "yolox"
    if dims[1] == 4 + num_classes:
        return "yolov8"
    return None


class YoloxLayout:
    """Raw YOLOX head: decode grid offsets, score = objectness x class probability."""

    name = "yolox"
    centre = False

    def __init__(self, input_size: tuple[int, int]) -> None:
        grids, strides = [], []
        for stride in STRIDES:
            rows, cols = input_size[0] // stride, input_size[1] // stride
            xv, yv = np.meshgrid(np.arange(cols), np.arange(rows))
            grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
            strides.append(np.full((rows * cols, 1), stride))
        self.grids = np.concatenate(grids).astype(np.float32)
        self.strides = np.concatenate(strides).astype(np.float32)

    @staticmethod
    def blob(canvases: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.stack(canvases).transpose(0, 3, 1, 2), dtype=np.float32)

    def candidates(self, raw: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's output (N x 5+C) -> boxes (x1 y1 x2 y2, input px), scores, class ids above threshold.

        Class probabilities are at most 1, so a score never exceeds its objectness: anchors whose
        objectness is below every threshold (nearly all 3549 of them) are dropped before the
        N x C product, which was most of the decoding time."""
        hopeful = np.flatnonzero(raw[:, 4] >= thresholds.min())
        raw = raw[hopeful]
        class_scores = raw[:, 5:] * raw[:, 4:5]
        class_ids = class_scores.argmax(1)
        scores = class_scores[np.arange(len(class_ids)), class_ids]
        keep = scores >= thresholds[class_ids]
        raw, anchors = raw[keep], hopeful[keep]
        centres = (raw[:, :2] + self.grids[anchors]) * self.strides[anchors]
        sizes = np.exp(raw[:, 2:4]) * self.strides[anchors]
        return np.concatenate((centres - sizes / 2, centres + sizes / 2), 1), scores[keep], class_ids[keep]


class Yolov8Layout:
    """Ultralytics YOLOv8 / YOLO11 head: (cx, cy, w, h) in input pixels, then C class scores."""

    name = "yolov8"
    centre = True

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.input_size = input_size

    @staticmethod
    def blob(canvases: list[np.ndarray]) -> np.ndarray:
        rgb = np.stack(canvases)[..., ::-1]
        return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)

    def candidates(self, raw: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's output ((4+C) x N) -> boxes (x1 y1 x2 y2, input px), scores, class ids above threshold."""
        raw = raw.T
        class_scores = raw[:, 4:]
        class_ids = class_scores.argmax(1)
        scores = class_scores[np.arange(len(class_ids)), class_ids]
        keep = scores >= thresholds[class_ids]
        centres, sizes = raw[keep, :2], raw[keep, 2:4]
        return np.concatenate((centres - sizes / 2, centres + sizes / 2), 1), scores[keep], class_ids[keep]


Layout = YoloxLayout | Yolov8Layout


def make_layout(name: str, input_size: tuple[int, int]) -> Layout:
    return {"yolox": YoloxLayout, "yolov8": Yolov8Layout}[name](input_size)
