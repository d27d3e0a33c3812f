"""Reading plates (issue 23): the mainland format, plate colours, the vote, and the reader on real car frames
with plates rendered at run time (``bench/plate_render.py``), which reads big plates and invents none."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bench.common import sampled_frames
from bench.detector import detector_for
from bench.plate_render import plate_scene, random_plate, render_plate
from gridwatch.edge.reading.engine import TextEngine
from gridwatch.edge.reading.plate_decode import Evidence, allowed_indices
from gridwatch.edge.reading.plate_format import PlateColour, background_colour, display, normalise
from gridwatch.edge.reading.plates import PlateRead, PlateReader, PlateVote

pytest.importorskip("rapidocr_onnxruntime")


@pytest.mark.parametrize(("text", "plate"), [
    ("京A·D12345", "京AD12345"), ("苏C 8M7K2", "苏C8M7K2"), ("粤B-1O23I", "粤B10231"), ("鲁K9252警", "鲁K9252警"),
    ("京A1234", None), ("京O12345", None), ("A京12345", None), ("港A12345", None), ("京A123456789", None),
])
def test_the_mainland_format(text: str, plate: str | None) -> None:
    assert normalise(text) == plate


def test_a_plate_is_displayed_with_its_dot() -> None:
    assert display("京AD12345") == "京A·D12345"


@pytest.mark.parametrize("colour", list(PlateColour))
def test_each_plate_colour_is_recognised_in_light_and_at_dusk(colour: PlateColour) -> None:
    face = render_plate(random_plate(np.random.default_rng(1), colour), colour, 48)
    assert background_colour(face) is colour
    assert background_colour((face * 0.45).astype(np.uint8)) is colour


def _seen(plate: str, certainty: float = 0.9) -> PlateRead:
    """A blue plate's reading as one frame's strip would give it: each character at ``certainty``."""
    alphabet = _reader().engine.alphabet()
    scores = []
    for position, character in enumerate(plate):
        choices = [alphabet[i] for i in allowed_indices(alphabet, position, len(plate), PlateColour.BLUE)]
        row = np.full(len(choices), (1 - certainty) / (len(choices) - 1), np.float32)
        row[choices.index(character)] = certainty
        scores.append(row)
    return PlateRead(plate, certainty, PlateColour.BLUE,
                     evidence=Evidence(PlateColour.BLUE, tuple(scores), scores[0].copy(), height=40.0))


def test_the_vote_needs_agreement() -> None:
    vote = PlateVote(_reader())
    vote.add(_seen("京A12345"))
    assert not vote.result().readable, "one frame alone is not enough"
    vote.add(_seen("京A12346"))
    assert not vote.result().readable, "two frames that disagree are not a plate"
    vote.add(_seen("京A12345"))
    assert vote.result().plate == "京A12345"


def test_the_vote_is_per_character() -> None:
    """Three frames, each unsure of a different character (so none is a read alone), sure of the rest:
    over the frames every character is clear, and the number is read."""
    vote = PlateVote(_reader())
    for lost in (2, 4, 6):
        scores = [s.copy() for s in _seen("京A12345").evidence.scores]
        scores[lost] = np.full_like(scores[lost], 1 / len(scores[lost]))
        frame = _reader().judged([Evidence(PlateColour.BLUE, tuple(scores), scores[0], 40.0)],
                                 _reader().engine.alphabet(), None)
        assert not frame.readable, "one frame's doubtful character makes it no read"
        vote.add(frame)
    result = vote.result()
    assert (result.plate, result.colour) == ("京A12345", PlateColour.BLUE)
    assert result.confidence == pytest.approx((2 * 0.9 + 1 / 34) / 3, abs=0.002)


def test_a_small_plate_s_province_must_be_clear() -> None:
    """A province the strip reads at 0.6 and the glyph alone leaves open: a guess on a strip under 36 px
    (unreadable), a read on a larger one."""
    read = _seen("京A12345")
    province = read.evidence.scores[0] * 0 + 0.4 / (len(read.evidence.scores[0]) - 1)
    province[read.evidence.scores[0].argmax()] = 0.6
    open_glyph = np.full_like(province, 1 / len(province))
    scores = (province, *read.evidence.scores[1:])
    alphabet = _reader().engine.alphabet()
    assert not _reader().judged([Evidence(read.colour, scores, open_glyph, height=20.0)], alphabet, None).readable
    assert _reader().judged([Evidence(read.colour, scores, open_glyph, height=40.0)], alphabet, None).plate == \
        "京A12345"


@functools.cache
def _cars() -> list[tuple[np.ndarray, np.ndarray]]:
    detector = detector_for(1)
    found = []
    frames = sampled_frames("car-detection.mp4", 5.0) + sampled_frames("person-bicycle-car-detection.gif", 5.0)
    for frame in frames:
        detections = detector.detect(frame)
        found += [(frame, box) for box, c in zip(detections.boxes, detections.class_ids, strict=True)
                  if detector.class_names[c] in ("car", "truck", "bus")]
    return found


@functools.cache
def _reader() -> PlateReader:
    return PlateReader(TextEngine())


@pytest.mark.parametrize("colour", list(PlateColour))
def test_a_large_plate_on_a_real_car_is_read_exactly(colour: PlateColour) -> None:
    rng = np.random.default_rng(23)
    frame, box = max(_cars(), key=lambda car: car[1][3] - car[1][1])
    plate = random_plate(rng, colour)
    scene = plate_scene(frame, box, plate, colour, 40, 15.0, 2.0, rng)
    read = _reader().read(scene.image, scene.vehicle_box)
    assert (read.plate, read.colour) == (plate, colour), read


def test_the_clip_s_own_plates_are_too_small_and_none_is_invented() -> None:
    reads = [_reader().read(frame, box) for frame, box in _cars()]
    assert len(reads) >= 20
    assert [r.plate for r in reads if r.readable] == []


def test_a_plate_too_small_to_read_is_unreadable_not_guessed() -> None:
    rng = np.random.default_rng(5)
    frame, box = max(_cars(), key=lambda car: car[1][3] - car[1][1])
    for colour in PlateColour:
        plate = random_plate(rng, colour)
        scene = plate_scene(frame, box, plate, colour, 9, 20.0, 0.0, rng)
        vote = PlateVote(_reader())
        for _ in range(3):
            vote.add(_reader().read(scene.image, scene.vehicle_box))
        assert vote.result().plate in (None, plate)
