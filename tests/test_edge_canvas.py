"""The detector's canvas follows the camera (issue 22): symbolic model input, decoding on any grid,
per-camera settings, the optimised graph saved once. Real YOLOX-nano inference on real frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from gridwatch.edge.config import ConfigError, parse_config
from gridwatch.edge.perception.detect import DetectorError, OnnxDetector, optimised_graph
from gridwatch.edge.perception.layouts import YoloxLayout, canvas_size, letterbox
from gridwatch.models.derived import any_size_model, optimised_model
from gridwatch.models.focus import fold_focus
from gridwatch.models.resolver import resolve_model
from gridwatch.models.sppf import chain_spp


@pytest.fixture(scope="module")
def model():
    return resolve_model("yolox_nano", allow_download=False)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_canvas_follows_the_aspect_in_multiples_of_32() -> None:
    assert canvas_size((1080, 1920), 384 * 672) == (384, 672)
    assert canvas_size((432, 768), 384 * 672) == (384, 672)
    assert canvas_size((1080, 1920), 352 * 640) == (352, 640)
    assert canvas_size((480, 640), 384 * 672) == (448, 576)      # a 4:3 camera at the same budget
    assert canvas_size((270, 480), 384 * 672) == (256, 480)      # never upscaled past the frame's own size
    for frame in ((1080, 1920), (720, 1280), (1944, 2592), (100, 1000)):
        h, w = canvas_size(frame, 300_000)
        assert h % 32 == 0 and w % 32 == 0 and h * w <= 1.2 * 300_000


def test_the_derived_model_has_symbolic_height_width_and_anchor_rows(model) -> None:
    session = ort.InferenceSession(str(any_size_model(model.path)), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[2:] == ["height", "width"]
    for height, width in ((416, 416), (384, 672), (352, 640)):
        rows = sum((height // s) * (width // s) for s in (8, 16, 32))
        out = session.run(None, {"images": np.zeros((1, 3, height, width), np.float32)})[0]
        assert out.shape == (1, rows, 85)


def kernel(node: onnx.NodeProto) -> list[int]:
    return onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "kernel_shape"))


def test_the_rewritten_graph_gives_the_exported_models_outputs(model, samples: Path) -> None:
    """The derived copy runs one 6x6 stride-2 stem convolution instead of Focus's slices and 3x3 conv,
    and a chain of 5x5 pools instead of SPP's 5/9/13 side by side; its raw output on a real frame is
    the exported model's."""
    derived = onnx.load(str(any_size_model(model.path)))
    assert not [n for n in derived.graph.node if n.op_type == "Slice"]
    stem = derived.graph.node[0]
    assert stem.op_type == "Conv" and stem.input[0] == "images" and kernel(stem) == [6, 6]
    pools = [n for n in derived.graph.node if n.op_type == "MaxPool"]
    assert [kernel(p) for p in pools] == [[5, 5]] * 3
    assert [p.input[0] for p in pools[1:]] == [p.output[0] for p in pools[:2]]
    canvas, _ = letterbox(cv2.imread(str(samples / "dog.jpg")), (416, 416))
    blob = YoloxLayout.blob([canvas])
    providers = ["CPUExecutionProvider"]
    exported = ort.InferenceSession(str(model.path), providers=providers).run(None, {"images": blob})[0]
    folded = ort.InferenceSession(str(any_size_model(model.path)), providers=providers).run(None, {"images": blob})[0]
    np.testing.assert_allclose(folded, exported, rtol=1e-4, atol=2e-4)


def test_a_graph_without_a_focus_stem_or_spp_is_left_alone() -> None:
    osnet = onnx.load(str(resolve_model("osnet_x0_25_msmt17", allow_download=False).path))
    before = osnet.SerializeToString()
    assert not fold_focus(osnet) and not chain_spp(osnet)
    assert osnet.SerializeToString() == before


def test_the_model_as_exported_runs_only_its_own_size(model) -> None:
    exported = OnnxDetector(model.path, model.spec.classes, input_size=(416, 416), as_exported=True)
    assert exported.session.get_inputs()[0].shape == [1, 3, 416, 416]
    with pytest.raises(DetectorError, match="as exported takes only"):
        OnnxDetector(model.path, model.spec.classes, input_size=(384, 672), as_exported=True)


@pytest.mark.parametrize("pixels", [352 * 640, 384 * 672, 448 * 800])
def test_boxes_are_right_on_wide_canvases(model, samples: Path, pixels: int) -> None:
    """dog.jpg (768x576) on aspect canvases: the decoding follows each grid back to frame pixels."""
    detector = OnnxDetector(model.path, model.spec.classes, pixels=pixels)
    image = cv2.imread(str(samples / "dog.jpg"))
    found = detector.detect(image)
    expected = {"dog": [133, 207, 326, 543], "bicycle": [52, 137, 572, 424], "car": [466, 78, 692, 171]}
    for name, box in expected.items():
        mine = found.boxes[found.class_ids == detector.class_id(name)]
        assert max((iou(b, np.array(box, np.float32)) for b in mine), default=0) > 0.8, (pixels, name)


def test_a_camera_canvas_wins_over_the_node_setting(model) -> None:
    detector = OnnxDetector(model.path, model.spec.classes, input_size=(416, 416))
    assert detector.canvas_for((1080, 1920)) == (416, 416)                         # node pin
    assert detector.canvas_for((1080, 1920), pixels=352 * 640) == (352, 640)       # camera budget
    assert detector.canvas_for((1080, 1920), (320, 576), 352 * 640) == (320, 576)  # camera pin
    frames = [np.zeros((432, 768, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)]
    assert [len(d) for d in detector.detect_many(frames, [(384, 672), (448, 576)])] == [0, 0]


def test_canvas_settings_that_cannot_work_name_the_field() -> None:
    base = {"site_id": "s", "node_id": "n", "cameras": [{"id": "c", "source": "0"}]}
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.detector\.input_size: \(360, 640\) is not"):
        parse_config(base | {"cameras": [{"id": "c", "source": "0", "detector": {"input_size": [360, 640]}}]})
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.detector\.pixels"):
        parse_config(base | {"cameras": [{"id": "c", "source": "0", "detector": {"pixels": 100}}]})
    with pytest.raises(ConfigError, match=r"detector\.input_size"):
        parse_config(base | {"detector": {"input_size": [416, 400]}})


def test_the_optimised_graph_is_saved_once_and_changes_nothing(model, samples: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDWATCH_CACHE", str(tmp_path))
    providers = ("CPUExecutionProvider",)
    source = any_size_model(model.path)
    saved = optimised_graph(source, providers)
    assert saved.parent == tmp_path / "models" / "derived" and saved.is_file()
    stamp = saved.stat().st_mtime_ns
    assert optimised_graph(source, providers) == saved and saved.stat().st_mtime_ns == stamp  # not rebuilt
    assert optimised_model(source, ort.__version__, providers) == (saved, True)
    image = cv2.imread(str(samples / "dog.jpg"))
    blob = np.zeros((1, 3, 384, 672), np.float32)
    blob[0, :, :, :] = cv2.resize(image, (672, 384)).transpose(2, 0, 1)
    plain = ort.InferenceSession(str(source), providers=list(providers)).run(None, {"images": blob})[0]
    loaded = ort.InferenceSession(str(saved), providers=list(providers)).run(None, {"images": blob})[0]
    np.testing.assert_allclose(loaded, plain, rtol=1e-4, atol=1e-4)
