"""Issue 23, acceptance 3: the company's printed words as a gate factor, on real frames of the worker clip.

A real frame of worker-zone-detection.gif (at twice its size), the person the detector finds in it, his
jacket painted black at run time (an unbranded black jacket, which colour cannot tell from a resident's),
a signed rider QR code held at his hand (tests/test_rules_gate_code.py), and in some cases a company's
words printed across his chest with Noto Sans CJK. The courier rule sees him over several detections
(fresh noise each) with the policy ``factors: [words, code]`` for ``sf``: he is allowed only with 顺丰速运
and the code, refused in plain black (``no_words``) and with another company's words; the event lists
every factor and what was read.
"""

from __future__ import annotations

import functools
import threading
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.plate_render import COMPANY_PRINT, paste, render_text_patch
from gridwatch.broker.zones import CourierRule
from gridwatch.edge.config import catalogue
from gridwatch.edge.perception.track import Track
from gridwatch.edge.perception.uniforms import UniformMatcher
from gridwatch.edge.reading.logos import WordReader
from gridwatch.edge.rules.courier import CourierDetector, CourierLog
from gridwatch.edge.rules.gate_policy import issue_code
from tests.test_rules_courier import NOON, courier_config
from tests.test_rules_gate_code import SECRET, UPSCALE, qr_image, render

pytest.importorskip("rapidocr_onnxruntime")

WORD_WIDTH_OF_TORSO = 0.95  # a chest print spans the jacket
FRAME = 10                  # the worker walks into view, whole and upright


@functools.cache
def worker_frame(samples: Path) -> tuple[np.ndarray, np.ndarray]:
    from gridwatch.edge.node import runner

    capture = cv2.VideoCapture(str(samples / "worker-zone-detection.gif"))
    for _ in range(FRAME + 1):
        ok, image = capture.read()
        assert ok
    image = cv2.resize(image, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_LINEAR)
    found = runner.build_detector(courier_config(Path("unused"))).detect(image)
    people = found.boxes[(found.class_ids == 0) & (found.scores > 0.5)]
    assert len(people) == 1
    return image, people[0]


def dressed(samples: Path, word: str | None, payload: str) -> tuple[np.ndarray, np.ndarray]:
    """The worker in a black jacket, ``word`` printed on his chest, the code at his hand."""
    image, box = worker_frame(samples)
    image = image.copy()
    x1, y1, x2, y2 = (float(v) for v in box)
    left, right = int(x1 + 0.2 * (x2 - x1)), int(x1 + 0.8 * (x2 - x1))
    top, bottom = int(y1 + 0.2 * (y2 - y1)), int(y1 + 0.68 * (y2 - y1))
    image[top:bottom, left:right] = (image[top:bottom, left:right] * 0.15).astype(np.uint8)
    if word is not None:
        ink, background = COMPANY_PRINT[word]
        patch = render_text_patch(word, 60, ink, background)
        scale = WORD_WIDTH_OF_TORSO * (right - left) / patch.shape[1]
        paste(image, cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
              ((left + right) / 2, y1 + 0.38 * (y2 - y1)))
    image = render(image, qr_image(payload), (x2, y1 + 0.62 * (y2 - y1)), 100, tilt=0.15)
    return image, box


def gate_rule() -> CourierRule:
    return CourierRule.model_validate({"type": "courier", "uniforms": ["hivis"], "gate": {
        "gate_id": "gate-north", "allowed": ["sf"], "factors": ["words", "code"]}})


def run(image: np.ndarray, box: np.ndarray, detections: int = 12, paced: bool = False) -> list:
    """The rule over ``detections`` frames fed as fast as they come (a replay: readings still pending at the
    end are waited for by ``finish``), or ``paced`` like a live camera whose reading keeps up with it."""
    rule = gate_rule()
    detector = CourierDetector("gate", rule, UniformMatcher([catalogue()["hivis"]]), lambda s: NOON + timedelta(
        seconds=s), CourierLog())
    rng = np.random.default_rng(23)
    events = []
    for n in range(detections):  # each detection a new frame: sensor noise, the box jittering
        noisy = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
        jitter = box + rng.normal(0, 1.5, 4).astype(np.float32)
        events += detector.update(n * 0.2, [Track(1, jitter, "person", 0.9)], noisy)
        if paced:
            assert detector.words is not None
            detector.words.wait_idle(30)  # the time between two frames, in which the worker reads
    return events + detector.finish(detections * 0.2)


@pytest.mark.parametrize(("word", "decision", "factor_words", "read"), [
    ("顺丰速运", "allowed", "passed", ("顺丰速运", "顺丰")),
    (None, "no_words", "no_words", ("",)),
    ("美团外卖", "company_not_allowed", "company_not_allowed", ("美团外卖", "美团")),
])
def test_a_courier_in_black_passes_only_with_the_company_s_words_and_the_code(
        samples: Path, monkeypatch, word: str | None, decision: str, factor_words: str, read: tuple[str, ...]) -> None:
    monkeypatch.setenv("GRIDWATCH_GATE_CODE_SECRET", SECRET)
    image, box = dressed(samples, word, issue_code("sf", NOON + timedelta(minutes=5), SECRET))
    starts = [e for e in run(image, box) if e.phase.value == "start"]
    assert len(starts) == 1, starts
    attributes = starts[0].attributes
    assert (attributes["gate_decision"], attributes["factor_words"], attributes["factor_code"]) == (
        decision, factor_words, "passed"), attributes
    assert attributes["factors_passed"] == ("words,code" if decision == "allowed" else "code")
    assert attributes["words_read"] in read, attributes


def test_a_resident_in_black_with_nothing_to_show_is_nobody_s_business(samples: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRIDWATCH_GATE_CODE_SECRET", SECRET)
    image, box = worker_frame(samples)
    plain = image.copy()
    x1, y1, x2, y2 = (int(v) for v in box)
    plain[y1:y2, x1:x2] = (plain[y1:y2, x1:x2] * 0.3).astype(np.uint8)
    assert run(plain, box) == []


def test_the_words_are_read_off_the_camera_thread_and_decide_the_entry_a_few_frames_later(
        samples: Path, monkeypatch) -> None:
    """The camera's thread only hands the person's box over; the reading happens on the worker's thread,
    and with a camera the reading keeps up with, the entry is decided during the stream, not at its end."""
    monkeypatch.setenv("GRIDWATCH_GATE_CODE_SECRET", SECRET)
    readers: list[str] = []
    read = WordReader.read

    def spied(self: WordReader, *args: object) -> object:
        readers.append(threading.current_thread().name)
        return read(self, *args)

    monkeypatch.setattr(WordReader, "read", spied)
    image, box = dressed(samples, "顺丰速运", issue_code("sf", NOON + timedelta(minutes=5), SECRET))
    events = run(image, box, paced=True)
    starts = [e for e in events if e.phase.value == "start"]
    assert len(starts) == 1 and starts[0].attributes["gate_decision"] == "allowed", events
    assert 0.2 <= starts[0].observed_s < 12 * 0.2, "decided on a later frame of the stream, once the words were read"
    assert readers and threading.current_thread().name not in readers, readers
