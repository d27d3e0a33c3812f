"""Object detection with an ONNX model through onnxruntime, behind one small interface.

``OnnxDetector.detect_many(frames)`` is all the rest of the edge sees. The output layout (YOLOX or
YOLOv8/YOLO11, see ``layouts``) comes from the manifest and is checked against the model's output
shape; the session is created once per node and shared by every camera. Boxes come back in
source-frame pixels.

The canvas follows each camera's aspect ratio at a pixel budget instead of one square for all: a
16:9 frame fills only 56 % of a square, and on MOT17-mini 384x672 reaches person AP50 0.58 where
416x416 reaches 0.39 (``python -m bench accuracy``). The session runs a copy of the model with
symbolic height and width, YOLOX's Focus stem folded into one convolution and its SPP pools chained
(8-9 % less inference time, same outputs), and the graph onnxruntime optimised is saved once into the model cache
(``gridwatch.models.derived``).

Threads are set on purpose: an edge box has few cores, and onnxruntime by default spins a thread
per core waiting for work, which steals the CPU that video decoding needs. So intra-op threads are
explicit, spinning is off, and parallelism comes from several inferences running at once on the
one session (``run`` is thread-safe), which scales better than more threads for a nano model.

Score thresholds are per class and, like the canvas, may be named per frame: a camera whose rules
count some classes from a lower score (an overhead fire lane, ``score_floors``) passes its own
(``thresholds_for``), so one shared session serves it and its neighbours keep the node's thresholds.
Non-maximum suppression is greedy by score, so adding lower-scored candidates never changes which
boxes above the node's thresholds are kept.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from gridwatch.broker.zones import Rule, score_floors
from gridwatch.edge.config import DEFAULT_CANVAS_PIXELS
from gridwatch.edge.perception.layouts import (
    LAYOUTS,
    STRIDE,
    Layout,
    Letterbox,
    canvas_size,
    detect_layout,
    letterbox,
    make_layout,
)
from gridwatch.models.derived import any_size_model, optimised_model


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


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def optimised_graph(model_path: Path, providers: tuple[str, ...]) -> Path:
    """The model with onnxruntime's graph optimisations already applied, saved once into the model cache.

    Saved at the extended level (fusions, constant folding), which is portable; the layout
    transforms fitted to this CPU (NCHWc) are applied at every load, which is quick. A cache that
    cannot be written just means optimising at every start, as before."""
    try:
        saved, ready = optimised_model(model_path, ort.__version__, providers)
    except OSError:
        return model_path
    if not ready:
        options = _options(1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        partial = saved.with_name(f"{saved.name}.{os.getpid()}.{threading.get_ident()}.partial")  # cameras race
        options.optimized_model_filepath = str(partial)
        ort.InferenceSession(str(model_path), options, providers=list(providers))
        partial.replace(saved)
    return saved


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
    return ort.InferenceSession(str(optimised_graph(model_path, providers)), _options(threads),
                                providers=list(providers))


class OnnxDetector:
    """One shared session; each frame is letterboxed onto a canvas that follows its own aspect ratio.

    The canvas is ``input_size`` when one is pinned, else the frame's aspect in multiples of 32 at
    about ``pixels`` (``layouts.canvas_size``); a caller may name a canvas per frame (a camera's own
    setting). The session loads a copy of the model with symbolic height and width, so any canvas runs.
    ``as_exported`` runs the file as exported instead (its own fixed input size, no derived copy): the
    416x416 node as it was, which ``bench accuracy`` measures every canvas against.
    """

    def __init__(
        self,
        model_path: Path,
        class_names: tuple[str, ...],
        input_size: tuple[int, int] | None = None,
        confidence: float = 0.3,
        class_confidence: dict[str, float] | None = None,
        nms_iou: float = 0.45,
        threads: int = 1,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        layout: str | None = None,
        pixels: int = DEFAULT_CANVAS_PIXELS,
        as_exported: bool = False,
    ) -> None:
        if input_size is not None and (len(input_size) != 2 or any(d < STRIDE or d % STRIDE for d in input_size)):
            raise DetectorError(f"detector.input_size: {tuple(input_size)} is not (height, width) "
                                f"in multiples of {STRIDE}")
        self.session = create_session(model_path if as_exported else any_size_model(model_path), providers, threads)
        self.input_name = self.session.get_inputs()[0].name
        if as_exported and (input_size is None or list(input_size) != self.session.get_inputs()[0].shape[2:]):
            raise DetectorError(f"detector.input_size: the model as exported takes only "
                                f"{self.session.get_inputs()[0].shape[2:]}, not {input_size}")
        self.dynamic_batch = not isinstance(self.session.get_inputs()[0].shape[0], int)
        found = detect_layout(self.session.get_outputs()[0].shape, len(class_names))
        if layout is not None and layout not in LAYOUTS:
            raise DetectorError(f"detector: unknown output layout {layout!r} (known: {', '.join(LAYOUTS)})")
        if layout and found and layout != found:
            raise DetectorError(f"detector.classes: the model's output shape is the {found} layout for "
                                f"{len(class_names)} classes, but the manifest says {layout}")
        if not (layout or found):
            raise DetectorError(f"detector.classes: output shape {self.session.get_outputs()[0].shape} fits "
                                f"no known layout with {len(class_names)} classes")
        self.layout_name = layout or found
        self._layouts: dict[tuple[int, int], Layout] = {}
        self.class_names = class_names
        self.input_size = tuple(input_size) if input_size is not None else None
        self.pixels = pixels
        self.nms_iou = nms_iou
        self.thresholds = np.full(len(class_names), confidence, dtype=np.float32)
        for name, value in (class_confidence or {}).items():
            if name not in class_names:
                raise DetectorError(f"detector.class_confidence.{name}: not a class of this model")
            self.thresholds[class_names.index(name)] = value
        self.installer_set = frozenset(class_confidence or ())
        self._lock = threading.Lock()
        self.inferences = 0
        self.inference_ms_total = 0.0
        self.last_inference_ms = 0.0

    @property
    def layout(self) -> Layout:
        """The output layout at the pinned input size (or at the canvas of a 16:9 frame)."""
        return self.layout_for(self.input_size or canvas_size((1080, 1920), self.pixels))

    def layout_for(self, canvas: tuple[int, int]) -> Layout:
        with self._lock:  # the YOLOX grid of each canvas is built once; cameras share them
            if canvas not in self._layouts:
                self._layouts[canvas] = make_layout(self.layout_name, canvas)
            return self._layouts[canvas]

    def canvas_for(self, frame_hw: tuple[int, int], input_size: tuple[int, int] | None = None,
                   pixels: int | None = None) -> tuple[int, int]:
        """The canvas for a frame: a camera's pinned size, else its budget, else the node's pin, else its budget."""
        if input_size is not None:
            return tuple(input_size)
        if pixels is None and self.input_size is not None:
            return self.input_size
        return canvas_size(frame_hw, pixels or self.pixels)

    def class_id(self, name: str) -> int:
        return self.class_names.index(name)

    def thresholds_for(self, rules: Iterable[Rule]) -> np.ndarray:
        """Per-class thresholds for a camera with these rules: the node's, lowered to a rule's own floor
        (``score_floors``) but never raised, and never for a class the installer set in class_confidence."""
        thresholds = self.thresholds.copy()
        for rule in rules:
            for name, floor in score_floors(rule).items():
                if name not in self.installer_set:
                    index = self.class_id(name)
                    thresholds[index] = min(thresholds[index], floor)
        return thresholds

    def detect(self, frame: np.ndarray, canvas: tuple[int, int] | None = None,
               thresholds: np.ndarray | None = None) -> Detections:
        return self.detect_many([frame], None if canvas is None else [canvas],
                                None if thresholds is None else [thresholds])[0]

    def detect_many(self, frames: list[np.ndarray], canvases: list[tuple[int, int]] | None = None,
                    thresholds: list[np.ndarray] | None = None) -> list[Detections]:
        """Detect on several frames (each on its canvas, default ``canvas_for`` its shape, and with its
        per-class thresholds, default the node's): frames that share a canvas go in one batched run if
        the model's batch axis is dynamic, else one run each."""
        canvases = canvases or [self.canvas_for(f.shape[:2]) for f in frames]
        thresholds = thresholds or [self.thresholds] * len(frames)
        results: list[Detections | None] = [None] * len(frames)
        for canvas in dict.fromkeys(canvases):
            layout = self.layout_for(canvas)
            same = [i for i, c in enumerate(canvases) if c == canvas]
            placed = {i: letterbox(frames[i], canvas, layout.centre) for i in same}
            for group in [same] if self.dynamic_batch else [[i] for i in same]:
                blob = layout.blob([placed[i][0] for i in group])
                started = time.perf_counter()
                raw = self.session.run(None, {self.input_name: blob})[0]
                self._count((time.perf_counter() - started) * 1000.0, len(group))
                for k, i in enumerate(group):
                    results[i] = self._decode(layout, raw[k], placed[i][1], frames[i].shape[:2], thresholds[i])
        return results

    def _count(self, elapsed_ms: float, images: int) -> None:
        with self._lock:
            self.inferences += images
            self.inference_ms_total += elapsed_ms
            self.last_inference_ms = elapsed_ms / images

    def _decode(self, layout: Layout, raw: np.ndarray, placement: Letterbox, frame_hw: tuple[int, int],
                thresholds: np.ndarray) -> Detections:
        boxes, scores, class_ids = layout.candidates(raw, thresholds)
        if not len(scores):
            return Detections.empty()
        boxes = (boxes - [placement.pad_x, placement.pad_y, placement.pad_x, placement.pad_y]) / placement.scale
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame_hw[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame_hw[0])
        xywh = np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), 1)
        kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), 0.0, self.nms_iou)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        return Detections(boxes[kept].astype(np.float32), scores[kept].astype(np.float32), class_ids[kept])
