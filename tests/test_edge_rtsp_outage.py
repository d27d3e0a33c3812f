"""A real RTSP camera dies for 30 s and comes back, under a real `gridwatch edge run` (issue 18, acceptance 1).

GStreamer's RTSP server (deploy/rtsp_camera/server.py) serves the shared clip over RTP/UDP with digest credentials
in the camera URL; the edge publishes to a private Mosquitto. The test kills the camera, waits 30 s and
starts it again on the same port, without touching the edge. It checks the reader's backoff (a handful of
attempts, not one every half second), the ``camera_offline`` incident opened and closed with one id, every
event the edge sequenced delivered (the outbox's sequence has no hole on the broker), and that the password
never reached the edge's log, DEBUG level included.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from gridwatch.deploy.rtsp_camera.camera import RtspCamera
from tests.conftest import REPO, Mosquitto, ReportCounts, rtsp_clips
from tests.test_edge_live_health import CAMERA, NODE, SITE, Watcher, camera_state

PASSWORD = "Dahua#Pa55/x"  # characters that must be percent-encoded
OUTAGE_S = 30.0
STALL_S, OFFLINE_EVENT_S = 3.0, 5.0
# Attempts the reader's backoff (0.5 s doubling to 8 s, each attempt itself waiting up to STALL_S) can make
# in the outage; reconnecting every 0.5 s would be ~60.
MAX_ATTEMPTS = 12


def is_event(kind: str, phase: str):
    return lambda topic, payload, retained: (topic.endswith("/events") and payload["type"] == kind
                                             and payload["phase"] == phase)


@pytest.mark.mosquitto
def test_camera_down_30s_reconnects_with_backoff_and_loses_no_event(tmp_path: Path, mosquitto: Mosquitto,
                                                                     report_counts: ReportCounts) -> None:
    clips = rtsp_clips(tmp_path / "clips")
    camera = RtspCamera(clips.h264, "h264", "admin", PASSWORD).start()
    config = yaml.safe_load((REPO / "tests" / "data" / "table-zone.yaml").read_text())
    zones = config["cameras"][0]["zones"]
    zones[0]["rules"][0].update(min_dwell_s=3, update_every_s=2)  # a person at the table: events on both sides
    config.update({
        "site_id": SITE, "node_id": NODE, "mqtt": {"url": mosquitto.url, "reconnect_max_s": 2},
        "status_period_s": 1.0,
        "cameras": [{"id": CAMERA, "source": camera.url, "rtsp_transport": "udp", "detect_fps": 2,
                     "stall_s": STALL_S, "offline_event_s": OFFLINE_EVENT_S, "zones": zones}],
    })
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(config))
    watcher = Watcher(mosquitto.port, "rtsp-outage-watcher")
    edge = subprocess.Popen([sys.executable, "-m", "gridwatch.deploy", "--verbose", "edge", "run", "--config",
                             str(config_path)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        watcher.wait_for(lambda t, p, r: camera_state("online")(t, p, r) and p["fps_processed"] > 0, 60,
                         "camera online with frames")
        before = watcher.wait_for(is_event("loitering", "start"), 90, "a loitering event before the outage")
        camera.stop()
        stopped_at = time.monotonic()
        watcher.wait_for(camera_state("offline"), STALL_S * 4, "camera offline")
        lost = watcher.wait_for(is_event("camera_offline", "start"), STALL_S * 4 + OFFLINE_EVENT_S + 10,
                                "camera_offline start")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
        assert edge.poll() is None, "the edge gave up on the camera"
        camera.start()  # the same address, the edge untouched
        restarted_at = time.monotonic()
        back = watcher.wait_for(is_event("camera_offline", "end"), 60, "camera_offline end")
        back_after_s = time.monotonic() - restarted_at
        assert back["incident_id"] == lost["incident_id"]
        watcher.wait_for(lambda t, p, r: t.endswith("/events") and p["type"] == "loitering"
                         and p["incident_id"] != before["incident_id"], 90, "a loitering event after the outage")
        time.sleep(3)
        edge.send_signal(signal.SIGTERM)  # a clean stop flushes the outbox
        edge.wait(60)
        time.sleep(1)
    finally:
        if edge.poll() is None:
            edge.kill()
        stderr = edge.communicate(timeout=10)[1]
        watcher.close()
        camera.stop()

    assert "Traceback" not in stderr, stderr[-3000:]
    assert PASSWORD not in stderr and quote(PASSWORD, safe="") not in stderr
    assert f"rtsp://admin:***@127.0.0.1:{camera.port}/stream1" in stderr
    connects = stderr.count(f"camera {CAMERA}: connected to")
    attempts = stderr.count(f"camera {CAMERA}: ") - connects
    assert connects == 2, stderr[-3000:]  # the first connection and the one after the outage
    assert 2 <= attempts <= MAX_ATTEMPTS, f"{attempts} failed attempts in {OUTAGE_S} s: no backoff?"

    with sqlite3.connect(tmp_path / "outbox.db") as db:
        sequenced = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
        left = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    with watcher.lock:
        delivered = {p["seq"] for t, p, _ in watcher.messages if t.endswith("/events") and p.get("seq")}
    events_lost = len(set(range(1, sequenced + 1)) - delivered)
    types = sorted({p["type"] for t, p, _ in watcher.messages if t.endswith("/events")})
    report_counts(f"RTSP outage {OUTAGE_S:.0f} s: reconnects {connects - 1}, failed attempts {attempts}, back "
                  f"{back_after_s:.1f} s after the camera, events sequenced {sequenced}, delivered {len(delivered)}, "
                  f"events lost {events_lost}, event types {types}")
    assert left == 0 and events_lost == 0 and sequenced >= 4
