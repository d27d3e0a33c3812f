"""Live camera health over a real broker (issue 3, acceptance 4).

The test runs an HTTP MJPEG camera (what many IP cameras serve) made of real frames from the
shared clip, and a real `gridwatch edge run` subprocess against a private Mosquitto. Killing the
camera server must turn the camera `offline` (and start a `camera_offline` incident), restarting it
must bring it back `online` without touching the edge, and SIGKILL of the edge must leave the
node's retained last will `offline`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gridwatch.broker import topics
from tests.conftest import REPO, Mosquitto, free_port

SITE, NODE, CAMERA = "site-a", "node-a", "gate-cam"


def clip_jpegs(path: Path, count: int = 40) -> list[bytes]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", image)[1].tobytes())
    capture.release()
    return frames


class MjpegCamera:
    """A multipart/x-mixed-replace JPEG stream on a fixed port; ``stop`` cuts every client off."""

    def __init__(self, port: int, jpegs: list[bytes], fps: float = 10.0) -> None:
        self.port, self.jpegs, self.fps = port, jpegs, fps
        self.server: ThreadingHTTPServer | None = None
        self.running = threading.Event()

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                index = 0
                try:
                    while camera.running.is_set():
                        jpeg = camera.jpegs[index % len(camera.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                        index += 1
                        time.sleep(1 / camera.fps)
                except OSError:
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.running.set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.running.clear()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Watcher:
    """Subscribes to the node and camera status topics and the camera's events."""

    def __init__(self, url_port: int, client_id: str) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", url_port)
        self.client.subscribe([(topics.node_status_topic(SITE, NODE), 1),
                               (topics.camera_status_topic(SITE, NODE, CAMERA), 1),
                               (topics.events_topic(SITE, NODE, CAMERA), 1)])
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, json.loads(message.payload), bool(message.retain)))

    def wait_for(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            with self.lock:
                fresh = self.messages[seen:]
                seen = len(self.messages)
            for topic, payload, retained in fresh:
                if predicate(topic, payload, retained):
                    return payload
            time.sleep(0.1)
        with self.lock:
            tail = [(t.rsplit("/", 1)[-1], p.get("state") or p.get("phase")) for t, p, _ in self.messages[-20:]]
        pytest.fail(f"no {what} within {timeout} s; last messages: {tail}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def camera_state(state: str):
    return lambda topic, payload, retained: topic.endswith(f"{CAMERA}/status") and payload["state"] == state


@pytest.mark.mosquitto
def test_camera_offline_online_and_last_will(tmp_path: Path, samples: Path, mosquitto: Mosquitto) -> None:
    camera_port = free_port()
    camera = MjpegCamera(camera_port, clip_jpegs(samples / "one-by-one-person-detection.mp4"))
    camera.start()
    config = {
        "site_id": SITE, "node_id": NODE, "mqtt": {"url": mosquitto.url},
        "status_period_s": 1.0,
        "cameras": [{"id": CAMERA, "source": f"http://127.0.0.1:{camera_port}/stream.mjpg", "detect_fps": 2,
                     "stall_s": 2.0, "offline_event_s": 3.0, "zones": []}],
    }
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(config))
    watcher = Watcher(mosquitto.port, "test-watcher")
    edge = subprocess.Popen([sys.executable, "-m", "gridwatch.deploy", "edge", "run", "--config", str(config_path)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        watcher.wait_for(lambda t, p, r: t.endswith(f"{NODE}/status") and p["state"] == "online", 30, "node online")
        online = watcher.wait_for(lambda t, p, r: camera_state("online")(t, p, r) and p["fps_processed"] > 0,
                                  30, "camera online with frames")
        assert online["fps_in"] > 0 and online["frames_dropped"] >= 0

        camera.stop()  # the camera's server dies
        offline = watcher.wait_for(camera_state("offline"), 20, "camera offline")
        assert offline["detail"]
        lost = watcher.wait_for(lambda t, p, r: t.endswith("/events") and p["type"] == "camera_offline"
                                and p["phase"] == "start", 20, "camera_offline start")
        assert lost["zone_id"] == "camera"

        camera.start()  # and comes back on the same address; the edge is not restarted
        watcher.wait_for(camera_state("online"), 30, "camera online again")
        back = watcher.wait_for(lambda t, p, r: t.endswith("/events") and p["type"] == "camera_offline"
                                and p["phase"] == "end", 10, "camera_offline end")
        assert back["incident_id"] == lost["incident_id"]
        assert edge.poll() is None

        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
        will = watcher.wait_for(lambda t, p, r: t.endswith(f"{NODE}/status") and p["state"] == "offline",
                                30, "node last will")
        assert will["node_id"] == NODE
    finally:
        if edge.poll() is None:
            edge.kill()
        stderr = edge.communicate(timeout=10)[1]
        watcher.close()
        camera.stop()
    assert "Traceback" not in stderr, stderr

    # A client connecting now still sees the retained will (the node is down) and the camera's last status.
    late = Watcher(mosquitto.port, "test-late-watcher")
    try:
        late.wait_for(lambda t, p, r: r and t.endswith(f"{NODE}/status") and p["state"] == "offline", 10,
                      "retained offline")
    finally:
        late.close()
