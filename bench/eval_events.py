"""``python -m bench.eval_events``: every rule against hand annotations, through ``gridwatch edge replay``.

For each annotated clip and threshold the clip is replayed with the real CLI (as an installer would
try a config), and each rule's ``start`` events are matched to the annotated people or vehicles:
a start inside an annotated presence (+-3 s) is a true positive, any other start a false positive,
an annotated case without one a miss. Latency error is the start's time minus the annotated moment
the rule should fire (entry + min_dwell_s; first sight of the uniform; arrival + min_stationary_s).

The held-car clip is built from two real frames of car-detection.mp4 (an empty lane, then a car
held with sensor noise) into a temporary video that is deleted afterwards; nothing is committed.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from bench.common import REPO, SAMPLES

DATA = REPO / "tests" / "data"
WINDOW_S = 3.0
HIVIS = {"id": "hivis", "name": {"zh-CN": "反光背心", "en": "Hi-vis vest"},
         "colours": ["#FF6A13"], "min_fraction": 0.25}
HELD = {"lead_in_s": 6.0, "hold_s": 18.0, "tail_s": 12.0, "fps": 12.5, "min_stationary_s": 10.0}


@dataclass(frozen=True)
class Expected:
    """One annotated case: present in [from_s, until_s]; the rule should fire at alert_s."""

    label: str
    from_s: float
    until_s: float
    alert_s: float


@dataclass
class Case:
    rule: str
    name: str
    clip: Path
    config: dict
    types: tuple[str, ...]
    expected: list[Expected]
    found: list[float] = field(default_factory=list)


def _config(zone: dict, detect_fps: float, uniforms: list[dict] | None = None) -> dict:
    return {"site_id": "eval", "node_id": "eval", "evidence": {"dir": "evidence"}, "uniforms": uniforms or [],
            "cameras": [{"id": "cam", "source": "unused", "detect_fps": detect_fps, "zones": [zone]}]}


def loitering_cases() -> list[Case]:
    truth = yaml.safe_load((DATA / "one_by_one_ground_truth.yaml").read_text())
    zone_config = yaml.safe_load((DATA / "table-zone.yaml").read_text())
    cases = []
    for threshold in (5.0, 15.0):
        config = copy.deepcopy(zone_config)
        config["evidence"] = {"dir": "evidence"}
        config["cameras"][0]["zones"][0]["rules"][0]["min_dwell_s"] = threshold
        expected = [Expected(p["id"], p["enters_zone_s"], p["leaves_zone_s"], p["enters_zone_s"] + threshold)
                    for p in truth["people"] if p["leaves_zone_s"] - p["enters_zone_s"] >= threshold]
        cases.append(Case("loitering", f"{truth['clip']} min_dwell_s={threshold:g}", SAMPLES / truth["clip"],
                          config, ("loitering",), expected))
    return cases


def courier_cases() -> list[Case]:
    truth = yaml.safe_load((DATA / "courier_ground_truth.yaml").read_text())
    zone = {"id": "gate", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
            "rules": [{"type": "courier", "uniforms": ["hivis"]}]}
    cases = []
    for clip in truth["clips"]:
        fps = 2.0 if clip["clip"].endswith(".mp4") else 10.0
        expected = [Expected(p["id"], p["visible_from_s"], p["visible_until_s"], p["visible_from_s"])
                    for p in clip["people"] if p["uniform"] == "hivis"]
        cases.append(Case("courier", f"{clip['clip']} hivis", SAMPLES / clip["clip"], _config(zone, fps, [HIVIS]),
                          ("courier_entry",), expected))
    return cases


def held_car_video(directory: Path, truth: dict) -> Path:
    """A temporary clip: the empty lane, a real car held still with sensor noise, the empty lane again."""
    capture, frames, index = cv2.VideoCapture(str(SAMPLES / truth["clip"])), {}, 0
    wanted = (truth["empty_lane_frame"], truth["car_in_lane_frame"])
    while len(frames) < 2:
        ok, image = capture.read()
        if not ok:
            raise SystemExit(f"{truth['clip']} has no frame {max(wanted)}")
        if index in wanted:
            frames[index] = image
        index += 1
    path = directory / "held-car.mp4"
    height, width = frames[wanted[0]].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), HELD["fps"], (width, height))
    rng = np.random.default_rng(0)
    for seconds, image in ((HELD["lead_in_s"], frames[wanted[0]]), (HELD["hold_s"], frames[wanted[1]]),
                           (HELD["tail_s"], frames[wanted[0]])):
        for _ in range(round(seconds * HELD["fps"])):
            writer.write(np.clip(image + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def fire_lane_cases(directory: Path) -> list[Case]:
    truth = yaml.safe_load((DATA / "car_detection_ground_truth.yaml").read_text())
    cases = []
    for threshold in (10.0, 20.0, 30.0):
        zone = dict(truth["zone"], rules=[{"type": "fire_lane", "min_stationary_s": threshold}])
        cases.append(Case("fire_lane", f"{truth['clip']} min_stationary_s={threshold:g}", SAMPLES / truth["clip"],
                          _config(zone, 5.0), ("fire_lane_blocked", "fire_lane_obstructed"), []))
    arrive, leave = HELD["lead_in_s"], HELD["lead_in_s"] + HELD["hold_s"]
    zone = dict(truth["zone"], rules=[{"type": "fire_lane", "min_stationary_s": HELD["min_stationary_s"]}])
    cases.append(Case("fire_lane", f"held car (built from {truth['clip']}) min_stationary_s=10",
                      held_car_video(directory, truth), _config(zone, 5.0),
                      ("fire_lane_blocked", "fire_lane_obstructed"),
                      [Expected("held-car", arrive, leave, arrive + HELD["min_stationary_s"])]))
    return cases


def replay(case: Case, directory: Path) -> list[dict]:
    config_path, events_path = directory / "edge.yaml", directory / "events.jsonl"
    config_path.write_text(yaml.safe_dump(case.config, allow_unicode=True))
    result = subprocess.run(
        [sys.executable, "-m", "gridwatch.deploy", "edge", "replay", "--config", str(config_path),
         "--source", str(case.clip), "--events-out", str(events_path)],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"replay of {case.name} failed:\n{result.stderr}")
    return [json.loads(line) for line in events_path.read_text().splitlines()]


def score(case: Case, events: list[dict]) -> tuple[int, int, list[float]]:
    """(true positives, false positives, latency errors) of one case's start events."""
    starts = sorted(e["source_time_s"] for e in events if e["type"] in case.types and e["phase"] == "start")
    case.found = starts
    unmatched, errors = list(starts), []
    for item in case.expected:
        hits = [t for t in unmatched if item.from_s - WINDOW_S <= t <= item.until_s + WINDOW_S]
        if hits:
            unmatched.remove(hits[0])
            errors.append(hits[0] - item.alert_s)
    return len(errors), len(unmatched), errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=("loitering", "courier", "fire_lane"), action="append",
                        help="Only these rules (default: all).")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gridwatch-eval-") as tmp:
        directory = Path(tmp)
        builders = {"loitering": loitering_cases, "courier": courier_cases,
                    "fire_lane": lambda: fire_lane_cases(directory)}
        totals: dict[str, list] = {}
        print(f"{'rule':10} {'case':64} {'exp':>3} {'found':>5} {'tp':>3} {'fp':>3}  latency error (s)")
        for rule in args.rule or list(builders):
            for case in builders[rule]():
                tp, fp, errors = score(case, replay(case, directory))
                total = totals.setdefault(rule, [0, 0, 0, 0, []])
                for i, value in enumerate((len(case.expected), tp + fp, tp, fp)):
                    total[i] += value
                total[4] += errors
                print(f"{rule:10} {case.name[:64]:64} {len(case.expected):3} {tp + fp:5} {tp:3} {fp:3}  "
                      + " ".join(f"{e:+.1f}" for e in errors))
        print(f"\n{'rule':10} {'expected':>8} {'found':>6} {'precision':>9} {'recall':>6} {'max |latency err| s':>20}")
        for rule, (expected, found, tp, _fp, errors) in totals.items():
            precision = f"{tp / found:.2f}" if found else "n/a"
            recall = f"{tp / expected:.2f}" if expected else "n/a"
            worst = f"{max(abs(e) for e in errors):.1f}" if errors else "n/a"
            print(f"{rule:10} {expected:8} {found:6} {precision:>9} {recall:>6} {worst:>20}")


if __name__ == "__main__":
    main()
