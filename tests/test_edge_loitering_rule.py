"""The loitering state machine on scripted track positions (the clip test covers real footage)."""

from __future__ import annotations

import numpy as np

from gridwatch.broker.contract import Phase
from gridwatch.broker.zones import LoiteringRule
from gridwatch.edge.perception.track import Track
from gridwatch.edge.rules.loitering import LoiteringDetector

RULE = LoiteringRule(type="loitering", min_dwell_s=10, update_every_s=4, exit_grace_s=2)


def person(track_id: int = 7) -> Track:
    return Track(track_id, np.array([10, 10, 50, 120], np.float32), "person", 0.9)


def feed(detector: LoiteringDetector, seconds: np.ndarray, inside_until: float) -> list:
    events = []
    for t in seconds:
        events += detector.update(float(t), [person()] if t <= inside_until else [])
    return events


def test_start_updates_and_end_with_total_dwell() -> None:
    detector = LoiteringDetector("lobby", RULE)
    events = feed(detector, np.arange(0, 30, 0.5), inside_until=20.0)
    assert [e.phase for e in events] == [Phase.START, Phase.UPDATE, Phase.UPDATE, Phase.END]
    start, end = events[0], events[-1]
    assert start.observed_s == 10.0 and start.attributes["dwell_s"] == 10.0
    assert [e.observed_s for e in events[1:3]] == [14.0, 18.0]
    assert end.ended_s == 20.0 and end.attributes["dwell_s"] == 20.0
    assert end.observed_s == 22.5  # left for longer than exit_grace_s
    assert len({e.incident_id for e in events}) == 1


def test_short_stay_raises_nothing() -> None:
    detector = LoiteringDetector("lobby", RULE)
    assert feed(detector, np.arange(0, 20, 0.5), inside_until=9.5) == []
    assert detector.stays == {}


def test_brief_absence_within_grace_keeps_the_stay() -> None:
    detector = LoiteringDetector("lobby", RULE)
    events = []
    for t in np.arange(0, 12, 0.5):
        gone = 4.0 <= t < 5.5  # 1.5 s unseen, under the 2 s grace
        events += detector.update(float(t), [] if gone else [person()])
    assert [e.phase for e in events] == [Phase.START]
    assert events[0].started_s == 0.0


def test_other_classes_are_ignored_and_finish_closes_open_incidents() -> None:
    detector = LoiteringDetector("lobby", RULE)
    car = Track(3, np.array([0, 0, 5, 5], np.float32), "car", 0.9)
    events = []
    for t in np.arange(0, 15, 1.0):
        events += detector.update(float(t), [car, person()])
    assert [e.phase for e in events] == [Phase.START, Phase.UPDATE]
    closing = detector.finish(14.0)
    assert [e.phase for e in closing] == [Phase.END] and closing[0].ended_s == 14.0
