"""Faces stay blurred through the whole pipe (issue 19, acceptance 2): the face clip replayed by the real
edge (YOLOX + YuNet) through Mosquitto to a server that requires blur; every JPEG the console can fetch
(each ticket's snapshots, each event's snapshot and clean crop) has every hand-labelled face of its
frame below the sharpness threshold. The labels are ``bench/privacy_faces.csv``'s, read off the frames
by eye; the rule is set so its snapshots fall on labelled frames (16, 26, 37 and the last, 40).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from bench.privacy import FACES_CSV, load_labels
from gridwatch.models.faces import SHARP_LAPLACIAN_VAR, sharpness
from gridwatch.server.registry.accounts import issue_token
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.conftest import REPO, Mosquitto, free_port
from tests.reliability_helpers import wait_for
from tests.test_pipe_end_to_end import get, get_json

CLIP = "face-demographics-walking-and-pause.gif"
FPS = 12.5  # the GIF's rate; the camera processes every frame
SIZE = (480, 270)


def edge_config(samples: Path, mqtt_url: str, api: str, evidence: Path) -> dict:
    return {"site_id": "demo", "node_id": "hall-node", "mqtt": {"url": mqtt_url}, "server": {"url": api},
            "evidence": {"dir": str(evidence)},
            "cameras": [{"id": "hall", "source": str(samples / CLIP), "detect_fps": FPS, "zones": [{
                "id": "hall", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                "rules": [{"type": "loitering", "min_dwell_s": 0.8, "update_every_s": 0.8, "objects": ["person"]}],
            }]}]}


def labelled_faces_in(image: np.ndarray, faces: list[tuple[float, ...]], offset: tuple[int, int]) -> list[tuple]:
    """The labelled face boxes (frame pixels) moved into ``image`` (a crop at ``offset``), where mostly inside it."""
    height, width = image.shape[:2]
    inside = []
    for x1, y1, x2, y2 in faces:
        box = (x1 - offset[0], y1 - offset[1], x2 - offset[0], y2 - offset[1])
        clipped = (max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3]))
        area = max(0, clipped[2] - clipped[0]) * max(0, clipped[3] - clipped[1])
        if area >= 0.5 * (x2 - x1) * (y2 - y1):
            inside.append(clipped)
    return inside


def test_every_served_image_of_a_face_clip_has_its_faces_blurred(tmp_path: Path, samples: Path,
                                                                   mosquitto: Mosquitto) -> None:
    labels: dict[int, list[tuple[float, ...]]] = {}
    for label in load_labels(FACES_CSV):
        if label.source.endswith(CLIP):
            labels.setdefault(label.frame, []).append(label.box)
    server = ServerRunner(ServerSettings(data_dir=tmp_path / "server", mqtt_url=mosquitto.url, port=free_port(),
                                         privacy_require_face_blur=True))
    server.start()
    try:
        api = f"http://127.0.0.1:{server.settings.port}"
        with server.app.state.sessions() as session:
            token = issue_token(session, "privacy-test", ["read"], server.app.state.clock.now())
            session.commit()
        auth = {"Authorization": f"Bearer {token}"}
        config_path = tmp_path / "edge.yaml"
        config_path.write_text(yaml.safe_dump(edge_config(samples, mosquitto.url, api, tmp_path / "evidence")))
        events_out = tmp_path / "events.jsonl"
        result = subprocess.run(
            [sys.executable, "-m", "gridwatch.deploy", "edge", "replay", "--config", str(config_path),
             "--source", str(samples / CLIP), "--events-out", str(events_out), "--publish"],
            capture_output=True, text=True, timeout=600, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert "refused" not in result.stderr, result.stderr  # the server stored every image the edge blurred
        published = [json.loads(line) for line in events_out.read_text().splitlines()]
        assert len({e["incident_id"] for e in published}) == 3, "three people pause in the hall"

        events = wait_for(lambda: get_json(f"{api}/api/events?limit=100", auth)["items"],
                          lambda items: len(items) == len(published), timeout=30)
        images: dict[str, tuple[int, tuple[int, int]]] = {}  # sha256 -> (frame, offset of the image in it)
        for event in events:
            payload = event["payload"]
            frame = round(payload["source_time_s"] * FPS)
            if payload.get("snapshot"):
                images[payload["snapshot"]["sha256"]] = (frame, (0, 0))
            if crop := payload["attributes"].get("crop_sha256"):
                box = payload["object"]["box"]
                images[crop] = (frame, (int(box[0] * SIZE[0]), int(box[1] * SIZE[1])))
        tickets = get_json(f"{api}/api/tickets?limit=100", auth)["items"]
        assert {t["snapshot_sha256"] for t in tickets} <= set(images)

        checked, sharpest = 0, 0.0
        for sha256, (frame, offset) in images.items():
            data = get(f"{api}/api/snapshots/{sha256}", auth)  # what the console shows
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert frame in labels, f"snapshot of frame {frame}, which has no labels"
            for face in labelled_faces_in(image, labels[frame], offset):
                variance = sharpness(image, face)
                assert variance < SHARP_LAPLACIAN_VAR, (sha256, frame, face, variance)
                checked, sharpest = checked + 1, max(sharpest, variance)
        # Per person a start and two updates, each a snapshot (3 faces) and a crop (its own face), and one
        # end snapshot all three share (no box drawn on an after-view): 10 snapshots and 9 crops, 39 faces.
        print(f"\n{len(images)} served images, {checked} labelled faces checked, the sharpest at Laplacian "
              f"variance {sharpest:.1f} (sharp from {SHARP_LAPLACIAN_VAR})")
        assert checked >= 36, checked
    finally:
        server.stop()
