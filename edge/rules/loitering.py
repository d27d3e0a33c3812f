"""Loitering: a tracked object that dwells in a zone for ``min_dwell_s`` or longer.

Per track we remember when it entered and when it was last seen inside. The incident starts when
the dwell crosses the threshold, reports its dwell every ``update_every_s``, and ends once the
object has been out of the zone (or out of sight) for longer than ``exit_grace_s``, with the total
dwell up to the last moment it was seen inside.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from gridwatch.broker.contract import EventType, Phase
from gridwatch.edge.config import LoiteringRule
from gridwatch.edge.rules.incident import RuleEvent
from gridwatch.edge.track import Track


@dataclass
class _Stay:
    entered_s: float
    last_inside_s: float
    track: Track
    incident_id: str | None = None
    last_report_s: float = 0.0


class LoiteringDetector:
    def __init__(self, zone_id: str, rule: LoiteringRule) -> None:
        self.zone_id = zone_id
        self.rule = rule
        self.stays: dict[int, _Stay] = {}

    def update(self, now_s: float, inside: list[Track]) -> list[RuleEvent]:
        """Feed the tracks inside the zone at ``now_s``; return the incident phases due now."""
        events = []
        for track in inside:
            if track.class_name not in self.rule.objects:
                continue
            stay = self.stays.get(track.track_id)
            if stay is None:
                stay = self.stays[track.track_id] = _Stay(entered_s=now_s, last_inside_s=now_s, track=track)
            stay.last_inside_s, stay.track = now_s, track
            dwell = now_s - stay.entered_s
            if stay.incident_id is None and dwell >= self.rule.min_dwell_s:
                stay.incident_id, stay.last_report_s = uuid.uuid4().hex, now_s
                events.append(self._event(Phase.START, stay, now_s))
            elif stay.incident_id and now_s - stay.last_report_s >= self.rule.update_every_s:
                stay.last_report_s = now_s
                events.append(self._event(Phase.UPDATE, stay, now_s))
        for track_id, stay in list(self.stays.items()):
            if now_s - stay.last_inside_s > self.rule.exit_grace_s:
                events.extend(self._leave(track_id, stay, now_s))
        return events

    def finish(self, now_s: float) -> list[RuleEvent]:
        """The source ended: close every open incident at the last moment it was seen."""
        events = []
        for track_id, stay in list(self.stays.items()):
            events.extend(self._leave(track_id, stay, now_s))
        return events

    def _leave(self, track_id: int, stay: _Stay, now_s: float) -> list[RuleEvent]:
        del self.stays[track_id]
        if stay.incident_id is None:
            return []
        return [self._event(Phase.END, stay, now_s, ended_s=stay.last_inside_s)]

    def _event(self, phase: Phase, stay: _Stay, now_s: float, ended_s: float | None = None) -> RuleEvent:
        until = ended_s if ended_s is not None else now_s
        return RuleEvent(
            type=EventType.LOITERING,
            phase=phase,
            zone_id=self.zone_id,
            incident_id=stay.incident_id or "",
            track=stay.track,
            started_s=stay.entered_s,
            observed_s=now_s,
            ended_s=ended_s,
            attributes={"dwell_s": round(until - stay.entered_s, 2), "min_dwell_s": self.rule.min_dwell_s},
        )
