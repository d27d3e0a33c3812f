"""Courier entry: a person whose torso matches an allowed uniform, decided by consensus per track.

Each detection of a person in the zone is one vote (the best-matching uniform, or none). After
``min_votes`` the track is decided when one uniform holds ``agreement`` of the votes (Frigate's
sub-label consensus is the same idea: >= 3 attempts, 60 %); after ``max_votes`` without that, the
person is not a courier and is no longer scored. One ``courier_entry`` incident per person: ``start``
at the decision (with the uniform, score, margin and the gate verdict), ``end`` when they leave.

Overstay: every entry is written to the node's ``CourierLog``; a courier decided at a rule with
``direction: exit`` (the way out, possibly another camera) closes the oldest open entry in the same
uniform. An entry still open ``overstay_s`` after it was made starts a ``courier_overstay``
incident, which ends when that courier is seen leaving.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from gridwatch.broker.contract import EventType, Phase
from gridwatch.broker.zones import CourierRule
from gridwatch.edge.perception.track import Track
from gridwatch.edge.perception.uniforms import NO_MATCH, Match, UniformMatcher
from gridwatch.edge.rules.gate_policy import entry_decision
from gridwatch.edge.rules.incident import RuleEvent

EXIT_GRACE_S = 2.0


@dataclass
class _Person:
    first_s: float
    last_s: float
    track: Track
    zone_rule: CourierDetector
    votes: list[Match] = field(default_factory=list)
    decided: bool = False
    incident_id: str | None = None
    attributes: dict = field(default_factory=dict)


@dataclass(eq=False)
class _Entry:
    uniform_id: str
    entered_s: float
    person: _Person
    overstay_id: str | None = None
    left_s: float | None = None


class CourierLog:
    """Couriers who entered and have not been seen leaving, shared by every camera of a node."""

    def __init__(self) -> None:
        self.open: list[_Entry] = []

    def enter(self, uniform_id: str, entered_s: float, person: _Person) -> None:
        self.open.append(_Entry(uniform_id, entered_s, person))

    def leave(self, uniform_id: str, now_s: float) -> None:
        """A courier in ``uniform_id`` went out: the longest-staying one of that uniform has left."""
        for entry in self.open:
            if entry.uniform_id == uniform_id and entry.left_s is None:
                entry.left_s = now_s
                return


def consensus(votes: list[Match], min_votes: int, agreement: float, max_votes: int) -> Match | None:
    """The winning vote once ``agreement`` of at least ``min_votes`` votes name one uniform; a no-uniform
    Match when ``max_votes`` pass without that; None while undecided. Uncertain votes are no-uniform votes."""
    if len(votes) < min_votes:
        return None
    counts = Counter(v.uniform_id for v in votes)
    winner, count = counts.most_common(1)[0]
    if winner is not None and count / len(votes) >= agreement:
        return max((v for v in votes if v.uniform_id == winner), key=lambda v: v.score)
    if len(votes) >= max_votes:
        return NO_MATCH
    return None


class CourierDetector:
    def __init__(self, zone_id: str, rule: CourierRule, matcher: UniformMatcher,
                 wall_clock: Callable[[float], datetime], log: CourierLog) -> None:
        self.zone_id, self.rule, self.matcher, self.wall_clock, self.log = zone_id, rule, matcher, wall_clock, log
        self.people: dict[int, _Person] = {}

    def update(self, now_s: float, inside: list[Track], image: np.ndarray | None = None) -> list[RuleEvent]:
        events = []
        for track in inside:
            if track.class_name not in self.rule.objects:
                continue
            person = self.people.setdefault(track.track_id, _Person(now_s, now_s, track, self))
            fresh = track is not person.track or not person.votes  # a new detection, not a standing track
            person.last_s, person.track = now_s, track
            if person.decided or image is None or not fresh:
                continue
            person.votes.append(self.matcher.match(image, track.box))
            decision = consensus(person.votes, self.rule.min_votes, self.rule.agreement, self.rule.max_votes)
            if decision is not None:
                person.decided = True
                if decision.uniform_id is not None and self.rule.direction == "exit":
                    self.log.leave(decision.uniform_id, now_s)
                elif decision.uniform_id is not None:
                    events.append(self._entry(person, decision, now_s))
        for track_id, person in list(self.people.items()):
            if now_s - person.last_s > EXIT_GRACE_S:
                del self.people[track_id]
                if person.incident_id:
                    events.append(self._event(Phase.END, person, now_s, ended_s=person.last_s))
        return events + self._overstays(now_s)

    def _overstays(self, now_s: float) -> list[RuleEvent]:
        """Start an overstay for entries of this rule open too long; end those whose courier left."""
        events = []
        for entry in [e for e in self.log.open if e.person.zone_rule is self]:
            if entry.left_s is not None:
                self.log.open.remove(entry)
                if entry.overstay_id:
                    events.append(self._overstay(Phase.END, entry, now_s, ended_s=entry.left_s))
            elif (self.rule.overstay_s is not None and entry.overstay_id is None
                  and now_s - entry.entered_s >= self.rule.overstay_s):
                entry.overstay_id = uuid.uuid4().hex
                events.append(self._overstay(Phase.START, entry, now_s))
        return events

    def _overstay(self, phase: Phase, entry: _Entry, now_s: float, ended_s: float | None = None) -> RuleEvent:
        until = ended_s if ended_s is not None else now_s
        return RuleEvent(type=EventType.COURIER_OVERSTAY, phase=phase, zone_id=self.zone_id,
                         incident_id=entry.overstay_id or "", track=entry.person.track, started_s=entry.entered_s,
                         observed_s=now_s, ended_s=ended_s,
                         attributes={"uniform_id": entry.uniform_id, "stay_s": round(until - entry.entered_s, 2),
                                     "overstay_s": self.rule.overstay_s or 0.0,
                                     "entry_incident_id": entry.person.incident_id or ""})

    def finish(self, now_s: float) -> list[RuleEvent]:
        """The source ended: close open entries and overstays (an overstay ends unresolved, at now)."""
        events = [self._event(Phase.END, p, now_s, ended_s=p.last_s) for p in self.people.values() if p.incident_id]
        self.people.clear()
        for entry in [e for e in self.log.open if e.person.zone_rule is self]:
            self.log.open.remove(entry)
            if entry.overstay_id:
                events.append(self._overstay(Phase.END, entry, now_s, ended_s=now_s))
        return events

    def _entry(self, person: _Person, match: Match, now_s: float) -> RuleEvent:
        person.incident_id = uuid.uuid4().hex
        self.log.enter(match.uniform_id or "", person.first_s, person)
        person.attributes = {
            "uniform_id": match.uniform_id or "", "score": match.score, "margin": match.margin,
            "runner_up": match.runner_up or "",
            "votes": len(person.votes), "agreeing": sum(v.uniform_id == match.uniform_id for v in person.votes),
        }
        if self.rule.gate is not None:
            person.attributes["gate_id"] = self.rule.gate.gate_id
            person.attributes["gate_decision"] = entry_decision(self.rule.gate, match.uniform_id or "",
                                                                self.wall_clock(now_s))
        return self._event(Phase.START, person, now_s)

    def _event(self, phase: Phase, person: _Person, now_s: float, ended_s: float | None = None) -> RuleEvent:
        attributes = dict(person.attributes)
        if ended_s is not None:
            attributes["seen_s"] = round(ended_s - person.first_s, 2)
        return RuleEvent(type=EventType.COURIER_ENTRY, phase=phase, zone_id=self.zone_id,
                         incident_id=person.incident_id or "", track=person.track, started_s=person.first_s,
                         observed_s=now_s, ended_s=ended_s, attributes=attributes)
