"""``python -m bench uniforms``: the uniform recogniser under what a gate camera does to a picture.

The labelled set is built at run time from the shared clips and the hand labels in
``bench/uniform_labels.yaml`` (frame, box, label; no image copies). It is split so nothing is
scored on what it was learned from:

* the hi-vis worker is enrolled from four frames early in his clip (``ENROL_FRAMES``, daylight,
  untransformed) and evaluated on frames from ``HELD_OUT_FROM`` on;
* the site negatives for enrolment are the store-aisle and walking clips; the negatives evaluated
  are the *other* clips — the women in black of the walking-and-pause clip and the people in black
  and grey of the one-by-one clip — whom enrolment never saw.

Every transform (``bench/transforms.py``) is applied to the whole frame. Enabled uniforms: the
catalogue's colour-only meituan, eleme and jd, and the enrolled vest as ``hivis`` (SF cannot be
enabled without an enrolled profile). Per transform and uniform: true accepts, false accepts on
plain and dark clothes, wrong-company accepts, uncertain decisions; per track (the courier rule's
consensus over windows of ``TRACK_VOTES`` detections at ~5 detect-fps, OSNet run once per track
as the rule runs it) the worker's recognition rate and the gate's false-open rate. Today's HSV
matcher (``bench/hsv_baseline.py``, with the vest enrolled the old way from the same frames) runs
beside it on the same frames.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from bench import hsv_baseline
from bench.common import SAMPLES, table
from bench.transforms import TRANSFORMS
from gridwatch.edge.config import Uniform, catalogue
from gridwatch.edge.perception.appearance import AppearanceEmbedder
from gridwatch.edge.perception.enrol import train
from gridwatch.edge.perception.uniforms import Match, UniformMatcher, describe, person_crop
from gridwatch.edge.rules.courier import consensus

LABELS = Path(__file__).with_name("uniform_labels.yaml")
WORKER_CLIP = "worker-zone-detection.gif"
ENROLLED = "hivis"
ENROL_FRAMES = (8, 14, 20, 26)
HELD_OUT_FROM = 30
ENROL_NEGATIVE_CLIPS = ("store-aisle-detection.gif", "face-demographics-walking.gif")
COLOUR_ONLY = ("meituan", "eleme", "jd")
SAMPLE_EVERY = 3          # 16.7 fps clip -> ~5.6 detect-fps, what the rule sees
TRACK_VOTES = 4           # detections per evaluated worker track (the rule decides after 3)
MIN_VOTES, AGREEMENT, MAX_VOTES = 3, 0.6, 10


@dataclass(frozen=True)
class Row:
    clip: str
    frame: int
    box: np.ndarray
    label: str  # hivis | plain | dark


def labelled_rows() -> list[Row]:
    clips = yaml.safe_load(LABELS.read_text(encoding="utf-8"))["clips"]
    return [Row(clip, int(f), np.array([x1, y1, x2, y2], np.float32), str(label))
            for clip, rows in clips.items() for f, x1, y1, x2, y2, label in rows]


def clip_frames(clip: str, wanted: set[int]) -> dict[int, np.ndarray]:
    capture, frames, index = cv2.VideoCapture(str(SAMPLES / clip)), {}, 0
    while True:
        ok, image = capture.read()
        if not ok or index > max(wanted):
            break
        if index in wanted:
            frames[index] = image
        index += 1
    capture.release()
    return frames


def load_frames(rows: list[Row]) -> dict[tuple[str, int], np.ndarray]:
    by_clip: dict[str, set[int]] = {}
    for row in rows:
        by_clip.setdefault(row.clip, set()).add(row.frame)
    return {(clip, f): image for clip, wanted in by_clip.items() for f, image in clip_frames(clip, wanted).items()}


def enrol_vest(rows: list[Row], frames, embedder: AppearanceEmbedder, profile_path: Path) -> Uniform:
    positives = [describe(frames[r.clip, r.frame], r.box, embedder) for r in rows
                 if r.clip == WORKER_CLIP and r.frame in ENROL_FRAMES]
    negatives = [describe(frames[r.clip, r.frame], r.box, embedder) for r in rows if r.clip in ENROL_NEGATIVE_CLIPS]
    profile, separation = train(ENROLLED, positives, negatives)
    profile.save(profile_path)
    print(f"enrolled {ENROLLED} from worker frames {ENROL_FRAMES}, negatives from {', '.join(ENROL_NEGATIVE_CLIPS)}")
    print(f"  threshold {profile.threshold}; {separation.line()}")
    return Uniform(id=ENROLLED, name={"en": "Site hi-vis vest"}, profile=str(profile_path))


def worker_windows(frame_ids: list[int]) -> list[list[int]]:
    """Windows of TRACK_VOTES sampled held-out worker frames: the detections of one evaluated track."""
    windows = []
    for phase in range(SAMPLE_EVERY):
        sampled = [f for f in sorted(frame_ids) if f % SAMPLE_EVERY == phase]
        windows += [sampled[s:s + TRACK_VOTES] for s in range(0, len(sampled) - TRACK_VOTES + 1, TRACK_VOTES)]
    return windows


def track_outcome(votes: list[str | None]) -> str | None:
    """The courier rule's consensus over one track's votes."""
    decided = consensus([Match(u, 1.0, 1.0) for u in votes], MIN_VOTES, AGREEMENT, len(votes))
    return decided.uniform_id if decided else None


def track_votes(matcher: UniformMatcher, seen: list[tuple[np.ndarray, np.ndarray]]) -> list[str | None]:
    """One track's votes as the courier rule casts them: OSNet at the first colour candidate, its
    vector reused for the track's later detections (each torso's colour read afresh)."""
    embedding, votes = None, []
    for image, box in seen:
        person = matcher.describe(image, box, embedding=embedding)
        embedding = person.embedding if person.embedding is not None else embedding
        votes.append(matcher.decide(person).uniform_id)
    return votes


@dataclass
class Tally:
    """One matcher under one transform."""

    worker: Counter
    negatives: dict[str, Counter]  # label -> uniform accepted -> count
    uncertain: int
    tracks: list[str | None]
    n_workers: int
    n_negatives: dict[str, int]

    def false_accepts(self) -> int:
        return sum(n for c in self.negatives.values() for u, n in c.items() if u is not None)

    def wrong_company(self) -> int:
        return sum(n for u, n in self.worker.items() if u not in (None, ENROLLED))

    def false_open_rate(self) -> float:
        """Gate openings that should not happen, per decision: wrong-company worker tracks and every
        accepted negative detection (a negative's track could open on it: the per-detection bound)."""
        wrong_tracks = sum(1 for t in self.tracks if t not in (None, ENROLLED))
        negatives = sum(self.n_negatives.values())
        return (wrong_tracks + self.false_accepts()) / max(1, len(self.tracks) + negatives)


def evaluate(rows: list[Row], frames, transform, decide, decide_track=None) -> Tally:
    """Per detection with ``decide``; worker tracks with ``decide_track`` (a track's (image, box) list
    to its votes) when the matcher carries state along a track, else from the per-detection votes."""
    worker: Counter = Counter()
    per_frame: dict[int, str | None] = {}
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    negatives: dict[str, Counter] = {"plain": Counter(), "dark": Counter()}
    uncertain = 0
    n_negatives = {"plain": 0, "dark": 0}
    for row in rows:
        image = transform(frames[row.clip, row.frame])
        uniform_id, was_uncertain = decide(image, row.box)
        uncertain += was_uncertain
        if row.label == ENROLLED:
            worker[uniform_id] += 1
            per_frame[row.frame], seen[row.frame] = uniform_id, (image, row.box)
        else:
            negatives[row.label][uniform_id] += 1
            n_negatives[row.label] += 1
    tracks = [track_outcome(decide_track([seen[f] for f in window]) if decide_track else
                            [per_frame[f] for f in window]) for window in worker_windows(list(per_frame))]
    return Tally(worker, negatives, uncertain, tracks, sum(worker.values()), n_negatives)


def main() -> None:
    rows = labelled_rows()
    frames = load_frames(rows)
    embedder = AppearanceEmbedder()
    evaluated = [r for r in rows if (r.clip == WORKER_CLIP and r.frame >= HELD_OUT_FROM)
                 or (r.clip != WORKER_CLIP and r.clip not in ENROL_NEGATIVE_CLIPS)]
    with tempfile.TemporaryDirectory() as scratch:
        vest = enrol_vest(rows, frames, embedder, Path(scratch) / "hivis.profile.json")
        matcher = UniformMatcher([catalogue()[u] for u in COLOUR_ONLY] + [vest], embedder)
    enrol_crops = [person_crop(frames[r.clip, r.frame], r.box) for r in rows
                   if r.clip == WORKER_CLIP and r.frame in ENROL_FRAMES]
    old = [hsv_baseline.HsvUniform(u, *hsv_baseline.CATALOGUE[u]) for u in (*COLOUR_ONLY, "sf")]
    old.append(hsv_baseline.enrol(ENROLLED, enrol_crops, embedder))

    def new_decision(image: np.ndarray, box: np.ndarray) -> tuple[str | None, bool]:
        match = matcher.match(image, box)
        return match.uniform_id, match.uncertain

    def old_decision(image: np.ndarray, box: np.ndarray) -> tuple[str | None, bool]:
        return hsv_baseline.match(old, image, box, embedder), False

    n_workers = sum(1 for r in evaluated if r.label == ENROLLED)
    n_plain = sum(1 for r in evaluated if r.label == "plain")
    n_dark = sum(1 for r in evaluated if r.label == "dark")
    print(f"evaluated: {n_workers} held-out worker detections, {n_plain} plain and {n_dark} dark-clothes "
          f"detections from clips enrolment never saw; uniforms: {', '.join(COLOUR_ONLY)} (colour-only), "
          f"{ENROLLED} (enrolled)\n")
    summary, per_uniform = [], []
    worst = {"fa": 0, "wc": 0, "min_tracks": 1.0}
    for name, transform in TRANSFORMS.items():
        new = evaluate(evaluated, frames, transform, new_decision, lambda seen: track_votes(matcher, seen))
        base = evaluate(evaluated, frames, transform, old_decision)
        tracks_ok = sum(t == ENROLLED for t in new.tracks) / max(1, len(new.tracks))
        base_tracks_ok = sum(t == ENROLLED for t in base.tracks) / max(1, len(base.tracks))
        summary.append([
            name, f"{new.worker[ENROLLED]}/{n_workers}", f"{tracks_ok:.0%} of {len(new.tracks)}",
            f"{sum(v for k, v in new.negatives['plain'].items() if k)}/{n_plain}",
            f"{sum(v for k, v in new.negatives['dark'].items() if k)}/{n_dark}",
            new.wrong_company(), new.uncertain, f"{new.false_open_rate():.1%}",
            f"{base_tracks_ok:.0%}", sum(v for k, v in base.negatives['plain'].items() if k)
            + sum(v for k, v in base.negatives['dark'].items() if k), base.wrong_company(),
            f"{base.false_open_rate():.1%}"])
        for uniform in (*COLOUR_ONLY, ENROLLED):
            per_uniform.append([name, uniform,
                                new.worker[uniform] if uniform == ENROLLED else 0,
                                sum(c[uniform] for c in new.negatives.values()),
                                new.worker[uniform] if uniform != ENROLLED else 0,
                                base.worker[uniform] if uniform == ENROLLED else 0,
                                sum(c[uniform] for c in base.negatives.values()),
                                base.worker[uniform] if uniform != ENROLLED else 0])
        worst["fa"] = max(worst["fa"], sum(v for c in new.negatives.values() for k, v in c.items() if k))
        worst["wc"] = max(worst["wc"], new.wrong_company())
        if name.startswith("brightness") and float(name.split()[1]) >= 0.5:
            worst["min_tracks"] = min(worst["min_tracks"], tracks_ok)
    print(table(["transform", "worker det", "worker tracks", "FA plain", "FA dark", "wrong co", "uncertain",
                 "false-open", "HSV tracks", "HSV FA", "HSV wrong co", "HSV false-open"], summary))
    print("\nper uniform (TA: worker as the enrolled vest; FA: plain/dark accepted; WC: worker as this company)")
    print(table(["transform", "uniform", "TA", "FA", "WC", "HSV TA", "HSV FA", "HSV WC"], per_uniform))
    print(f"\nsummary: worst transform: {worst['fa']} false accepts and {worst['wc']} wrong-company accepts on "
          f"plain/dark clothes; worker tracks recognised at brightness >= 0.5: at least {worst['min_tracks']:.0%}")


COST_ROUNDS = 5
COST_FRAMES = 30


def cost(rounds: int = COST_ROUNDS) -> dict:
    """Uniform recognition per person crop as the courier rule pays it, against one detector inference
    per frame, in CPU seconds, interleaved rounds. Enabled: the enrolled vest (colour screen, then
    OSNet at the uniform input size for colour candidates) and three colour-only uniforms.

    Ordinary people (the walking clip) and a uniform wearer (the worker) are timed apart: only the
    latter pay for OSNet. The rule runs OSNet once per track and reuses the vector for the track's
    later votes, so the wearer's per-crop figure is over tracks of ``MIN_VOTES`` detections — the
    fewest a decision takes, the least the model's cost is spread over. His first detection alone
    (what a track that is never decided pays once) is shown beside it."""
    from bench.common import Stopwatch, bench_config, interleaved, median, spread
    from gridwatch.edge.node.runner import build_detector

    rows = labelled_rows()
    frames = load_frames(rows)
    embedder = AppearanceEmbedder()
    with tempfile.TemporaryDirectory() as scratch:
        matcher = UniformMatcher([catalogue()[u] for u in COLOUR_ONLY]
                                 + [enrol_vest(rows, frames, embedder, Path(scratch) / "hivis.profile.json")], embedder)
    walkers = [r for r in rows if r.clip == "face-demographics-walking-and-pause.gif"][:COST_FRAMES]
    wearer = [r for r in rows if r.clip == WORKER_CLIP][::2][:COST_FRAMES]
    groups = {"ordinary people": (walkers, 1), "uniform wearer, first detection of a track": (wearer, 1),
              f"uniform wearer, per crop of a {MIN_VOTES}-vote track": (wearer, MIN_VOTES)}
    detector = build_detector(bench_config(1, workers=1, threads=1))
    images = [frames[r.clip, r.frame] for r in walkers + wearer]

    def detection() -> float:
        watch = Stopwatch()
        for image in images:
            detector.detect(image)
        return watch.throughput(len(images)).cpu_s / len(images)

    def recognition(group: list[Row], per_track: int) -> Callable[[], float]:
        def run() -> float:
            watch = Stopwatch()
            for start in range(0, len(group), per_track):
                track_votes(matcher, [(frames[r.clip, r.frame], r.box) for r in group[start:start + per_track]])
            return watch.throughput(len(group)).cpu_s / len(group)
        return run

    steps = {"detector per frame": detection, **{f"uniform, {name}": recognition(*group)
                                                 for name, group in groups.items()}}
    results = interleaved(rounds, steps)
    ratios = {name: [u / d for u, d in zip(results[f"uniform, {name}"], results["detector per frame"],
                                           strict=True)] for name in groups}
    print(f"\n## 2b. Uniform recognition per person crop vs one detection, {rounds} interleaved rounds, "
          "CPU ms, median (min-max)\n")
    print(table(["run", "CPU ms"], [[name, spread([v * 1000 for v in values])] for name, values in results.items()]
                + [[f"{name} / detector, per round", spread(r)] for name, r in ratios.items()]))
    print("\nSUMMARY uniform cost: " + "; ".join(
        f"{name} {median(r):.2f}x the detector's CPU time ({min(r):.2f}-{max(r):.2f})"
        for name, r in ratios.items()))
    return {name: median(r) for name, r in ratios.items()}
