"""Courier entry: a person whose torso matches an allowed uniform, decided by consensus per track.

Each detection of a person in the zone is one vote (the best-matching uniform, or none). After
``min_votes`` the track is decided when one uniform holds ``agreement`` of the votes (Frigate's
sub-label consensus is the same idea: >= 3 attempts, 60 %); after ``max_votes`` without that, the
person is not a courier and is no longer scored. An enrolled uniform's OSNet vector is computed at
a track's first colour candidate and reused for its later votes: the body does not change between
detections a fraction of a second apart, OSNet (128x64) costs about a third of a detection, and each
vote still reads the torso's colour afresh. One ``courier_entry`` incident per person: ``start``
at the decision (with the uniform, score, margin and the gate verdict), ``end`` when they leave.

Overstay: every entry is written to the node's ``CourierLog``; a courier decided at a rule with
``direction: exit`` (the way out, possibly another camera) closes the oldest open entry in the same
uniform. An entry still open ``overstay_s`` after it was made starts a ``courier_overstay``
incident, which ends when that courier is seen leaving.

Company words: when the policy has the ``words`` factor, an undecided person's box is read for a
company's printed words (up to ``WORD_TRIES`` x ``min_votes`` detections, until one names a company).
Reading costs a few detector frames, so it is not done on the camera's thread: a copy of the box goes
to the rule's background reading worker (edge/reading/worker.py, one job per person at a time) and the
read comes back on a later frame; the entry waits for it like for the code, and records what was read.
When the source ends, the readings still pending are waited for (at most ``WORDS_DRAIN_S``).

Rider code: when the rule's gate policy has the ``code`` factor, every detection of an undecided
person is also searched for a QR code (until one passes, or ``CODE_TRIES`` x ``min_votes``
detections went by). The entry is decided when the factors are known: a wrong, expired or reused
code, or none, is an entry whose ``gate_decision`` says why it was refused (``factor_code``).
With ``code`` alone, a person who never shows a code produces no event.
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
from gridwatch.edge.perception.qr import CodeReader
from gridwatch.edge.perception.track import Track
from gridwatch.edge.perception.uniforms import NO_MATCH, Match, UniformMatcher
from gridwatch.edge.reading.engine import TextEngine
from gridwatch.edge.reading.logos import WordReader, WordsRead
from gridwatch.edge.reading.worker import ReadingWorker, WordsJob, WordsResult, box_crop
from gridwatch.edge.rules.gate_policy import ALLOWED, PASSED, check_code, code_secret, entry_decision
from gridwatch.edge.rules.incident import RuleEvent

EXIT_GRACE_S = 2.0
CODE_TRIES = 2  # a rider has this many consensus rounds (x min_votes detections) to show the code
WORD_TRIES = 1  # ... and the words on his jacket or box this many to be read
WORDS_CROP_MARGIN = 0.1  # of the person's box, around it, in the copy the worker reads
WORDS_DRAIN_S = 30.0  # wall seconds the source's end waits for readings still pending


@dataclass
class _Person:
    first_s: float
    last_s: float
    track: Track
    zone_rule: CourierDetector
    votes: list[Match] = field(default_factory=list)
    embedding: np.ndarray | None = None  # OSNet runs once per track: later votes reuse it (bench overhead)
    uniform: Match | None = None      # the consensus, once reached
    code: str | None = None           # the last code check's result (``passed`` or why not)
    code_payload: str | None = None
    code_platform: str | None = None
    code_tries: int = 0
    words: WordsRead | None = None    # the best reading of the person's printed words (a company, if any)
    words_tries: int = 0
    words_pending: bool = False       # a reading of the words is with the worker
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
    """One courier rule in one zone: uniform votes, the rider code when the gate asks for it, entries."""

    def __init__(self, zone_id: str, rule: CourierRule, matcher: UniformMatcher,
                 wall_clock: Callable[[float], datetime], log: CourierLog) -> None:
        self.zone_id, self.rule, self.matcher, self.wall_clock, self.log = zone_id, rule, matcher, wall_clock, log
        self.people: dict[int, _Person] = {}
        self.codes = CodeReader() if rule.gate is not None and "code" in rule.gate.factors else None
        self.words = None
        if rule.gate is not None and "words" in rule.gate.factors:
            engine = TextEngine()
            engine.check()  # a node without the reading extra fails at start, not at the gate
            self.words = ReadingWorker(words=WordReader(engine))
        self.used_codes: set[str] = set()  # a rider code opens the gate once
        self.ended = False  # the source ended: the words read so far are all there will be

    def update(self, now_s: float, inside: list[Track], image: np.ndarray | None = None) -> list[RuleEvent]:
        events = self._words_read(now_s)
        for track in inside:
            if track.class_name not in self.rule.objects:
                continue
            person = self.people.setdefault(track.track_id, _Person(now_s, now_s, track, self))
            fresh = track is not person.track or not person.votes  # a new detection, not a standing track
            person.last_s, person.track = now_s, track
            if person.decided or image is None or not fresh:
                continue
            if person.uniform is None:
                seen = self.matcher.describe(image, track.box, embedding=person.embedding)
                person.embedding = seen.embedding if seen.embedding is not None else person.embedding
                person.votes.append(self.matcher.decide(seen))
                person.uniform = consensus(person.votes, self.rule.min_votes, self.rule.agreement,
                                           self.rule.max_votes)
            if self.codes is not None and person.code != PASSED:
                self._read_code(person, image, now_s)
            if self.words is not None and not self._words_passed(person):
                self._read_words(track.track_id, person, image)
            events += self._conclude(person, now_s)
        for track_id, person in list(self.people.items()):
            if now_s - person.last_s > EXIT_GRACE_S:
                del self.people[track_id]
                if person.incident_id:
                    events.append(self._event(Phase.END, person, now_s, ended_s=person.last_s))
        return events + self._overstays(now_s)

    def _read_code(self, person: _Person, image: np.ndarray, now_s: float) -> None:
        """Look for the rider's QR code around the person; keep the first that passes, else the last reason."""
        person.code_tries += 1
        assert self.codes is not None and self.rule.gate is not None
        for payload in self.codes.read(image, person.track.box):
            result, platform = check_code(payload, code_secret(self.rule.gate), self.wall_clock(now_s),
                                          self.used_codes)
            person.code, person.code_payload, person.code_platform = result, payload, platform
            if result == PASSED:
                return

    def _read_words(self, track_id: int, person: _Person, image: np.ndarray) -> None:
        """Hand a copy of the person's box to the reading worker (never waited for; one reading per person
        at a time). A job the worker refuses (it is that far behind) is not a try: a later detection
        offers it again."""
        assert self.words is not None
        if person.words_pending:
            return
        crop, box = box_crop(image, person.track.box, WORDS_CROP_MARGIN)
        if self.words.submit(WordsJob(str(track_id), crop, box)):
            person.words_tries += 1
            person.words_pending = True

    def _words_read(self, now_s: float) -> list[RuleEvent]:
        """Take the worker's finished readings; a person whose factors are now all known is decided."""
        if self.words is None:
            return []
        events = []
        for result in self.words.finished():
            assert isinstance(result, WordsResult)
            person = self.people.get(int(result.key))
            if person is None:  # left before the reading came back
                continue
            person.words_pending = False
            read = result.read
            if person.words is None or read.company is not None or (read.lines and not person.words.lines):
                person.words = read
            if not person.decided:
                events += self._conclude(person, now_s)
        return events

    @staticmethod
    def _words_passed(person: _Person) -> bool:
        return person.words is not None and person.words.company is not None

    def _factors_done(self, person: _Person) -> bool:
        """Every extra factor (code, words) passed or had all its tries."""
        code = self.codes is None or person.code == PASSED or person.code_tries >= CODE_TRIES * self.rule.min_votes
        words = (self.words is None or self._words_passed(person)
                 or ((self.ended or person.words_tries >= WORD_TRIES * self.rule.min_votes)
                     and not person.words_pending))
        return code and words

    def _conclude(self, person: _Person, now_s: float) -> list[RuleEvent]:
        """Decide the person once every factor the rule needs is known (or will not come)."""
        uniform = person.uniform
        if self.codes is None and self.words is None:
            if uniform is None:
                return []
            person.decided = True
            if uniform.uniform_id is not None and self.rule.direction == "exit":
                self.log.leave(uniform.uniform_id, now_s)
            return [self._entry(person, uniform, now_s)] if uniform.uniform_id and self.rule.direction == "entry" \
                else []
        assert self.rule.gate is not None
        done = self._factors_done(person)
        if "uniform" in self.rule.gate.factors:
            if uniform is None or (uniform.uniform_id is not None and not done):
                return []
            person.decided = True
            return [self._entry(person, uniform, now_s)] if uniform.uniform_id else []
        if person.code is None and not self._words_passed(person):
            # no uniform factor: a passer-by who shows no code and wears no company's words is nobody's business
            person.decided = (max(person.code_tries, person.words_tries) >= self.rule.max_votes
                              and not person.words_pending)
            return []
        if not done:
            return []
        person.decided = True
        return [self._entry(person, uniform if uniform and uniform.uniform_id else NO_MATCH, now_s)]

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
        """The source ended: decide on the words still being read, then close open entries and overstays
        (an overstay ends unresolved, at now)."""
        events = []
        if self.words is not None:
            self.words.wait_idle(WORDS_DRAIN_S)
            self.ended = True
            events += self._words_read(now_s)
            events += [e for p in self.people.values() if not p.decided and not p.words_pending
                       for e in self._conclude(p, now_s)]
            self.words.close()
        events += [self._event(Phase.END, p, now_s, ended_s=p.last_s) for p in self.people.values() if p.incident_id]
        self.people.clear()
        for entry in [e for e in self.log.open if e.person.zone_rule is self]:
            self.log.open.remove(entry)
            if entry.overstay_id:
                events.append(self._overstay(Phase.END, entry, now_s, ended_s=now_s))
        return events

    def _entry(self, person: _Person, match: Match, now_s: float) -> RuleEvent:
        person.incident_id = uuid.uuid4().hex
        words_company = person.words.company if person.words else None
        uniform_id = match.uniform_id or person.code_platform or words_company or ""
        self.log.enter(uniform_id, person.first_s, person)
        person.attributes = {
            "uniform_id": uniform_id, "score": match.score, "margin": match.margin,
            "runner_up": match.runner_up or "",
            "votes": len(person.votes), "agreeing": sum(v.uniform_id == match.uniform_id for v in person.votes),
        }
        gate = self.rule.gate
        if gate is not None:
            verdict = entry_decision(gate, match.uniform_id or "", self.wall_clock(now_s), person.code,
                                     person.code_platform, words_company)
            if verdict.decision == ALLOWED and person.code_payload and "code" in gate.factors:
                self.used_codes.add(person.code_payload)
            person.attributes["gate_id"] = gate.gate_id
            person.attributes["gate_decision"] = verdict.decision
            person.attributes["factors_passed"] = ",".join(verdict.passed)
            person.attributes.update({f"factor_{name}": result for name, result in verdict.factors.items()})
            if "words" in gate.factors:  # what was read, so a refusal can be checked against the snapshot
                person.attributes["words_read"] = person.words.word or "" if person.words else ""
                person.attributes["words_lines"] = " | ".join(person.words.lines)[:200] if person.words else ""
        return self._event(Phase.START, person, now_s)

    def _event(self, phase: Phase, person: _Person, now_s: float, ended_s: float | None = None) -> RuleEvent:
        attributes = dict(person.attributes)
        if ended_s is not None:
            attributes["seen_s"] = round(ended_s - person.first_s, 2)
        return RuleEvent(type=EventType.COURIER_ENTRY, phase=phase, zone_id=self.zone_id,
                         incident_id=person.incident_id or "", track=person.track, started_s=person.first_s,
                         observed_s=now_s, ended_s=ended_s, attributes=attributes)
