"""Rule state machines on scripted input: courier overstay, loitering schedule and cap, config errors.

The courier rule is fed synthetic frames in which the person's torso is painted in a colour, so the
real uniform matcher runs; the clip tests cover real footage.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from gridwatch.broker.contract import EventType, Phase
from gridwatch.broker.zones import CourierRule, LoiteringRule
from gridwatch.edge.config import ConfigError, catalogue, parse_config
from gridwatch.edge.perception.track import Track
from gridwatch.edge.perception.uniforms import UniformMatcher
from gridwatch.edge.rules.courier import CourierDetector, CourierLog
from gridwatch.edge.rules.loitering import LoiteringDetector

BOX = np.array([100, 50, 160, 230], np.float32)
ORANGE, GREY = (0, 120, 255), (128, 128, 128)  # BGR


def frame(colour: tuple[int, int, int]) -> np.ndarray:
    image = np.full((270, 480, 3), 60, np.uint8)
    image[50:230, 100:160] = colour
    return image


def person(track_id: int) -> Track:
    return Track(track_id, BOX.copy(), "person", 0.9)


def visit(rule_at, track_id: int, colour, start: float, seconds: float) -> list:
    """A person in ``colour`` seen at 2 detections/s for ``seconds`` (a new Track per detection)."""
    events = []
    for t in np.arange(start, start + seconds, 0.5):
        events += rule_at.update(float(t), [person(track_id)], frame(colour))
    return events


def couriers(overstay_s: float = 60) -> tuple[CourierDetector, CourierDetector]:
    log, matcher = CourierLog(), UniformMatcher([catalogue()["hivis"]])
    clock = lambda s: datetime(2025, 5, 1, 12).astimezone() + timedelta(seconds=s)  # noqa: E731
    entry = CourierDetector("gate-in", CourierRule(type="courier", uniforms=("hivis",), overstay_s=overstay_s),
                            matcher, clock, log)
    exit_ = CourierDetector("gate-out", CourierRule(type="courier", uniforms=("hivis",), direction="exit"),
                            matcher, clock, log)
    return entry, exit_


def idle(rule_at, start: float, end: float) -> list:
    events = []
    for t in np.arange(start, end, 1.0):
        events += rule_at.update(float(t), [], None)
    return events


def test_one_entry_per_courier_and_nobody_in_grey() -> None:
    entry, _ = couriers()
    events = visit(entry, 1, ORANGE, 0, 5) + visit(entry, 2, GREY, 10, 5) + idle(entry, 15, 20)
    assert [(e.type, e.phase) for e in events] == [(EventType.COURIER_ENTRY, Phase.START),
                                                   (EventType.COURIER_ENTRY, Phase.END)]
    assert events[0].attributes["uniform_id"] == "hivis" and events[0].attributes["agreeing"] == 3


def test_overstay_starts_when_not_seen_leaving_and_ends_at_the_exit() -> None:
    entry, exit_ = couriers(overstay_s=60)
    events = visit(entry, 1, ORANGE, 0, 3) + idle(entry, 3, 70)
    overstays = [e for e in events if e.type is EventType.COURIER_OVERSTAY]
    assert [e.phase for e in overstays] == [Phase.START] and 60 <= overstays[0].observed_s <= 62
    assert visit(exit_, 9, ORANGE, 80, 3) == []          # the exit camera sees the courier leave
    ended = idle(entry, 85, 87)
    assert [(e.type, e.phase) for e in ended] == [(EventType.COURIER_OVERSTAY, Phase.END)]
    assert ended[0].incident_id == overstays[0].incident_id
    assert ended[0].attributes["stay_s"] == 81.0  # first seen at 0 s, decided leaving at 81 s


def test_a_courier_who_leaves_in_time_raises_no_overstay() -> None:
    entry, exit_ = couriers(overstay_s=60)
    events = visit(entry, 1, ORANGE, 0, 3) + idle(entry, 3, 30)
    visit(exit_, 9, ORANGE, 30, 3)
    events += idle(entry, 33, 120)
    assert not [e for e in events if e.type is EventType.COURIER_OVERSTAY]


def loiterer(track_id: int = 7) -> Track:
    return Track(track_id, np.array([10, 10, 50, 120], np.float32), "person", 0.9)


def test_loitering_schedule_arms_the_rule_only_at_night() -> None:
    rule = LoiteringRule(type="loitering", min_dwell_s=10, schedule=("22:00-06:00",))
    for hour, alerts in ((23, True), (12, False)):
        origin = datetime(2025, 5, 1, hour).astimezone()
        detector = LoiteringDetector("lobby", rule, lambda s, o=origin: o + timedelta(seconds=s))
        events = [e for t in np.arange(0, 20, 0.5) for e in detector.update(float(t), [loiterer()])]
        assert bool(events) is alerts, hour


def test_loitering_cap_on_repeated_alerts_for_the_same_person() -> None:
    rule = LoiteringRule(type="loitering", min_dwell_s=5, exit_grace_s=1, max_alerts_per_track=1)
    detector, events = LoiteringDetector("lobby", rule), []
    for visit_start in (0, 20, 40):  # the same track comes back twice after leaving
        for t in np.arange(visit_start, visit_start + 10, 0.5):
            events += detector.update(float(t), [loiterer()])
        events += detector.update(visit_start + 15.0, [])
    assert [e.phase for e in events] == [Phase.START, Phase.END]


BASE = {"site_id": "s", "node_id": "n", "cameras": [{"id": "c", "source": "x", "zones": [{
    "id": "z", "polygon": [[0, 0], [1, 0], [1, 1]], "rules": []}]}]}


@pytest.mark.parametrize(("rule", "message"), [
    ({"type": "courier", "uniforms": ["nosuch"]}, "cameras[0].zones[0].rules[0]: unknown uniform(s) ['nosuch']"),
    ({"type": "loitering", "min_dwell_s": 5, "schedule": ["22-06"]},
     "cameras[0].zones[0].rules[0].schedule: time window '22-06' is not 'HH:MM-HH:MM'"),
    ({"type": "fire_lane", "min_stationary_s": 0}, "cameras[0].zones[0].rules[0].min_stationary_s:"),
    ({"type": "courier", "uniforms": ["jd"], "direction": "exit", "overstay_s": 60},
     "gate and overstay_s belong to an entry rule"),
])
def test_config_errors_name_the_field(rule: dict, message: str) -> None:
    config = {**BASE, "cameras": [{**BASE["cameras"][0], "zones": [{**BASE["cameras"][0]["zones"][0],
                                                                      "rules": [rule]}]}]}
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert message in str(error.value)


def test_a_config_uniform_is_validated_field_by_field() -> None:
    config = {**BASE, "uniforms": [{"id": "vest", "name": {"en": "Vest"}, "colours": ["orange"]}]}
    with pytest.raises(ConfigError, match=r"uniforms\[0\]\.colours\[0\]: .*pattern"):
        parse_config(config)
    config = {**BASE, "uniforms": [{"id": "coat", "name": {"en": "Coat"}, "colours": ["#141414"]}]}
    with pytest.raises(ConfigError, match=r"uniforms\[0\]: .*near-black"):
        parse_config(config)


RED_ORANGE, VEST_ORANGE, JD_RED = (30, 80, 240), (0, 120, 255), (30, 30, 220)  # BGR: Lab hue ~45, ~57, ~38 degrees


def test_two_uniforms_of_one_hue_family_are_uncertain_not_a_company() -> None:
    """A red-orange torso sits between JD red and hi-vis orange: with both enabled the lead is too small,
    so the answer is 'uncertain' and no uniform; each alone, or a clearer colour, is decided."""
    both = UniformMatcher([catalogue()["jd"], catalogue()["hivis"]])
    between = both.match(frame(RED_ORANGE), BOX)
    assert between.uniform_id is None and between.uncertain and between.margin < 0.15
    assert {between.candidate, between.runner_up} == {"jd", "hivis"}
    assert UniformMatcher([catalogue()["hivis"]]).match(frame(RED_ORANGE), BOX).uniform_id == "hivis"
    assert both.match(frame(VEST_ORANGE), BOX).uniform_id == "hivis"
    assert both.match(frame(JD_RED), BOX).uniform_id == "jd"
    assert both.match(frame(GREY), BOX).uniform_id is None


def test_an_uncertain_person_never_becomes_a_courier() -> None:
    log = CourierLog()
    clock = lambda s: datetime(2025, 5, 1, 12).astimezone() + timedelta(seconds=s)  # noqa: E731
    rule = CourierDetector("gate", CourierRule(type="courier", uniforms=("jd", "hivis")),
                           UniformMatcher([catalogue()["jd"], catalogue()["hivis"]]), clock, log)
    assert visit(rule, 1, RED_ORANGE, 0, 8) + idle(rule, 8, 12) == []


class CountingEmbedder:
    """Stands in for OSNet: a fixed unit vector, and how many crops it was asked to embed."""

    def __init__(self) -> None:
        self.crops = 0

    def embed(self, crops: list[np.ndarray], size: tuple[int, int] | None = None) -> np.ndarray:
        self.crops += len(crops)
        return np.full((len(crops), 512), 512 ** -0.5, np.float32)


def test_the_appearance_model_runs_once_per_track_not_per_vote(tmp_path) -> None:
    """OSNet costs about a detection; the rule pays it at a track's first colour candidate only."""
    from gridwatch.edge.config import Uniform
    from gridwatch.edge.perception.uniforms import Profile

    size = 25 + 512
    accept_all = Profile("vest", np.zeros(size, np.float32), 5.0, 0.5, 0.01, {}, np.zeros((1, size), np.float32),
                         np.zeros((1, size), np.float32), np.zeros(25, np.float32), 0.0, 0.4)
    accept_all.save(tmp_path / "vest.json")
    embedder = CountingEmbedder()
    matcher = UniformMatcher([Uniform(id="vest", name={"en": "Vest"}, profile=str(tmp_path / "vest.json"))], embedder)
    clock = lambda s: datetime(2025, 5, 1, 12).astimezone() + timedelta(seconds=s)  # noqa: E731
    rule = CourierDetector("gate", CourierRule(type="courier", uniforms=("vest",), min_votes=3), matcher, clock,
                           CourierLog())
    events = visit(rule, 1, ORANGE, 0, 1.5) + visit(rule, 2, ORANGE, 10, 1.5)
    starts = [(e.attributes["uniform_id"], e.attributes["votes"]) for e in events if e.phase == Phase.START]
    assert starts == [("vest", 3), ("vest", 3)]
    assert embedder.crops == 2  # one per person, not one per vote
