"""Unblurred originals stay on the edge, encrypted, and each opening is in the server's access log (issue 19).

The face clip is replayed with ``evidence.originals`` on: every snapshot has a sealed original (not a
JPEG on disk, the key file 0600 beside the config). ``gridwatch edge original`` logs the access on a
real server first and only then writes the unblurred frame (a labelled face is sharp there while it
is blurred in the snapshot); with a token that may not log, nothing is decrypted.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import yaml

from bench.privacy import FACES_CSV, load_labels
from gridwatch.models.faces import SHARP_LAPLACIAN_VAR, sharpness
from gridwatch.server.registry.accounts import issue_token
from gridwatch.server.runner import ServerRunner
from gridwatch.server.settings import ServerSettings
from tests.auth_helpers import PASSWORD
from tests.conftest import REPO

CLIP = "face-demographics-walking-and-pause.gif"


def gridwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gridwatch.deploy", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def test_originals_are_sealed_and_opened_only_with_a_logged_access(tmp_path: Path, samples: Path) -> None:
    server = ServerRunner(ServerSettings(data_dir=tmp_path / "server", port=0, admin_password=PASSWORD),
                          start_ingest=False)
    server.start()
    try:
        with server.app.state.sessions() as session:
            now = server.app.state.clock.now()
            node_token = issue_token(session, "hall-node", ["snapshots:write", "evidence:log"], now)
            mute_token = issue_token(session, "mute-node", ["snapshots:write"], now)
            session.commit()
        config = {"site_id": "demo", "node_id": "hall-node", "server": {"url": server.url, "token": node_token},
                  "evidence": {"dir": "evidence", "originals": {"enabled": True}},
                  "cameras": [{"id": "hall", "source": str(samples / CLIP), "detect_fps": 12.5, "zones": [{
                      "id": "hall", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                      "rules": [{"type": "loitering", "min_dwell_s": 0.8, "update_every_s": 10}]}]}]}
        config_path = tmp_path / "edge.yaml"
        config_path.write_text(yaml.safe_dump(config))
        replay = gridwatch("edge", "replay", "--config", str(config_path), "--events-out", str(tmp_path / "ev.jsonl"))
        assert replay.returncode == 0, replay.stderr

        key = tmp_path / "originals.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        sealed = sorted((tmp_path / "originals").glob("*.jpg.enc"))
        assert sealed and all(not p.read_bytes().startswith(b"\xff\xd8") for p in sealed), "encrypted at rest"

        end = next(e for e in map(json.loads, (tmp_path / "ev.jsonl").read_text().splitlines())
                   if e["phase"] == "end")  # the after-view: frame 40, all three faces labelled
        sha256 = end["snapshot"]["sha256"]
        assert (tmp_path / "originals" / f"{sha256}.jpg.enc").is_file()
        faces = [label.box for label in load_labels(FACES_CSV) if label.source.endswith(CLIP) and label.frame == 40]

        # A token that may not write the access log: the original stays sealed.
        config["server"]["token"] = mute_token
        config_path.write_text(yaml.safe_dump(config))
        refused = gridwatch("edge", "original", sha256, "--config", str(config_path), "--actor", "officer-li",
                            "--purpose", "police request 2026-117", "--out", str(tmp_path / "refused.jpg"))
        assert refused.returncode != 0 and "stays sealed" in refused.stderr
        assert not (tmp_path / "refused.jpg").exists()

        config["server"]["token"] = node_token
        config_path.write_text(yaml.safe_dump(config))
        opened = gridwatch("edge", "original", sha256, "--config", str(config_path), "--actor", "officer-li",
                           "--purpose", "police request 2026-117", "--out", str(tmp_path / "original.jpg"))
        assert opened.returncode == 0, opened.stderr
        original = cv2.imread(str(tmp_path / "original.jpg"))
        snapshot = cv2.imread(str(tmp_path / "evidence" / f"{sha256}.jpg"))
        for face in faces:
            assert sharpness(original, face) > SHARP_LAPLACIAN_VAR > sharpness(snapshot, face), face

        with httpx.Client(base_url=server.url) as admin:
            admin.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
            log = admin.get("/api/evidence-access", params={"sha256": sha256}).json()["items"]
        assert [(e["actor"], e["role"], e["purpose"]) for e in log] == \
            [("officer-li", "edge-original", "police request 2026-117")]
        assert log[0]["client"].startswith("hall-node@")
    finally:
        server.stop()
