"""Fire lane: a vehicle stationary in the lane, or clutter on it, for ``min_stationary_s``.

Stationarity is judged per *spot*, not per track id: a spot is the box where a vehicle stopped, and
any vehicle box overlapping it by ``same_place_iou`` keeps it alive. A moving vehicle leaves its spot
within a second and the spot is dropped, so passing and briefly stopping traffic never accumulates
time; a parked one keeps its spot through detector flicker, id switches and occlusions shorter than
``clear_after_s``. The incident ends once the spot has been empty that long, with an after-snapshot.

Clutter the detector cannot name is the background model's job (``LaneBackground``): a share of the
lane that stays different from the empty-lane reference is ``fire_lane_obstructed``, class unknown.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from gridwatch.broker.contract import EventType, Phase
from gridwatch.broker.zones import FireLaneRule, detector_classes
from gridwatch.edge.perception.background import LaneBackground
from gridwatch.edge.perception.track import Track
from gridwatch.edge.rules.incident import RuleEvent
from gridwatch.edge.rules.zones import ZoneArea

CLUTTER_CHECK_S = 0.5  # the background comparison is cheap, but not needed at every frame
PIXEL_GAP_S = 1.0      # a clutter pixel may look like the empty lane this long (noise) and stay clutter


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(eq=False)  # spots are compared by identity (their boxes are arrays)
class _Spot:
    box: np.ndarray
    since_s: float
    last_seen_s: float
    track: Track | None
    incident_id: str | None = None


class FireLaneDetector:
    def __init__(self, zone_id: str, rule: FireLaneRule) -> None:
        self.zone_id, self.rule = zone_id, rule
        self.classes = detector_classes(rule)  # the rule's vehicles, and what the detector calls them from above
        self.spots: list[_Spot] = []
        self.clutter: _Clutter | None = None  # built on the first frame, when the lane's pixels are known

    def watch_background(self, area: ZoneArea, frame_size: tuple[int, int]) -> None:
        """Start the clutter model for the lane as it appears in frames of ``frame_size``."""
        if self.rule.clutter:
            self.clutter = _Clutter(self.rule, LaneBackground(area.polygon, frame_size))

    def update(self, now_s: float, inside: list[Track], image: np.ndarray | None = None) -> list[RuleEvent]:
        vehicles = [t for t in inside if t.class_name in self.classes]
        events = []
        for track in vehicles:
            spot = max(self.spots, key=lambda s: iou(s.box, track.box), default=None)
            if spot is None or iou(spot.box, track.box) < self.rule.same_place_iou:
                self.spots.append(_Spot(track.box, now_s, now_s, track))
                continue
            spot.last_seen_s, spot.track = now_s, track
        for spot in list(self.spots):
            if now_s - spot.last_seen_s > self.rule.clear_after_s:
                self.spots.remove(spot)
                if spot.incident_id:
                    events.append(self._event(EventType.FIRE_LANE_BLOCKED, Phase.END, spot, now_s, spot.last_seen_s))
            elif spot.incident_id is None and spot.last_seen_s - spot.since_s >= self.rule.min_stationary_s:
                spot.incident_id = uuid.uuid4().hex
                events.append(self._event(EventType.FIRE_LANE_BLOCKED, Phase.START, spot, now_s))
        if self.clutter is not None and image is not None:
            events += self.clutter.update(now_s, image, [s.box for s in self.spots], self)
        return events

    def open_vehicles(self, now_s: float) -> dict[str, Track]:
        """The vehicle of each open incident that was seen at ``now_s``, by incident id (for reading its plate)."""
        return {s.incident_id: s.track for s in self.spots
                if s.incident_id and s.track is not None and s.last_seen_s == now_s}

    def finish(self, now_s: float) -> list[RuleEvent]:
        events = [self._event(EventType.FIRE_LANE_BLOCKED, Phase.END, s, now_s, s.last_seen_s)
                  for s in self.spots if s.incident_id]
        self.spots.clear()
        if self.clutter is not None and self.clutter.spot.incident_id:
            events.append(self.clutter.end(now_s, self))
        return events

    def _event(self, kind: EventType, phase: Phase, spot: _Spot, now_s: float,
               ended_s: float | None = None) -> RuleEvent:
        until = ended_s if ended_s is not None else now_s
        attributes: dict[str, float | int | str | bool] = {
            "stationary_s": round(until - spot.since_s, 2), "min_stationary_s": self.rule.min_stationary_s}
        if kind is EventType.FIRE_LANE_OBSTRUCTED:
            attributes["class"] = "unknown"
        return RuleEvent(type=kind, phase=phase, zone_id=self.zone_id, incident_id=spot.incident_id or "",
                         track=spot.track, started_s=spot.since_s, observed_s=now_s, ended_s=ended_s,
                         attributes=attributes)


class _Clutter:
    """Pixels of the lane that have differed from the empty lane, in place, for ``min_stationary_s``.

    Persistence is per pixel, so a vehicle the detector missed while it drove through leaves no
    trace (its difference moves on), while goods left on the lane keep the same pixels different.
    A pixel hidden by a known object keeps its clock but does not count while hidden (the vehicle is
    the other detector's business); one seen like the reference for ``PIXEL_GAP_S`` is clear again.
    """

    def __init__(self, rule: FireLaneRule, background: LaneBackground) -> None:
        self.rule, self.background = rule, background
        self.spot = _Spot(np.zeros(4), 0.0, 0.0, None)
        self.since: np.ndarray | None = None      # when each pixel started to differ (nan: it does not)
        self.last: np.ndarray | None = None       # when each pixel last differed
        self.next_check_s = 0.0

    def update(self, now_s: float, image: np.ndarray, known: list[np.ndarray],
               lane: FireLaneDetector) -> list[RuleEvent]:
        if now_s < self.next_check_s:
            return []
        self.next_check_s = now_s + CLUTTER_CHECK_S
        if self.background.reference is None:
            if not known:  # the empty-lane reference: taken when no vehicle stands in the lane
                self.background.take_reference(image)
                self.since = np.full(self.background.mask.shape, np.nan)
                self.last = np.full(self.background.mask.shape, -np.inf)
            return []
        assert self.since is not None and self.last is not None
        differs, hidden = self.background.compare(image, known)
        self.since[differs & np.isnan(self.since)] = now_s
        self.last[differs] = now_s
        self.since[~differs & ~hidden & (now_s - self.last > PIXEL_GAP_S)] = np.nan
        with np.errstate(invalid="ignore"):
            lasting = (now_s - self.since >= self.rule.min_stationary_s) & ~hidden
        blocked = lasting.sum() >= self.rule.clutter_min_area * self.background.lane_pixels
        if blocked and self.spot.incident_id is None:
            self.spot = _Spot(np.zeros(4), float(np.nanmin(self.since[lasting])), now_s, None, uuid.uuid4().hex)
            return [lane._event(EventType.FIRE_LANE_OBSTRUCTED, Phase.START, self.spot, now_s)]
        if blocked:
            self.spot.last_seen_s = now_s
        elif self.spot.incident_id is not None and now_s - self.spot.last_seen_s > self.rule.clear_after_s:
            return [self.end(now_s, lane)]
        return []

    def end(self, now_s: float, lane: FireLaneDetector) -> RuleEvent:
        event = lane._event(EventType.FIRE_LANE_OBSTRUCTED, Phase.END, self.spot, now_s, self.spot.last_seen_s)
        self.spot = _Spot(np.zeros(4), 0.0, 0.0, None)
        return event
