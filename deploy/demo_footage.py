"""The demo's footage: which sample clip each camera loops, the clips derived from them at start-up,
and the uniform profile enrolled for the gate, all built into the demo's data directory.

The Intel IoT devkit sample videos (CC-BY-4.0) show no car that stops and no gap between couriers,
so two clips are derived from real frames, never committed (they are rebuilt when missing):

* the east fire lane: ``car-detection.mp4`` as shot, except that the white sedan that drives into
  the lane at 6.4 s is held there for ``HOLD_S`` (that real frame, with fresh sensor noise per
  frame, as a still camera would record a parked car), then the clip goes on and the car drives off;
* the north gate: ``worker-zone-detection.gif`` (a worker in a hi-vis vest walking in), then its
  last frame held for ``GATE_PAUSE_S``, so each loop is one courier entry and one gate opening, not
  one every four seconds.

The vest is enrolled the way an installer would, with ``gridwatch edge enroll-uniform`` on the
first seconds of the gate clip against footage of ordinary people (the store aisle and the
walkers), so the courier rule recognises the worker with an enrolled profile, not a colour guess.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np

AUTHORS = "Intel IoT devkit sample videos"
SOURCE_URL = "https://github.com/intel-iot-devkit/sample-videos"
LICENCE, LICENCE_URL = "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/"
CREDIT = f"{AUTHORS} ({SOURCE_URL}), {LICENCE}"
# How a derived clip was changed (the licence asks that changes be indicated); the console has the
# same sentences in both languages under footage.<key>.
CHANGES = {"held_car": "the white car held in the lane for {s} s",
           "gate_pause": "last frame held {s} s between couriers"}
LOBBY_CLIP = "one-by-one-person-detection.mp4"
GATE_CLIP = "worker-zone-detection.gif"
LANE_CLIP = "car-detection.mp4"
VEST_NEGATIVES = ("store-aisle-detection.gif", "face-demographics-walking.gif")

CAR_IN_LANE_FRAME = 80   # 6.4 s: the white sedan wholly inside the lane (tests/data/car_detection_ground_truth.yaml)
HOLD_S = 40.0            # the car stays this long: past the demo's min_stationary_s, then it clears
GATE_PAUSE_S = 20.0      # the worker waits at the far door before the next loop's courier walks in
SENSOR_NOISE = 3.0       # grey levels of per-frame noise on a held frame (a still camera is never frozen)
VEST_RANGE_S = (0.3, 1.7)  # the worker close to the camera, vest in full view


@dataclass(frozen=True)
class Footage:
    """One demo camera's footage, as the console credits it."""

    camera_id: str
    path: Path
    clip: str              # the sample it comes from
    change: str = ""       # how it was changed, a CHANGES key ("" when looped as shot)
    held_s: float = 0.0

    def changed(self) -> str:
        return CHANGES[self.change].format(s=round(self.held_s)) if self.change else ""

    def credit(self) -> dict[str, str | int]:
        return {"camera_id": self.camera_id, "clip": self.clip, "change": self.change, "held_s": round(self.held_s),
                "authors": AUTHORS, "source_url": SOURCE_URL, "licence": LICENCE, "licence_url": LICENCE_URL}


def _frames(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    if not frames:
        raise click.ClickException(f"{path}: OpenCV read no frames from it")
    return frames, fps


def _held(image: np.ndarray, seconds: float, fps: float, rng: np.random.Generator) -> Iterator[np.ndarray]:
    for _ in range(round(seconds * fps)):
        noisy = image.astype(np.float32) + rng.normal(0, SENSOR_NOISE, image.shape)
        yield np.clip(noisy, 0, 255).astype(np.uint8)


def _write(out: Path, frames: Iterator[np.ndarray], fps: float, size: tuple[int, int]) -> Path:
    """Write to a temporary name and rename, so a demo stopped half-way never leaves half a clip."""
    partial = out.with_suffix(".partial.mp4")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise click.ClickException(f"OpenCV cannot write {partial} (no mp4v encoder?)")
    try:
        for image in frames:
            writer.write(image)
    finally:
        writer.release()
    partial.replace(out)
    return out


def held_car_clip(sample: Path, out: Path) -> Path:
    """car-detection.mp4 with the sedan held in the lane for HOLD_S (see the module docstring)."""
    frames, fps = _frames(sample)
    rng = np.random.default_rng(16)
    sequence = (*frames[:CAR_IN_LANE_FRAME], *_held(frames[CAR_IN_LANE_FRAME], HOLD_S, fps, rng),
                *frames[CAR_IN_LANE_FRAME:])
    height, width = frames[0].shape[:2]
    return _write(out, iter(sequence), fps, (width, height))


def gate_clip(sample: Path, out: Path) -> Path:
    """worker-zone-detection.gif, then its last frame held for GATE_PAUSE_S."""
    frames, fps = _frames(sample)
    rng = np.random.default_rng(17)
    height, width = frames[0].shape[:2]
    return _write(out, iter((*frames, *_held(frames[-1], GATE_PAUSE_S, fps, rng))), fps, (width, height))


def enrol_vest(samples: Path, out: Path) -> Path:
    """The hi-vis vest's profile, by the installer's own command (``gridwatch edge enroll-uniform``)."""
    command = [sys.executable, "-m", "gridwatch.deploy", "edge", "enroll-uniform", "--id", "hivis",
               "--clip", str(samples / GATE_CLIP), "--start", str(VEST_RANGE_S[0]), "--end", str(VEST_RANGE_S[1]),
               "--box", "0,0,1,1", "--out", str(out), "--name-en", "Hi-vis vest", "--name-zh", "反光背心"]
    for negative in VEST_NEGATIVES:
        command += ["--negatives", str(samples / negative)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"enrolling the demo's hi-vis vest failed:\n{done.stderr.strip()}")
    click.echo(done.stderr.strip().splitlines()[-1])  # the cross-validated separation, as the installer sees it
    return out


def prepare_footage(samples: Path, data_dir: Path, lobby: Path | None = None) -> tuple[list[Footage], Path]:
    """Every demo camera's footage (derived clips built when missing) and the vest's profile."""
    footage_dir = data_dir / "footage"
    footage_dir.mkdir(parents=True, exist_ok=True)

    def derived(name: str, build) -> Path:
        out = footage_dir / name
        return out if out.is_file() else build(out)

    # The names carry the hold times, so a data directory from an older demo gets fresh clips.
    profile = derived("hivis.profile.json", lambda out: enrol_vest(samples, out))
    gate = derived(f"gate-north-worker-{GATE_PAUSE_S:.0f}s.mp4", lambda out: gate_clip(samples / GATE_CLIP, out))
    lane = derived(f"lane-east-held-car-{HOLD_S:.0f}s.mp4", lambda out: held_car_clip(samples / LANE_CLIP, out))
    footage = [
        Footage("lobby-cam", lobby or samples / LOBBY_CLIP, lobby.name if lobby else LOBBY_CLIP),
        Footage("gate-north-cam", gate, GATE_CLIP, "gate_pause", GATE_PAUSE_S),
        Footage("lane-east-cam", lane, LANE_CLIP, "held_car", HOLD_S),
        Footage("lane-west-cam", samples / LANE_CLIP, LANE_CLIP),
    ]
    return footage, profile
