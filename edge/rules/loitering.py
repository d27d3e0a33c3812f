"""Loitering: a tracked object that dwells in a zone for ``min_dwell_s`` or longer.

Per track we remember when it entered and when it was last seen inside. The incident starts when
the dwell crosses the threshold, reports its dwell every ``update_every_s``, and ends once the
object has been out of the zone (or out of sight) for longer than ``exit_grace_s``, with the total
dwell up to the last moment it was seen inside. With a ``schedule`` an incident only starts inside
its time windows, and ``max_alerts_per_track`` caps the incidents one tracked person can raise.

With ``rejoin_s`` a person who steps out and comes back keeps the incident: the end of a departed
person's incident waits ``rejoin_s``, and a newcomer who is the same track, or whose OSNet
appearance matches the departed one's, takes the incident over (dwell counts from the first entry).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from gridwatch.broker.contract import EventType, Phase
from gridwatch.broker.zones import LoiteringRule
from gridwatch.edge.perception.appearance import AppearanceEmbedder
from gridwatch.edge.perception.track import Track
from gridwatch.edge.perception.uniforms import person_crop
from gridwatch.edge.rules.incident import RuleEvent
from gridwatch.edge.rules.timewindows import in_windows


@dataclass
class _Stay:
    entered_s: float
    last_inside_s: float
    track: Track
    incident_id: str | None = None
    last_report_s: float = 0.0
    appearance: np.ndarray | None = None  # OSNet embedding, taken when the incident starts (rejoin only)


class LoiteringDetector:
    def __init__(self, zone_id: str, rule: LoiteringRule,
                 wall_clock: Callable[[float], datetime] = lambda s: datetime.now(UTC),
                 embedder: AppearanceEmbedder | None = None) -> None:
        if rule.rejoin_s and embedder is None:
            raise ValueError("rejoin_s needs the appearance model")
        self.zone_id = zone_id
        self.rule = rule
        self.wall_clock = wall_clock
        self.embedder = embedder
        self.stays: dict[int, _Stay] = {}
        self.away: list[_Stay] = []  # incidents whose person left less than rejoin_s ago
        self.alerts: Counter[int] = Counter()  # incidents raised per track id

    def _may_alert(self, track_id: int, now_s: float) -> bool:
        capped = self.rule.max_alerts_per_track and self.alerts[track_id] >= self.rule.max_alerts_per_track
        return not capped and in_windows(self.rule.schedule, self.wall_clock(now_s))

    def update(self, now_s: float, inside: list[Track], image: np.ndarray | None = None) -> list[RuleEvent]:
        """Feed the tracks inside the zone at ``now_s``; return the incident phases due now.

        ``image`` is part of every rule's interface (courier and fire-lane rules look at pixels);
        dwell needs only positions.
        """
        events = []
        for track in inside:
            if track.class_name not in self.rule.objects:
                continue
            stay = self.stays.get(track.track_id)
            if stay is None:
                stay = self._returning(track, image) or _Stay(entered_s=now_s, last_inside_s=now_s, track=track)
                self.stays[track.track_id] = stay
            stay.last_inside_s, stay.track = now_s, track
            dwell = now_s - stay.entered_s
            if stay.incident_id is None and dwell >= self.rule.min_dwell_s and self._may_alert(track.track_id, now_s):
                stay.incident_id, stay.last_report_s = uuid.uuid4().hex, now_s
                self.alerts[track.track_id] += 1
                if self.embedder is not None and image is not None:
                    stay.appearance = self.embedder.embed([person_crop(image, track.box)])[0]
                events.append(self._event(Phase.START, stay, now_s))
            elif stay.incident_id and now_s - stay.last_report_s >= self.rule.update_every_s:
                stay.last_report_s = now_s
                events.append(self._event(Phase.UPDATE, stay, now_s))
        for track_id, stay in list(self.stays.items()):
            if now_s - stay.last_inside_s > self.rule.exit_grace_s:
                del self.stays[track_id]
                if stay.incident_id and self.rule.rejoin_s:
                    self.away.append(stay)
                elif stay.incident_id:
                    events.append(self._event(Phase.END, stay, now_s, ended_s=stay.last_inside_s))
        for stay in [s for s in self.away if now_s - s.last_inside_s > self.rule.exit_grace_s + self.rule.rejoin_s]:
            self.away.remove(stay)
            events.append(self._event(Phase.END, stay, now_s, ended_s=stay.last_inside_s))
        return events

    def _returning(self, track: Track, image: np.ndarray | None) -> _Stay | None:
        """The departed stay this newcomer continues: same track id, else the most similar appearance."""
        if not self.away:
            return None
        same = next((s for s in self.away if s.track.track_id == track.track_id), None)
        if same is None and self.embedder is not None and image is not None:
            appearance = self.embedder.embed([person_crop(image, track.box)])[0]
            scored = [(float(s.appearance @ appearance), s) for s in self.away if s.appearance is not None]
            best = max(scored, key=lambda pair: pair[0], default=None)
            same = best[1] if best and best[0] >= self.rule.rejoin_similarity else None
        if same is not None:
            self.away.remove(same)
        return same

    def finish(self, now_s: float) -> list[RuleEvent]:
        """The source ended: close every open incident at the last moment it was seen."""
        ended = [*self.stays.values(), *self.away]
        self.stays.clear()
        self.away.clear()
        return [self._event(Phase.END, stay, now_s, ended_s=stay.last_inside_s) for stay in ended if stay.incident_id]

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
